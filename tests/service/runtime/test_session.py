"""Execution-provider choice of BackboneSession against a fake onnxruntime.

The fake lists the CUDA provider (as onnxruntime-gpu does on every machine), records the
providers each InferenceSession is asked for, raises when CUDA is asked for (in the
exception types session.py catches) and otherwise delegates to the real onnxruntime
session, on the CPU, over a real small ONNX file. `gpu_visible` is patched either way,
so no test depends on the machine having or lacking a GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from service_helpers import TinyBundle, fresh_packs, running_app, settings_for

import service.runtime.session as session_mod
from service.runtime.session import (
    CPU,
    CUDA,
    BackboneSession,
    ProviderUnavailableError,
    _requested_providers,
)
from service.settings import ExecutionProvider

REAL_SESSION = ort.InferenceSession
LOGGER = "service.runtime.session"


def ort_fail(message: str) -> Exception:
    """onnxruntime's own `Fail` (what a provider that cannot start raises)."""
    return ort.capi.onnxruntime_pybind11_state.Fail(message)


# The exception types BackboneSession treats as "this provider could not start".
CUDA_ERRORS: list[Callable[[str], Exception]] = [RuntimeError, ValueError, ort_fail]
CUDA_ERROR_IDS = ["RuntimeError", "ValueError", "ort.Fail"]


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real one-node graph: output = x + 1 over (N, 3) float32."""
    import onnx
    from onnx import TensorProto, helper

    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["output"])],
        "plus_one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3])],
        initializer=[one],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime the project allows
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("session") / "plus_one.onnx"
    onnx.save(model, str(path))
    return path


class FakeOrt:
    """Installs the fake `get_available_providers` and `InferenceSession` on the `ort`
    that session.py uses; `calls` records (path, providers) of every session built."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        *,
        available: tuple[str, ...] = (CUDA, CPU),
        cuda_error: Exception | None = None,
        reported: list[str] | None = None,
    ) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        fake = self

        class FakeSession:
            def __init__(
                self,
                path: Any,
                sess_options: Any = None,
                providers: list[str] | None = None,
                **kwargs: Any,
            ) -> None:
                asked = list(providers or [])
                fake.calls.append((str(path), asked))
                if cuda_error is not None and CUDA in asked:
                    raise cuda_error
                # The real session always runs on the CPU here: this machine has no GPU.
                self._real = REAL_SESSION(
                    path, sess_options=sess_options, providers=[CPU], **kwargs
                )
                self._reported = reported

            def get_providers(self) -> list[str]:
                if self._reported is not None:
                    return list(self._reported)
                return list(self._real.get_providers())

            def __getattr__(self, name: str) -> Any:
                return getattr(self._real, name)

        monkeypatch.setattr(session_mod.ort, "get_available_providers", lambda: list(available))
        monkeypatch.setattr(session_mod.ort, "InferenceSession", FakeSession)

    def providers_for(self, path: Path) -> list[list[str]]:
        """The provider lists asked for sessions over `path` (other models excluded)."""
        return [p for where, p in self.calls if Path(where) == Path(path)]


def gpu(monkeypatch: pytest.MonkeyPatch, visible: bool) -> None:
    monkeypatch.setattr(session_mod, "gpu_visible", lambda: visible)


def check_runs(session: BackboneSession) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = session.run({"x": x})
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x + 1)


def fallback_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == LOGGER and r.levelno == logging.WARNING and "falling back" in r.getMessage()
    ]


# ------------------------------------------------------------------ auto


@pytest.mark.parametrize("make_error", CUDA_ERRORS, ids=CUDA_ERROR_IDS)
def test_auto_with_gpu_falls_back_to_cpu_when_cuda_fails(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    onnx_file: Path,
    make_error: Callable[[str], Exception],
) -> None:
    gpu(monkeypatch, True)
    fake = FakeOrt(monkeypatch, cuda_error=make_error("libcudart.so.13: cannot open shared"))
    caplog.set_level(logging.WARNING, logger=LOGGER)

    session = BackboneSession(onnx_file, provider=ExecutionProvider.AUTO)

    assert fake.providers_for(onnx_file) == [[CUDA, CPU], [CPU]]
    assert session.provider == "CPUExecutionProvider"
    assert session.providers == [CPU]
    warnings = fallback_warnings(caplog)
    assert len(warnings) == 1, caplog.text
    assert "CUDA session failed" in warnings[0].getMessage()
    assert "libcudart.so.13: cannot open shared" in warnings[0].getMessage()
    check_runs(session)


