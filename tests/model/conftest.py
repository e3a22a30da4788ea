"""Tiny configurations and models shared by the model tests."""

from __future__ import annotations

import pytest
import torch
from model_helpers import tiny_config

from model.config import ModelConfig
from model.mult import MPLMM


@pytest.fixture
def config() -> ModelConfig:
    return tiny_config()


@pytest.fixture
def model(config: ModelConfig) -> MPLMM:
    torch.manual_seed(0)
    return MPLMM(config).eval()
