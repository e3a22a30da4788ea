"""The onnxruntime session of the frozen backbone, on the execution provider it really got.

onnxruntime-gpu lists the CUDA provider even on a machine without a GPU, so the provider
in use is read back from `session.get_providers()` after the session is built, never
inferred from what is available.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.settings import ExecutionProvider

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


class ProviderUnavailableError(RuntimeError):
    """`MPLMM_EXECUTION_PROVIDER=cuda` was asked for but the session did not get CUDA."""


def gpu_visible() -> bool:
    """An NVIDIA device node is present (bare metal, or a container given a GPU)."""
    return Path("/dev/nvidiactl").exists() or any(Path("/dev").glob("nvidia[0-9]*"))


def _requested_providers(choice: ExecutionProvider) -> list[str]:
    available = ort.get_available_providers()
    if choice is ExecutionProvider.CPU:
        return [CPU]
    # `auto` asks for CUDA only when a GPU is visible: onnxruntime-gpu lists the CUDA
    # provider everywhere, and trying it without a device logs a loud library error.
    wanted = choice is ExecutionProvider.CUDA or gpu_visible()
    if CUDA in available and wanted:
        return [CUDA, CPU]
    if choice is ExecutionProvider.CUDA:
        raise ProviderUnavailableError(
            f"MPLMM_EXECUTION_PROVIDER=cuda but onnxruntime offers only {available}; "
            "install onnxruntime-gpu or set MPLMM_EXECUTION_PROVIDER=auto"
        )
    return [CPU]


class BackboneSession:
    """One ORT session over `backbone.onnx`; `run(feeds)` returns the `(B, K)` output."""

    def __init__(
        self,
        onnx_path: Path,
        *,
        provider: ExecutionProvider = ExecutionProvider.AUTO,
        intra_op_threads: int = 0,
        output_name: str = "output",
    ) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads > 0:
            options.intra_op_num_threads = intra_op_threads
        # Batches arrive in bursts and share the CPU with feature extraction: threads that
        # spin-wait between calls would steal those cores from the extractors.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        requested = _requested_providers(provider)
        try:
            self._session = ort.InferenceSession(
                str(onnx_path), sess_options=options, providers=requested
            )
        except (RuntimeError, ValueError, ort.capi.onnxruntime_pybind11_state.Fail) as exc:
            if requested == [CPU]:
                raise
            # The CUDA provider is listed but could not start (no driver, no device):
            # fall back to the CPU unless CUDA was explicitly required.
            if provider is ExecutionProvider.CUDA:
                raise ProviderUnavailableError(f"CUDA session failed: {exc}") from exc
            log.warning("CUDA session failed (%s); falling back to the CPU provider", exc)
            self._session = ort.InferenceSession(
                str(onnx_path), sess_options=options, providers=[CPU]
            )
        self.providers: list[str] = list(self._session.get_providers())
        if provider is ExecutionProvider.CUDA and self.providers[0] != CUDA:
            raise ProviderUnavailableError(
                f"MPLMM_EXECUTION_PROVIDER=cuda but the session runs on {self.providers}"
            )
        self.input_names: list[str] = [i.name for i in self._session.get_inputs()]
        self.output_name = output_name
        outputs = [o.name for o in self._session.get_outputs()]
        if output_name not in outputs:
            raise ValueError(f"{onnx_path} has no output {output_name!r}; outputs: {outputs}")
        log.info(
            "backbone session ready",
            extra={"onnx": str(onnx_path), "execution_provider": self.provider},
        )

    @property
    def provider(self) -> str:
        """The provider that really runs the graph (first in the session's list)."""
        return self.providers[0]

    def run(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        out = self._session.run([self.output_name], dict(feeds))[0]
        return np.asarray(out, dtype=np.float32)
