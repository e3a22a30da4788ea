"""Where things live: file names of a bundle and of a packs dir, the rules for pack names
and versions, and the default locations. Torch-free; the one definition that `model/`,
`training/` and `service/` import.

```
<bundle>/backbone.onnx  backbone.json  backbone.safetensors
<bundle>/encoders/                    built by `mplmm build-encoders`, never committed
<bundle>/packs/<name>/<version>/pack.safetensors + manifest.json
<packs dir>/<name>/CURRENT            the version in service (one line); optional
```

Paths: every default below is absolute (the repository's `bundle/`, the user's data
dir), so a default never depends on the working directory; a relative path that a user
passes (flag, environment variable, config file) is taken relative to the working
directory, as every command-line tool does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

BACKBONE_ONNX = "backbone.onnx"
BACKBONE_JSON = "backbone.json"
BACKBONE_WEIGHTS = "backbone.safetensors"
ENCODERS_DIR = "encoders"
PACKS_DIR = "packs"
PACK_FILE = "pack.safetensors"
MANIFEST_FILE = "manifest.json"
CURRENT_FILE = "CURRENT"

# Pack names become directory names and metric labels: lowercase, no dots, no slashes.
PACK_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
# Versions become directory names too; '..' is refused on top of the pattern.
VERSION_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$"
_PACK_NAME_RE = re.compile(PACK_NAME_PATTERN)
_VERSION_RE = re.compile(VERSION_PATTERN)

# The repository, and the bundle committed in it: backbone and default packs (the
# encoders are built into it by `mplmm build-encoders`).
REPO_DIR = Path(__file__).resolve().parents[1]
REPO_BUNDLE_DIR = REPO_DIR / "bundle"
REPO_ENCODERS_DIR = REPO_BUNDLE_DIR / ENCODERS_DIR


def is_pack_name(name: str) -> bool:
    return _PACK_NAME_RE.fullmatch(name) is not None


def is_version(version: str) -> bool:
    return _VERSION_RE.fullmatch(version) is not None and ".." not in version


def user_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$XDG_DATA_HOME/mplmm`, else `~/.local/share/mplmm`: writable state of a local
    server (its packs dir), kept out of the source tree."""
    env = os.environ if env is None else env
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local/share")
    return Path(base) / "mplmm"
