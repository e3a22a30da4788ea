#!/usr/bin/env bash
# Install, build the encoders (once), and serve the embedded default bundle.
source "$(dirname "$0")/_env.sh" build
mplmm build-encoders
exec mplmm serve "$@"
