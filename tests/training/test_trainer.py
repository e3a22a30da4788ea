from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from model.config import ModelConfig, Task
from model.mult import MPLMM
from model.prompts import PromptKind
from training.data.pairing import pair_by_label
from training.trainer import Arrays, TrainConfig, fit, predict

CONFIG = ModelConfig(
    dims=(6, 5, 4), lengths=(5, 4, 3), d=8, heads=2, layers=1, self_layers=1,
    prompt_length=2, task=Task.CLASSIFICATION, output_dim=3,
    attn_dropout=0.0, relu_dropout=0.0, res_dropout=0.0, embed_dropout=0.0,
)  # fmt: skip


def _data(n: int, seed: int, modality: int) -> Arrays:
    """Three classes whose label shifts the mean of one modality; the others are absent."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    xs = []
    for m, (length, dim) in enumerate(zip(CONFIG.lengths, CONFIG.dims, strict=True)):
        x = np.zeros((n, length, dim), dtype=np.float32)
        if m == modality:
            x += rng.normal(0, 0.5, x.shape).astype(np.float32)
            x[:, :, 0] += 2.0 * (y[:, None] - 1)
        xs.append(x)
    available = np.zeros((n, 3), dtype=bool)
    available[:, modality] = True
    return Arrays(tuple(xs), available, y.astype(np.int64))  # type: ignore[arg-type]


def test_pairing_keeps_labels_and_modalities() -> None:
    text, audio = _data(60, 0, 0), _data(30, 1, 1)
    pairs = pair_by_label(text, audio, per_audio=2, rng=np.random.default_rng(0))
    assert len(pairs) == 60
    assert pairs.available.tolist() == [[True, True, False]] * 60
    # each pair's text really has the pair's label (the label is readable off the mean)
    text_label = np.round(pairs.x[0][:, :, 0].mean(axis=1) / 2.0 + 1).astype(int)
    np.testing.assert_array_equal(text_label, pairs.y)
    assert not pairs.x[2].any()
    with pytest.raises(ValueError, match="per_audio"):
        pair_by_label(text, audio, 0, np.random.default_rng(0))


def test_tuning_learns_a_separable_task_and_checkpoints_the_best(tmp_path: Path) -> None:
    torch.manual_seed(0)
    text, audio = _data(240, 0, 0), _data(240, 1, 1)
    pairs = pair_by_label(text, audio, 1, np.random.default_rng(0))
    train = Arrays.concat([text, audio, pairs])
    valid = Arrays.concat([_data(60, 2, 0), _data(60, 3, 1)])
    model = MPLMM(CONFIG, PromptKind.ALL)
    model.freeze_backbone()
    backbone_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    params = list(model.pack.parameters())
    cfg = TrainConfig(epochs=6, batch_size=32, lr=3e-3, patience=10, missing_rate=0.5)
    ckpt = tmp_path / "best.safetensors"
    result = fit(model, params, train, valid, Task.CLASSIFICATION, "abc", cfg, ckpt,
                 state=model.pack.state_dict)  # fmt: skip
    assert result.metric == "weighted_f1"
    assert result.best_score > 0.9
    assert result.history[0]["loss"] > result.history[result.best_epoch]["loss"]
    # the frozen backbone did not move; the checkpoint is the restored best pack
    for k, v in model.backbone.state_dict().items():
        torch.testing.assert_close(v, backbone_before[k], rtol=0, atol=0)
    saved = load_file(str(ckpt))
    for k, v in model.pack.state_dict().items():
        torch.testing.assert_close(saved[k], v, rtol=0, atol=0)
    out = predict(model, valid, np.where(valid.available[:, 0], 4, 5).astype(np.int64))
    assert out.shape == (120, 3)
