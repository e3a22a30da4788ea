"""Fixtures shared by the video and face test modules."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def encoders_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.encoders.face import build_face_encoder

    out = tmp_path_factory.getbasetemp() / "face_encoders"
    build_face_encoder(out)  # idempotent: shared with the other video test modules
    return out
