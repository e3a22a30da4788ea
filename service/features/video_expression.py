"""Face-expression scores from the ported FER2013 mini-Xception, run by onnxruntime.

The model is built by `mplmm build-encoders` (training/encoders/face.py) into
`<encoders_dir>/face_expression.onnx`, with `face_expression.json` beside it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from model.expressions import FACE_EXPRESSIONS
from model.files import sha256_file

log = logging.getLogger(__name__)

# The encoder's files, as `mplmm build-encoders` (training/encoders/face.py) writes them.
ONNX_NAME = "face_expression.onnx"
JSON_NAME = "face_expression.json"
# The version of the Keras -> ONNX port that wrote them; a folder with another is rebuilt.
PORT_VERSION = "1"
EXPRESSIONS = FACE_EXPRESSIONS  # the model's output columns
INPUT_NAME = "face"
BATCH = 64  # crops per ORT call: bounds memory for long videos


class EncoderMissingError(FileNotFoundError):
    """The face-expression encoder has not been built into the encoders folder."""


class ExpressionModel:
    """Seven expression probabilities per grayscale face crop. Thread-safe (ORT's run is)."""

    def __init__(
        self,
        encoders_dir: Path,
        providers: list[str] | None = None,
        intra_op_threads: int = 1,
    ) -> None:
        path = Path(encoders_dir) / ONNX_NAME
        if not path.is_file():
            raise EncoderMissingError(
                f"{path} not found: build it with `mplmm build-encoders --out {encoders_dir}`"
            )
        meta_path = path.with_name(JSON_NAME)
        self.meta: dict[str, object] = (
            json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        )
        classes = self.meta.get("classes")
        if classes is not None and tuple(classes) != EXPRESSIONS:  # type: ignore[arg-type]
            raise ValueError(f"{meta_path}: classes {classes} != expected {list(EXPRESSIONS)}")
        want = self.meta.get("sha256")
        if want is not None and (got := sha256_file(path)) != want:
            raise ValueError(
                f"{path} has sha256 {got[:12]}..., {meta_path.name} records {str(want)[:12]}...: "
                f"the file is damaged; rebuild it with `mplmm build-encoders --force --only face`"
            )
        opts = ort.SessionOptions()
        # One thread: crops are batched per video and requests run in parallel.
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(path), sess_options=opts, providers=providers or ["CPUExecutionProvider"]
        )
        self.sha256 = str(self.meta.get("sha256", ""))
        log.info("face-expression model %s on %s", path, self.session.get_providers()[0])

    def predict(self, crops: np.ndarray) -> np.ndarray:
        """uint8 crops `(N, 64, 64)` -> float32 probabilities `(N, 7)` in EXPRESSIONS order."""
        if len(crops) == 0:
            return np.zeros((0, len(EXPRESSIONS)), np.float32)
        x = crops.astype(np.float32)[:, None] * (2.0 / 255.0) - 1.0  # (N, 1, 64, 64) in [-1, 1]
        out = [
            self.session.run(None, {INPUT_NAME: x[i : i + BATCH]})[0]
            for i in range(0, len(x), BATCH)
        ]
        return np.concatenate(out).astype(np.float32)
