"""The configuration reference in docs/DEPLOY.md, the settings class, and every `MPLMM_*`
name the deployment files use, kept in agreement."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import MPLMM_NAME, REPO, doc_table_names, settings_class, settings_names

DEPLOY_FILES = [
    REPO / "Dockerfile",
    REPO / "docker-compose.yml",
    REPO / "docker-compose.cpu.yml",
    REPO / "docs" / "DEPLOY.md",
    *sorted((REPO / "k8s").rglob("*.yaml")),
    *sorted((REPO / "k8s").rglob("*.env")),
]


@pytest.fixture(scope="module")
def settings() -> Any:
    cls = settings_class()
    if cls is None:
        pytest.skip("service/settings.py does not exist yet: nothing to compare the table with")
    return cls


def test_table_lists_the_agreed_variables() -> None:
    names = doc_table_names()
    assert len(names) == 49
    assert {"MPLMM_HOST", "MPLMM_PACKS_DIR", "MPLMM_ADMIN_TOKEN", "MPLMM_DRAIN_TIMEOUT_S"} <= set(
        names
    )


def test_table_equals_the_settings_class(settings: Any) -> None:
    assert set(doc_table_names()) == settings_names(settings)


def _documented_default(cell: str) -> str | None:
    match = re.match(r"`([^`]*)`", cell)
    return match.group(1) if match else None


def test_table_defaults_match_the_settings_class(settings: Any) -> None:
    prefix = settings.model_config.get("env_prefix", "MPLMM_")
    checked = 0
    for name, cell in doc_table_names().items():
        field = settings.model_fields[name[len(prefix) :].lower()]
        default = field.default
        if default is None:
            assert cell.startswith(("unset", "`$")), f"{name}: {cell!r}"
            continue
        if isinstance(default, Path):
            continue  # the repository's bundle/: described in words
        documented = _documented_default(cell)
        assert documented is not None, f"{name}: {cell!r}"
        if isinstance(default, Enum):
            assert documented == default.value, name
        elif isinstance(default, bool):
            assert documented == str(default).lower(), name
        elif isinstance(default, (int, float)):
            assert float(documented) == float(default), name
        else:
            assert documented == default, name
        checked += 1
    assert checked >= 20


def test_deploy_files_use_only_agreed_names(agreed_names: set[str]) -> None:
    used = {path: set(MPLMM_NAME.findall(path.read_text())) for path in DEPLOY_FILES}
    unknown = {str(p.relative_to(REPO)): sorted(n - agreed_names) for p, n in used.items()}
    assert {p: n for p, n in unknown.items() if n} == {}
    # The check sees the settings where they are set: image, compose, ConfigMap, docs.
    assert len(used[REPO / "k8s" / "base" / "settings.env"]) == 32
    assert "MPLMM_EXECUTION_PROVIDER" in used[REPO / "docker-compose.cpu.yml"]
    assert "MPLMM_PACKS_DIR" in used[REPO / "Dockerfile"]
