#!/usr/bin/env bash
# Install what the tests need (only when pyproject.toml changed), build the encoders (once),
# lint, type-check, test. The dev extra includes torch, so the encoders are built in .venv.
# shellcheck source=scripts/_env.sh
source "$(dirname "$0")/_env.sh" dev
mplmm build-encoders --check >/dev/null || mplmm build-encoders
ruff check .
ruff format --check .
mypy service
exec pytest "$@"
