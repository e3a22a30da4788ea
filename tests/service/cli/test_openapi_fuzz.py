"""Schemathesis against the OpenAPI spec of a real `mplmm serve`: requests generated from
the schema for every operation never get a 5xx, and every response matches the status
codes, content types and bodies the schema documents (issue 13, item 1). Bounded: a few
examples per operation, on loopback only."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from service_helpers import TinyBundle, cli_env, free_port, fresh_packs, serve_process, wait_served

schemathesis = pytest.importorskip("schemathesis", reason="the dev extra installs schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

TOKEN = "fuzz-token"
EXAMPLES = 40  # per operation
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def server(svc_bundle: TinyBundle, tmp_path_factory: pytest.TempPathFactory) -> Any:
    port = free_port()
    packs = fresh_packs(svc_bundle, tmp_path_factory.mktemp("fuzz") / "packs")
    env = cli_env(
        svc_bundle,
        packs,
        MPLMM_PORT=str(port),
        MPLMM_ADMIN_TOKEN=TOKEN,
        MPLMM_ASR="off",  # generated bodies carry no speech; keep each request cheap
        MPLMM_PACK_WATCH_INTERVAL_S="0",
        MPLMM_LOG_LEVEL="ERROR",
    )
    proc = serve_process(env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_served(proc, base)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _fuzz(op: Any, base: str, auth: dict[str, str] | None, failures: list[str]) -> Any:
    """A hypothesis test of one operation that records what fails instead of raising."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=op.as_strategy())
    def check(case: Any) -> None:
        try:
            case.call_and_validate(base_url=base, headers=auth, checks=CHECKS)
        except Exception as exc:  # collected: one report for every operation
            failures.append(f"{op.method.upper()} {op.path}: {str(exc)[:600]}")

    return check


@pytest.mark.slow
def test_generated_requests_get_documented_answers_and_never_a_5xx(server: str) -> None:
    schema = schemathesis.openapi.from_url(f"{server}/openapi.json")
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /predict", "GET /packs", "PUT /packs/{name}", "DELETE /packs/{name}",
        "GET /healthz", "GET /readyz", "GET /metrics",
    }  # fmt: skip
    for op in operations:
        auth = {"Authorization": f"Bearer {TOKEN}"} if op.method.upper() != "GET" else None
        _fuzz(op, server, auth, failures)()
    assert failures == [], "\n\n".join(failures[:5])
    assert httpx.get(f"{server}/readyz", timeout=5).status_code == 200  # still serving
