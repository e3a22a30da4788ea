"""Fixtures of the deployment checks."""

from __future__ import annotations

import pytest
from deploy_helpers import doc_table_names, settings_class, settings_names


@pytest.fixture(scope="session")
def agreed_names() -> set[str]:
    """The agreed `MPLMM_*` names: from `service.settings.Settings` when it exists, else
    from the configuration table in docs/DEPLOY.md (kept equal by test_config_reference)."""
    cls = settings_class()
    names = settings_names(cls) if cls is not None else set(doc_table_names())
    assert names
    return names
