"""Stage 2: with the backbone frozen, one optimiser step changes only pack tensors."""

from __future__ import annotations

import torch
from model_helpers import make_inputs

from model.mult import MPLMM


def test_one_step_changes_only_the_pack_and_type_prompts_learn(model: MPLMM) -> None:
    model.train()
    model.freeze_backbone()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in model.pack.parameters()}
    opt = torch.optim.SGD(trainable, lr=0.1)
    text, audio, video = make_inputs(model.config, 14)
    mt = torch.arange(14) % 7
    loss = model(text, audio, video, mt).pow(2).mean()
    loss.backward()

    # The released code's zero-times-zero init never gives these a gradient.
    assert model.pack.type_prompt.grad is not None
    assert model.pack.type_prompt.grad.abs().sum() > 0
    for key in ("t", "a", "v"):
        assert model.pack.type_w[key].grad.abs().sum() > 0, key
        assert model.pack.signal[key].grad.abs().sum() > 0, key
        assert model.pack.gen_prompt[key].grad.abs().sum() > 0, key
    assert all(p.grad is None for p in model.backbone.parameters())

    opt.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "nothing changed"
    assert all(k.startswith("pack.") for k in changed), sorted(changed)
    assert {"pack.type_prompt", "pack.type_w.t", "pack.type_w.a", "pack.type_w.v"} <= changed


def test_pretrain_mode_trains_backbone_projections_and_head(config) -> None:
    from model.prompts import PromptKind

    torch.manual_seed(0)
    model = MPLMM(config, prompts=PromptKind.NONE).train()
    text, audio, video = make_inputs(config, 7)
    model(text, audio, video, torch.arange(7)).sum().backward()
    assert model.backbone.cross["t_a"].layers[0].fc1.weight.grad.abs().sum() > 0
    assert model.pack.proj_t.weight.grad.abs().sum() > 0
    # Prompts are not used in stage 1, so they get no gradient at all.
    assert model.pack.type_prompt.grad is None
    assert model.pack.gen_prompt["t"].grad is None
