"""Tiny configurations and inputs shared by the model tests (imported by name: a
`conftest` import would resolve to whichever conftest pytest loaded first)."""

from __future__ import annotations

import torch

from model.config import ModelConfig


def tiny_config(**overrides) -> ModelConfig:
    """d=8, 2 heads, 1-2 layers, lengths ~6: the whole model in a few thousand weights."""
    base = dict(
        dims=(7, 5, 4),
        lengths=(6, 5, 6),
        d=8,
        heads=2,
        layers=1,
        self_layers=2,
        prompt_length=3,
        output_dim=2,
    )
    base.update(overrides)
    return ModelConfig(**base)


def make_inputs(config: ModelConfig, batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shapes = zip(config.lengths, config.dims, strict=True)
    return [torch.randn(batch, n, dim, generator=g) for n, dim in shapes]
