#!/usr/bin/env bash
# GPU device check of the MPLMM forward (bench/device_check.py); prints one JSON object.
#   bash bench/device_check.sh [--quick] [--batches 1,64,256] [--budget-s 240] > out.json
# On a lent GPU machine the project's .venv is not there: the machine's own python3 (with
# its torch) runs it. Here, .venv/bin/python does when it has torch. $PYTHON overrides.
# `timeout` backs up the script's own time guard (--budget-s), so a hung CUDA call still
# ends the run within 5 minutes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then
        PY=.venv/bin/python
    else
        PY=python3
    fi
fi
exec timeout --kill-after=5 290 "$PY" bench/device_check.py "$@"
