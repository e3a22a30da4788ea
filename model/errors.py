"""Typed errors of the model package.

Torch-free so that the service can import and catch them. Every message names the tensor
or file concerned, what was expected and what was given.
"""

from __future__ import annotations


class ModelError(Exception):
    """Base of every error raised by `model/`."""


# --- inputs of the forward pass -------------------------------------------------------


class InputError(ModelError, ValueError):
    """A forward-pass input is unusable; raised before any compute."""


class InputShapeError(InputError):
    """A tensor has the wrong rank or size."""


class InputDtypeError(InputError):
    """A tensor has the wrong dtype."""


class MissingTypeRangeError(InputError):
    """`missing_type` holds a value outside 0..6."""


# --- prompt packs and manifests -------------------------------------------------------


class PackError(ModelError, ValueError):
    """A prompt pack or its manifest is unusable."""


class ManifestError(PackError):
    """A pack manifest is malformed or has invalid field values."""


class PackIntegrityError(PackError):
    """A pack file does not match the sha256 or tensor list its manifest records."""


class PackMismatchError(PackError):
    """A pack's tensor names or shapes do not fit the backbone."""


class BackboneMismatchError(PackError):
    """A pack was trained for another backbone (sha256 or feature spec differ)."""


class BackboneInfoError(ModelError, ValueError):
    """backbone.json is malformed."""


# --- export ---------------------------------------------------------------------------


class ExportError(ModelError):
    """ONNX export could not be done."""


class ExportValidationError(ExportError):
    """onnxruntime disagrees with torch; `mismatches` lists every disagreement found."""

    def __init__(self, mismatches: list[str]) -> None:
        self.mismatches = list(mismatches)
        lines = "\n  ".join(self.mismatches)
        super().__init__(f"{len(self.mismatches)} ONNX validation mismatch(es):\n  {lines}")
