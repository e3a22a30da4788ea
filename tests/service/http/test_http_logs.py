"""Logs: one JSON object per record whatever a client sends, a client's request ID only
when it is sane, and no request body in them."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_helpers import TinyBundle, fresh_packs, running_app, settings_for, speech_wav

from service.logs import JsonFormatter

SECRET = "my card number is 4111 1111 1111 1111"


@pytest.fixture(scope="module")
def client(
    svc_bundle: TinyBundle, svc_extractor: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    packs = fresh_packs(svc_bundle, Path(tmp_path_factory.mktemp("logs")) / "packs")
    app = running_app(
        settings_for(svc_bundle, packs), svc_extractor, svc_bundle.feature_spec_sha256
    )
    with app as c:
        yield c


def json_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    formatter = JsonFormatter()
    return [formatter.format(r) for r in caplog.records]


def test_hostile_client_strings_cannot_add_log_lines(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    evil = 'x"}\n{"level": "ERROR", "msg": "forged"}'
    r = client.post(
        "/predict",
        json={"text": "hello", "pack": evil},
        headers={"X-Request-ID": "abc\r\ninjected: yes"},
    )
    assert r.status_code == 422  # the pack name is refused
    assert r.headers["x-request-id"] != "abc\r\ninjected: yes"  # not echoed: replaced
    client.get("/nope%0A%7B%22msg%22%3A%22forged%22%7D")
    lines = json_lines(caplog)
    assert lines
    for line in lines:
        assert "\n" not in line
        assert "\r" not in line
        doc = json.loads(line)  # each record is exactly one JSON object
        assert doc.get("msg") != "forged"


def test_request_bodies_are_never_logged(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert client.post("/predict", json={"text": SECRET}).status_code == 200
    files = {"audio": ("a.wav", speech_wav(1.0), "audio/wav")}
    assert client.post("/predict", data={"text": SECRET}, files=files).status_code == 200
    assert client.post("/predict", json={"text": SECRET, "pack": "nope"}).status_code == 404
    logged = "\n".join(json_lines(caplog))
    assert "4111" not in logged
    assert "card number" not in logged