def test_auto_with_gpu_keeps_cuda_when_the_session_gets_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, onnx_file: Path
) -> None:
    gpu(monkeypatch, True)
    fake = FakeOrt(monkeypatch, reported=[CUDA, CPU])
    caplog.set_level(logging.WARNING, logger=LOGGER)

    session = BackboneSession(onnx_file, provider=ExecutionProvider.AUTO)

    assert fake.providers_for(onnx_file) == [[CUDA, CPU]]
    assert session.provider == "CUDAExecutionProvider"
    assert session.providers == [CUDA, CPU]
    assert fallback_warnings(caplog) == []


def test_auto_without_a_visible_gpu_never_asks_for_cuda(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, onnx_file: Path
) -> None:
    gpu(monkeypatch, False)
    # CUDA is listed (onnxruntime-gpu lists it everywhere) and would fail if asked for.
    fake = FakeOrt(monkeypatch, cuda_error=RuntimeError("no CUDA-capable device is detected"))
    caplog.set_level(logging.WARNING, logger=LOGGER)

    assert _requested_providers(ExecutionProvider.AUTO) == [CPU]
    session = BackboneSession(onnx_file, provider=ExecutionProvider.AUTO)

    assert fake.providers_for(onnx_file) == [[CPU]]
    assert all(CUDA not in providers for _, providers in fake.calls)
    assert session.provider == CPU
    assert fallback_warnings(caplog) == []
    check_runs(session)


def test_auto_with_a_gpu_but_no_cuda_provider_asks_for_cpu_only(
    monkeypatch: pytest.MonkeyPatch, onnx_file: Path
) -> None:
    gpu(monkeypatch, True)
    fake = FakeOrt(monkeypatch, available=(CPU,))

    assert _requested_providers(ExecutionProvider.AUTO) == [CPU]
    session = BackboneSession(onnx_file, provider=ExecutionProvider.AUTO)

    assert fake.providers_for(onnx_file) == [[CPU]]
    assert session.provider == CPU


# ------------------------------------------------------------------ cpu


@pytest.mark.parametrize("visible", [True, False], ids=["gpu", "no-gpu"])
def test_cpu_asks_for_the_cpu_provider_only(
    monkeypatch: pytest.MonkeyPatch, onnx_file: Path, visible: bool
) -> None:
    gpu(monkeypatch, visible)
    fake = FakeOrt(monkeypatch, cuda_error=RuntimeError("CUDA must not be tried"))

    assert _requested_providers(ExecutionProvider.CPU) == [CPU]
    session = BackboneSession(onnx_file, provider=ExecutionProvider.CPU)

    assert fake.providers_for(onnx_file) == [[CPU]]
    assert session.provider == CPU
    check_runs(session)


