"""k8s/training/pytorchjob.yaml: `mplmm train` as a Kubeflow PyTorchJob, checked offline.

The PersistentVolumeClaim and each replica's pod template are validated against the
Kubernetes schemas (kubernetes-validate, strict). The PyTorchJob itself is a custom
resource: its fields are checked against a JSON schema of the fields this file uses,
written from the training operator's kubeflow.org/v1 types (PyTorchJobSpec, ReplicaSpec,
RunPolicy), with the rules its admission webhook adds. The container's command is parsed
by torchrun's and mplmm's own argument parsers, and its overrides by the run config
loader, so a typo there fails here rather than in the cluster.
"""

from __future__ import annotations

import argparse
import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from deploy_helpers import REPO
from torch.distributed.run import get_args_parser

from training.cli import train
from training.cli.common import DEFAULT_CONFIG
from training.config import load_config

JOB_FILE = REPO / "k8s" / "training" / "pytorchjob.yaml"
K8S_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
DNS_1035 = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
# What the operator sets in each container (pkg/controller.v1/pytorch/envvar.go, master.go),
# with example values: $(VAR) references in the command may use these.
OPERATOR_ENV = {
    "MASTER_ADDR": "mplmm-train-master-0",
    "MASTER_PORT": "23456",
    "WORLD_SIZE": "8",
    "RANK": "0",
    "PET_NPROC_PER_NODE": "4",
    "PET_NODE_RANK": "0",
    "PET_NNODES": "2",
}

_REPLICA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["replicas", "template"],
    "properties": {
        "replicas": {"type": "integer", "minimum": 1},
        "restartPolicy": {"enum": ["Always", "OnFailure", "Never", "ExitCode"]},
        "template": {"type": "object"},  # a core/v1 PodTemplateSpec: validated on its own
    },
}
PYTORCHJOB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "kubeflow.org/v1"},
        "kind": {"const": "PyTorchJob"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": DNS_1035, "maxLength": 63},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["pytorchReplicaSpecs"],
            "properties": {
                "nprocPerNode": {"type": "string", "pattern": "^(auto|cpu|gpu|[1-9][0-9]*)$"},
                "runPolicy": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "cleanPodPolicy": {"enum": ["All", "Running", "None"]},
                        "backoffLimit": {"type": "integer", "minimum": 0},
                        "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
                        "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
                    },
                },
                # The operator's webhook: Master and Worker only, exactly one Master.
                "pytorchReplicaSpecs": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["Master"],
                    "properties": {
                        "Master": {**_REPLICA, "properties": {
                            **_REPLICA["properties"], "replicas": {"const": 1}}},
                        "Worker": _REPLICA,
                    },
                },
            },
        },
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    loaded = [d for d in yaml.safe_load_all(JOB_FILE.read_text(encoding="utf-8")) if d]
    by_kind = {d["kind"]: d for d in loaded}
    assert sorted(by_kind) == ["PersistentVolumeClaim", "PyTorchJob"]
    return by_kind


def _replicas(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert isinstance(replicas, dict)
    return replicas


def _container(replica: dict[str, Any]) -> dict[str, Any]:
    """The container named `pytorch`: the one the operator configures (webhook rule)."""
    [container] = [c for c in replica["template"]["spec"]["containers"] if c["name"] == "pytorch"]
    assert isinstance(container, dict)
    return container


def _expanded_args(container: dict[str, Any]) -> list[str]:
    """The container's arguments as Kubernetes runs them: $(VAR) replaced from the env."""
    env = {**OPERATOR_ENV, **{e["name"]: e["value"] for e in container.get("env", [])}}
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in container["args"]]


def test_job_follows_the_operator_schema(docs: dict[str, dict[str, Any]]) -> None:
    jsonschema.validate(docs["PyTorchJob"], PYTORCHJOB_SCHEMA)
    for replica in _replicas(docs["PyTorchJob"]).values():
        assert _container(replica)["image"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_volume_and_pods_validate(docs: dict[str, dict[str, Any]], version: str) -> None:
    kubernetes_validate.validate(docs["PersistentVolumeClaim"], version, strict=True)
    for name, replica in _replicas(docs["PyTorchJob"]).items():
        pod_template = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": f"mplmm-train-{name.lower()}"},
            "template": replica["template"],
        }
        kubernetes_validate.validate(pod_template, version, strict=True)


