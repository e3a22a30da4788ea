#!/usr/bin/env bash
# Install what the tests need (only when pyproject.toml changed), build the encoders (once),
# install espeak-ng, redis-server and chromium (apt-get) when missing, lint, type-check,
# test. The dev extra includes torch, so the encoders are built in .venv.
# shellcheck source=scripts/_env.sh
source "$(dirname "$0")/_env.sh" dev
# Debian packages the tests use: espeak-ng speaks the speech tests' sentences; the jobs
# test starts a real redis-server shared by two service processes; the page's test drives
# a headless chromium through chromium-driver.
missing=()
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
    echo "mplmm: installing ${missing[*]} (apt-get)" >&2
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi
mplmm build-encoders --check >/dev/null || mplmm build-encoders
ruff check .
ruff format --check .
mypy service
mypy --strict client/mplmm_client
exec pytest "$@"
