#!/usr/bin/env bash
# Install what the tests need (only when pyproject.toml changed), build the encoders (once),
# install espeak-ng (apt-get) when missing, lint, type-check, test. The dev extra includes
# torch, so the encoders are built in .venv.
# shellcheck source=scripts/_env.sh
source "$(dirname "$0")/_env.sh" dev
# The speech tests need real speech: espeak-ng (a Debian package) speaks their sentences.
if ! command -v espeak-ng >/dev/null; then
    echo "mplmm: installing espeak-ng (apt-get)" >&2
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        espeak-ng >/dev/null
fi
mplmm build-encoders --check >/dev/null || mplmm build-encoders
ruff check .
ruff format --check .
mypy service
exec pytest "$@"