def test_schemas_reject_broken_jobs(docs: dict[str, dict[str, Any]]) -> None:
    # The checks can fail: a misspelt field, a second master, an unknown pod field.
    job = copy.deepcopy(docs["PyTorchJob"])
    job["spec"]["pytorchReplicaSpec"] = job["spec"].pop("pytorchReplicaSpecs")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(job, PYTORCHJOB_SCHEMA)
    job = copy.deepcopy(docs["PyTorchJob"])
    job["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] = 2
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(job, PYTORCHJOB_SCHEMA)
    template = copy.deepcopy(_replicas(docs["PyTorchJob"])["Worker"]["template"])
    template["spec"]["containers"][0]["resource"] = {}
    broken = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "x"},
              "template": template}  # fmt: skip
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def test_command_is_torchrun_running_mplmm_train(docs: dict[str, dict[str, Any]]) -> None:
    for replica in _replicas(docs["PyTorchJob"]).values():
        container = _container(replica)
        assert container["command"] == ["torchrun"]
        launch = get_args_parser().parse_args(_expanded_args(container))
        assert (launch.module, launch.training_script) == (True, "mplmm.cli")
        assert (launch.master_addr, launch.master_port) == ("mplmm-train-master-0", 23456)
        command, *rest = launch.training_script_args
        assert command == "train"
        parser = argparse.ArgumentParser()
        train.add_arguments(parser)
        args = parser.parse_args(rest)
        assert args.stage == "bundle"
        assert args.config == DEFAULT_CONFIG  # the config the image carries
        run = load_config(args.config, args.overrides)  # unknown keys would raise here
        mount = _mount_of(container, "data")
        for path in (run.data.data_dir, run.data.cache_dir, run.out, run.eval_out):
            assert Path(path).is_relative_to(mount), f"{path} is not on the shared volume"


def _mount_of(container: dict[str, Any], volume: str) -> str:
    [mount] = [m["mountPath"] for m in container["volumeMounts"] if m["name"] == volume]
    assert isinstance(mount, str)
    return mount


def test_every_pod_gets_its_gpus_and_the_shared_volume(docs: dict[str, dict[str, Any]]) -> None:
    job = docs["PyTorchJob"]
    gpus_per_pod = int(job["spec"]["nprocPerNode"])  # one process per GPU (cuda:LOCAL_RANK)
    pvc = docs["PersistentVolumeClaim"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"], "several pods read and write it"
    replicas = _replicas(job)
    assert replicas["Master"]["template"] == replicas["Worker"]["template"]
    for replica in replicas.values():
        pod = replica["template"]["spec"]
        container = _container(replica)
        resources = container["resources"]
        assert resources["limits"]["nvidia.com/gpu"] == gpus_per_pod
        assert resources["requests"]["nvidia.com/gpu"] == gpus_per_pod
        volumes = {v["name"]: v for v in pod["volumes"]}
        claim = volumes["data"]["persistentVolumeClaim"]["claimName"]
        assert claim == pvc["metadata"]["name"]
        # NCCL exchanges data between a pod's GPUs through shared memory: more than the
        # container runtime's 64 MiB default.
        assert volumes[_volume_at(container, "/dev/shm")]["emptyDir"]["medium"] == "Memory"
        assert "NCCL_DEBUG" in {e["name"] for e in container["env"]}
        assert [p["name"] for p in container["ports"]] == ["pytorchjob-port"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


def _volume_at(container: dict[str, Any], path: str) -> str:
    [name] = [m["name"] for m in container["volumeMounts"] if m["mountPath"] == path]
    assert isinstance(name, str)
    return name


def test_the_job_is_not_part_of_the_service() -> None:
    """`kubectl apply -k k8s/base` deploys the service only; the job is applied on its own."""
    for kustomization in (REPO / "k8s").rglob("kustomization.yaml"):
        listed = yaml.safe_load(kustomization.read_text(encoding="utf-8")).get("resources", [])
        for resource in listed:
            path = (kustomization.parent / resource).resolve()
            assert not path.is_relative_to(JOB_FILE.parent), (kustomization, resource)
