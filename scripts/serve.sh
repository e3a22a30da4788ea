#!/usr/bin/env bash
# Install the serving dependencies (first run only), build the encoders (once), and serve the
# embedded default bundle. The serving venv ($MPLMM_VENV, default .venv) gets the base
# dependencies only: no torch. The encoders need torch to be built, so they are built in a
# separate build venv ($MPLMM_BUILD_VENV, default .venv-build) only when
# `mplmm build-encoders --check` (torch-free) says bundle/encoders is missing or out of date.
# After that first build the build venv is never used again; it may be deleted.
# shellcheck source=scripts/_env.sh
source "$(dirname "$0")/_env.sh" base
if ! mplmm build-encoders --check >/dev/null; then
    BUILD_VENV="${MPLMM_BUILD_VENV:-.venv-build}"
    echo "mplmm: bundle/encoders missing or out of date; building it in $BUILD_VENV" >&2
    mplmm_install "$BUILD_VENV" build
    "$BUILD_VENV/bin/mplmm" build-encoders
    mplmm build-encoders --check >&2  # fail here (and say why), not at serve time
fi
exec mplmm serve "$@"