def test_cpu_session_failure_is_raised_as_is(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A broken model on the CPU is not a provider problem: no retry, no renaming."""
    gpu(monkeypatch, True)
    fake = FakeOrt(monkeypatch)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an onnx model")

    with pytest.raises(Exception) as info:  # noqa: PT011 (whatever onnxruntime raises)
        BackboneSession(broken, provider=ExecutionProvider.CPU)

    assert not isinstance(info.value, ProviderUnavailableError)
    assert fake.providers_for(broken) == [[CPU]]


# ------------------------------------------------------------------ cuda


@pytest.mark.parametrize("make_error", CUDA_ERRORS, ids=CUDA_ERROR_IDS)
def test_cuda_required_and_cuda_fails_is_provider_unavailable(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    onnx_file: Path,
    make_error: Callable[[str], Exception],
) -> None:
    gpu(monkeypatch, True)
    cause = make_error("CUDA driver version is insufficient for CUDA runtime version")
    fake = FakeOrt(monkeypatch, cuda_error=cause)
    caplog.set_level(logging.WARNING, logger=LOGGER)

    with pytest.raises(ProviderUnavailableError) as info:
        BackboneSession(onnx_file, provider=ExecutionProvider.CUDA)

    message = str(info.value)
    assert message.startswith("CUDA session failed: ")
    assert "CUDA driver version is insufficient for CUDA runtime version" in message
    assert info.value.__cause__ is cause
    # No silent CPU fallback when CUDA was required.
    assert fake.providers_for(onnx_file) == [[CUDA, CPU]]
    assert fallback_warnings(caplog) == []


@pytest.mark.parametrize("visible", [True, False], ids=["gpu", "no-gpu"])
def test_cuda_required_without_a_cuda_provider_says_how_to_fix(
    monkeypatch: pytest.MonkeyPatch, onnx_file: Path, visible: bool
) -> None:
    gpu(monkeypatch, visible)
    fake = FakeOrt(monkeypatch, available=("AzureExecutionProvider", CPU))

    with pytest.raises(ProviderUnavailableError) as info:
        BackboneSession(onnx_file, provider=ExecutionProvider.CUDA)

    message = str(info.value)
    assert "MPLMM_EXECUTION_PROVIDER=cuda" in message
    assert "['AzureExecutionProvider', 'CPUExecutionProvider']" in message
    assert "install onnxruntime-gpu" in message
    assert "set MPLMM_EXECUTION_PROVIDER=auto" in message
    assert fake.calls == []  # refused before any session is built
    with pytest.raises(ProviderUnavailableError):
        _requested_providers(ExecutionProvider.CUDA)


def test_cuda_required_asks_for_cuda_even_without_a_visible_gpu(
    monkeypatch: pytest.MonkeyPatch, onnx_file: Path
) -> None:
    """An explicit `cuda` is not second-guessed by the /dev probe."""
    gpu(monkeypatch, False)
    fake = FakeOrt(monkeypatch, reported=[CUDA, CPU])

    assert _requested_providers(ExecutionProvider.CUDA) == [CUDA, CPU]
    session = BackboneSession(onnx_file, provider=ExecutionProvider.CUDA)

    assert fake.providers_for(onnx_file) == [[CUDA, CPU]]
    assert session.provider == CUDA


def test_cuda_required_but_the_session_runs_on_cpu_is_provider_unavailable(
    monkeypatch: pytest.MonkeyPatch, onnx_file: Path
) -> None:
    """The session is built without error but silently got the CPU only (what
    onnxruntime-gpu does when the CUDA provider cannot load): the provider is read back
    from get_providers(), not assumed from what was asked for."""
    gpu(monkeypatch, True)
    fake = FakeOrt(monkeypatch, reported=[CPU])

    with pytest.raises(ProviderUnavailableError) as info:
        BackboneSession(onnx_file, provider=ExecutionProvider.CUDA)

    assert str(info.value) == (
        "MPLMM_EXECUTION_PROVIDER=cuda but the session runs on ['CPUExecutionProvider']"
    )
    assert fake.providers_for(onnx_file) == [[CUDA, CPU]]


def test_auto_reports_the_provider_the_session_got_not_the_one_asked_for(
    monkeypatch: pytest.MonkeyPatch, onnx_file: Path
) -> None:
    gpu(monkeypatch, True)
    fake = FakeOrt(monkeypatch, reported=[CPU])

    session = BackboneSession(onnx_file, provider=ExecutionProvider.AUTO)

    assert fake.providers_for(onnx_file) == [[CUDA, CPU]]
    assert session.provider == CPU
    assert session.providers == [CPU]


# ------------------------------------------------------------------ /readyz


@pytest.mark.parametrize(
    ("fake_kwargs", "want"),
    [
        ({"cuda_error": RuntimeError("CUDA failure 100: no CUDA-capable device")}, [CPU]),
        ({"reported": [CUDA, CPU]}, [CUDA, CPU]),
    ],
    ids=["cuda-fails-cpu-fallback", "cuda-granted"],
)
def test_readyz_names_the_provider_the_backbone_session_really_got(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    svc_bundle: TinyBundle,
    svc_extractor: Any,
    fake_kwargs: dict[str, Any],
    want: list[str],
) -> None:
    gpu(monkeypatch, True)
    fake = FakeOrt(monkeypatch, **fake_kwargs)
    packs = fresh_packs(svc_bundle, tmp_path / "packs")
    settings = settings_for(svc_bundle, packs, execution_provider="auto")

    with running_app(settings, svc_extractor, svc_bundle.feature_spec_sha256) as client:
        r = client.get("/readyz")

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["execution_provider"] == want[0]
    assert body["providers"] == want
    asked = fake.providers_for(svc_bundle.root / "backbone.onnx")
    assert asked[0] == [CUDA, CPU]
    assert asked == ([[CUDA, CPU], [CPU]] if "cuda_error" in fake_kwargs else [[CUDA, CPU]])


def test_readyz_is_503_naming_the_cause_when_required_cuda_fails(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    svc_bundle: TinyBundle,
    svc_extractor: Any,
) -> None:
    gpu(monkeypatch, True)
    FakeOrt(monkeypatch, cuda_error=RuntimeError("CUDA failure 100: no CUDA-capable device"))
    packs = fresh_packs(svc_bundle, tmp_path / "packs")
    settings = settings_for(svc_bundle, packs, execution_provider="cuda")

    with running_app(settings, svc_extractor, svc_bundle.feature_spec_sha256) as client:
        r = client.get("/readyz")
        p = client.post("/predict", data={"text": "hello"})

    assert r.status_code == 503, r.text
    body = r.json()
    assert body["ready"] is False
    assert body["reason"].startswith("start-up failed")
    assert "CUDA session failed: CUDA failure 100: no CUDA-capable device" in body["reason"]
    assert body["execution_provider"] is None
    assert p.status_code == 503
    assert p.json()["error"]["code"] == "not_ready"
