#!/usr/bin/env bash
# Install what the tests need, build the encoders (once), lint, type-check, test.
source "$(dirname "$0")/_env.sh" dev
mplmm build-encoders
ruff check .
ruff format --check .
mypy service
exec pytest "$@"
