"""The batched forward equals the per-sample reference, for every missing type."""

from __future__ import annotations

import pytest
import torch
from model_helpers import make_inputs, tiny_config
from mplmm_reference import reference_forward

from model.missing import PRESENCE_TABLE, MissingType
from model.mult import MPLMM
from model.prompts import PromptKind
from model.transformer import Encoder, run_grouped

ATOL = 1e-5
ALL_TYPES = list(MissingType)


def _check(model: MPLMM, types: list[int], seed: int = 0) -> None:
    text, audio, video = make_inputs(model.config, len(types), seed)
    mt = torch.tensor(types, dtype=torch.int64)
    with torch.no_grad():
        got = model(text, audio, video, mt)
        want = reference_forward(model, text, audio, video, mt)
    assert got.shape == (len(types), model.config.output_dim)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


@pytest.mark.parametrize("mtype", ALL_TYPES, ids=lambda t: t.name)
def test_each_type_matches_reference(model: MPLMM, mtype: MissingType) -> None:
    _check(model, [int(mtype)] * 3)


def test_mixed_batch_matches_reference(model: MPLMM) -> None:
    _check(model, [0, 1, 2, 3, 4, 5, 6, 6, 3, 0, 4])


@pytest.mark.parametrize(
    "kinds",
    [
        PromptKind.NONE,
        PromptKind.ALL & ~PromptKind.GENERATIVE,
        PromptKind.ALL & ~PromptKind.MISSING_SIGNAL,
        PromptKind.ALL & ~PromptKind.MISSING_TYPE,
    ],
    ids=["pretrain", "no_generative", "no_signal", "no_type"],
)
def test_modes_and_ablations_match_reference(config, kinds: PromptKind) -> None:
    torch.manual_seed(1)
    model = MPLMM(config, prompts=kinds).eval()
    _check(model, [0, 1, 2, 3, 4, 5, 6])


def test_unequal_lengths_and_causal_mask_match_reference() -> None:
    # Every crossmodal pair has its own geometry here, so nothing is grouped.
    torch.manual_seed(2)
    model = MPLMM(tiny_config(lengths=(4, 6, 5), attn_mask=True)).eval()
    _check(model, [0, 1, 2, 3, 4, 5, 6])


def test_rows_do_not_interact(model: MPLMM) -> None:
    # A sample's output does not depend on the other samples of its batch.
    text, audio, video = make_inputs(model.config, 7)
    mt = torch.arange(7)
    with torch.no_grad():
        full = model(text, audio, video, mt)
        single = model(text[2:3], audio[2:3], video[2:3], mt[2:3])
    torch.testing.assert_close(full[2:3], single, atol=ATOL, rtol=0)


def test_rows_of_several_packs_each_match_the_reference_with_their_own_pack(config) -> None:
    # The exported graph's computation: stacked pack tensors, each row reads its own.
    torch.manual_seed(4)
    models = [MPLMM(config).eval()]
    models += [MPLMM(config, backbone=models[0].backbone).eval() for _ in range(2)]
    types = [0, 1, 2, 3, 4, 5, 6, 2, 5]
    text, audio, video = make_inputs(config, len(types), seed=1)
    mt = torch.tensor(types, dtype=torch.int64)
    index = torch.tensor([1, 0, 2, 2, 1, 0, 1, 0, 2], dtype=torch.int64)
    states = [m.pack.state_dict() for m in models]
    stacked = {k: torch.stack([s[k] for s in states]) for k in states[0]}
    with torch.no_grad():
        got = models[0](text, audio, video, mt, stacked, index)
        for p, m in enumerate(models):
            rows = index == p
            want = reference_forward(m, text[rows], audio[rows], video[rows], mt[rows])
            torch.testing.assert_close(got[rows], want, atol=ATOL, rtol=0)
            plain = m(text[rows], audio[rows], video[rows], mt[rows])
            torch.testing.assert_close(got[rows], plain, atol=ATOL, rtol=0)


def test_absent_modality_values_are_ignored(model: MPLMM) -> None:
    # Presence comes from missing_type alone: garbage in an absent modality changes nothing.
    text, audio, video = make_inputs(model.config, 7)
    mt = torch.arange(7)
    noisy = [x.clone() for x in (text, audio, video)]
    for m in range(3):
        absent = torch.as_tensor(PRESENCE_TABLE[:, m] == 0)
        noisy[m][absent] = 1e3
    with torch.no_grad():
        torch.testing.assert_close(model(text, audio, video, mt), model(*noisy, mt))


def test_missing_types_change_the_output(model: MPLMM) -> None:
    text, audio, video = make_inputs(model.config, 1)
    with torch.no_grad():
        outs = [model(text, audio, video, torch.tensor([t])) for t in range(7)]
    for t in range(1, 7):
        assert not torch.allclose(outs[0], outs[t]), MissingType(t).name


def test_parameter_counts(model: MPLMM) -> None:
    counts = model.parameter_counts()
    pack_names = dict(model.pack.named_parameters())
    assert counts["pack"] == sum(p.numel() for p in pack_names.values())
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["backbone"] == counts["total"] - counts["pack"]
    # Projections + head + the three prompt kinds are the pack, nothing else.
    assert {n.split(".")[0] for n in pack_names} == {
        "proj_t", "proj_a", "proj_v", "proj1", "proj2", "out_layer",
        "gen_prompt", "gen_map", "gen_fuse", "signal", "type_prompt", "type_w",
    }  # fmt: skip


def test_training_mode_paths_match_reference_without_dropout_noise(monkeypatch) -> None:
    # Train mode with attention dropout takes the grouped path's unfolded value bias;
    # with dropout itself made the identity, both implementations must still agree.
    monkeypatch.setattr(torch.nn.functional, "dropout", lambda x, p=0.5, training=True: x)
    torch.manual_seed(3)
    model = MPLMM(tiny_config(attn_dropout=0.3)).train()
    _check(model, [0, 1, 2, 3, 4, 5, 6])


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_last_only_is_the_last_step_of_the_full_run(causal: bool) -> None:
    # The branches ask run_grouped for their last step only; its last layer then
    # skips every other query. Same numbers as slicing the full output.
    torch.manual_seed(3)
    encoders = [
        Encoder(
            8, 2, 3, 10, attn_dropout=0.0, relu_dropout=0.0, res_dropout=0.0,
            embed_dropout=0.0, causal=causal,
        )
        for _ in range(2)
    ]  # fmt: skip
    x = torch.randn(2, 4, 7, 8)
    full = run_grouped(encoders, x)
    last = run_grouped(encoders, x, last_only=True)
    assert last.shape == (2, 4, 8)
    torch.testing.assert_close(last, full[:, :, -1], atol=1e-6, rtol=0)
