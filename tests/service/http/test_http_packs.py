"""GET /packs, PUT /packs/{name}, DELETE /packs/{name}: auth, validation, swap, disk."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_helpers import (
    EMOTION_LABELS,
    SENTIMENT_LABELS,
    TinyBundle,
    edited_manifest,
    error_of,
    fresh_packs,
    metric,
    running_app,
    settings_for,
    upload_files,
)

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def packs_dir(svc_bundle: TinyBundle, tmp_path: Path) -> Path:
    return fresh_packs(svc_bundle, tmp_path / "packs")


@pytest.fixture
def client(svc_bundle: TinyBundle, svc_extractor: Any, packs_dir: Path) -> Iterator[TestClient]:
    settings = settings_for(svc_bundle, packs_dir, admin_token=TOKEN)
    with running_app(settings, svc_extractor, svc_bundle.feature_spec_sha256) as c:
        yield c


def test_list_packs(client: TestClient) -> None:
    r = client.get("/packs")
    assert r.status_code == 200
    body = r.json()
    assert body["default_pack"] == "sentiment"
    packs = {p["name"]: p for p in body["packs"]}
    assert list(packs) == ["emotion", "sentiment"]
    s = packs["sentiment"]
    assert (s["version"], s["task"], s["labels"], s["modalities"], s["default"]) == (
        "1.0.0",
        "classification",
        SENTIMENT_LABELS,
        ["text", "audio", "video"],
        True,
    )
    e = packs["emotion"]
    assert (e["labels"], e["modalities"], e["default"]) == (
        EMOTION_LABELS,
        ["text", "audio"],
        False,
    )
    assert e["metrics"] == {"split": "none (random init, tests only)"}
    assert e["training_data"] == [{"name": "random init", "licence": "n/a"}]


def test_admin_disabled_without_a_configured_token(
    svc_bundle: TinyBundle, svc_extractor: Any, packs_dir: Path
) -> None:
    settings = settings_for(svc_bundle, packs_dir)  # no MPLMM_ADMIN_TOKEN
    with running_app(settings, svc_extractor, svc_bundle.feature_spec_sha256) as c:
        files = upload_files(svc_bundle.uploads / "sentiment" / "2.0.0")
        for r in (c.put("/packs/sentiment", files=files, headers=AUTH), c.delete("/packs/emotion")):
            assert r.status_code == 403
            assert error_of(r) == {
                "code": "admin_disabled",
                "message": "admin disabled: set MPLMM_ADMIN_TOKEN on the server to enable "
                "pack uploads",
            }


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing bearer token: send 'Authorization: Bearer <token>'"),
        (
            {"Authorization": "Basic abc"},
            "missing bearer token: send 'Authorization: Bearer <token>'",
        ),
        ({"Authorization": "Bearer wrong"}, "invalid admin token"),
        ({"Authorization": f"Bearer {TOKEN}x"}, "invalid admin token"),
    ],
)
def test_missing_or_bad_token_is_401(
    client: TestClient, svc_bundle: TinyBundle, headers: dict[str, str], message: str
) -> None:
    files = upload_files(svc_bundle.uploads / "sentiment" / "2.0.0")
    for r in (
        client.put("/packs/sentiment", files=files, headers=headers),
        client.delete("/packs/emotion", headers=headers),
    ):
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert error_of(r) == {"code": "unauthorized", "message": message}
    assert client.get("/packs").json()["packs"][1]["version"] == "1.0.0"


def test_upload_swaps_in_and_publishes_to_the_shared_dir(
    client: TestClient, svc_bundle: TinyBundle, packs_dir: Path
) -> None:
    before = client.post("/predict", json={"text": "a fine film"}).json()
    assert before["pack"] == {"name": "sentiment", "version": "1.0.0"}
    src = svc_bundle.uploads / "sentiment" / "2.0.0"
    r = client.put("/packs/sentiment", files=upload_files(src), headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["previous_version"] == "1.0.0"
    assert body["pack"]["name"] == "sentiment"
    assert body["pack"]["version"] == "2.0.0"
    after = client.post("/predict", json={"text": "a fine film"}).json()
    assert after["pack"] == {"name": "sentiment", "version": "2.0.0"}
    assert after["scores"] != pytest.approx(before["scores"], abs=1e-4)
    assert (packs_dir / "sentiment" / "CURRENT").read_text() == "2.0.0\n"
    written = packs_dir / "sentiment" / "2.0.0"
    assert (written / "pack.safetensors").read_bytes() == (src / "pack.safetensors").read_bytes()
    assert sorted(p.name for p in (packs_dir / "sentiment").iterdir()) == [
        "1.0.0",
        "2.0.0",
        "CURRENT",
    ]
    text = client.get("/metrics").text
    assert metric(text, 'pack_swaps_total{pack="sentiment"}') == 2.0  # start-up + upload


def test_manifest_may_be_a_text_field(client: TestClient, svc_bundle: TinyBundle) -> None:
    src = svc_bundle.uploads / "emotion" / "2.0.0"
    files = {"weights": upload_files(src)["weights"]}
    data = {"manifest": (src / "manifest.json").read_text()}
    r = client.put("/packs/emotion", files=files, data=data, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["pack"]["version"] == "2.0.0"


def test_same_version_again_is_409(client: TestClient, svc_bundle: TinyBundle) -> None:
    files = upload_files(svc_bundle.root / "packs" / "sentiment" / "1.0.0")
    r = client.put("/packs/sentiment", files=files, headers=AUTH)
    assert r.status_code == 409
    assert error_of(r) == {
        "code": "pack_version_conflict",
        "message": "pack sentiment version 1.0.0 already exists; versions are immutable, "
        "bump the manifest's version",
    }


def _assert_unchanged(client: TestClient, packs_dir: Path) -> None:
    versions = {p["name"]: p["version"] for p in client.get("/packs").json()["packs"]}
    assert versions == {"emotion": "1.0.0", "sentiment": "1.0.0"}
    for name in ("sentiment", "emotion"):
        assert sorted(p.name for p in (packs_dir / name).iterdir()) == ["1.0.0"]
    assert client.post("/predict", json={"text": "still fine"}).status_code == 200


def test_corrupt_weights_are_refused_and_the_old_version_stays(
    client: TestClient, svc_bundle: TinyBundle, packs_dir: Path
) -> None:
    src = svc_bundle.uploads / "sentiment" / "2.0.0"
    files = upload_files(src)
    weights = bytearray(files["weights"][1])
    weights[-1] ^= 0xFF
    files["weights"] = ("pack.safetensors", bytes(weights), "application/octet-stream")
    r = client.put("/packs/sentiment", files=files, headers=AUTH)
    assert r.status_code == 422
    err = error_of(r)
    assert err["code"] == "invalid_pack"
    assert err["message"].startswith("pack sentiment: pack sentiment@2.0.0: pack.safetensors ")
    assert "its manifest records" in err["message"]
    _assert_unchanged(client, packs_dir)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"backbone_sha256": "0" * 64}, "was trained for backbone 000000000000"),
        ({"feature_spec_sha256": "1" * 64}, "feature spec 111111111111"),
        ({"tensors": {"bogus": [1]}}, "tensors differ from its manifest"),
        ({"labels": ["a", "b"]}, "2 labels"),
        ({"task": "ranking"}, "task must be one of"),
        ({"created": "yesterday"}, "created must be an ISO 8601 time"),
    ],
)
def test_manifest_that_does_not_fit_is_refused(
    client: TestClient,
    svc_bundle: TinyBundle,
    packs_dir: Path,
    changes: dict[str, Any],
    fragment: str,
) -> None:
    src = svc_bundle.uploads / "sentiment" / "2.0.0"
    files = upload_files(src)
    files["manifest"] = ("manifest.json", edited_manifest(src, **changes), "application/json")
    r = client.put("/packs/sentiment", files=files, headers=AUTH)
    assert r.status_code == 422, r.text
    err = error_of(r)
    assert err["code"] == "invalid_pack"
    assert fragment in err["message"]
    _assert_unchanged(client, packs_dir)


def test_manifest_for_another_name_is_refused(
    client: TestClient, svc_bundle: TinyBundle, packs_dir: Path
) -> None:
    files = upload_files(svc_bundle.uploads / "emotion" / "2.0.0")
    r = client.put("/packs/sentiment", files=files, headers=AUTH)
    assert r.status_code == 422
    assert error_of(r) == {
        "code": "invalid_pack",
        "message": "the manifest names the pack 'emotion' but it was uploaded to "
        "/packs/sentiment; upload it to /packs/emotion or fix the manifest",
    }
    _assert_unchanged(client, packs_dir)


def test_missing_parts_are_422(client: TestClient, svc_bundle: TinyBundle) -> None:
    r = client.put("/packs/emotion", files={"x": (None, "1")}, headers=AUTH)
    assert r.status_code == 422
    assert error_of(r) == {
        "code": "validation_error",
        "message": "manifest: missing; send multipart fields 'manifest' (manifest.json) and "
        "'weights' (pack.safetensors)",
    }
    files = {"manifest": upload_files(svc_bundle.uploads / "emotion" / "2.0.0")["manifest"]}
    r = client.put("/packs/emotion", files=files, headers=AUTH)
    assert r.status_code == 422
    assert error_of(r)["message"].startswith("weights: missing")


def test_manifest_that_is_not_json_is_422(client: TestClient, svc_bundle: TinyBundle) -> None:
    files = upload_files(svc_bundle.uploads / "emotion" / "2.0.0")
    files["manifest"] = ("manifest.json", b"{oops", "application/json")
    r = client.put("/packs/emotion", files=files, headers=AUTH)
    assert r.status_code == 422
    err = error_of(r)
    assert err["code"] == "invalid_pack"
    assert err["message"].startswith("manifest: not valid JSON")


def test_upload_must_be_multipart(client: TestClient) -> None:
    r = client.put("/packs/emotion", json={"manifest": {}}, headers=AUTH)
    assert r.status_code == 415
    assert error_of(r) == {
        "code": "unsupported_media_type",
        "message": "content type 'application/json': send multipart/form-data with "
        "'manifest' and 'weights'",
    }


@pytest.mark.parametrize("name", ["Emotion", "emo.tion", "-x", "a" * 65])
def test_bad_names_are_422_and_nothing_is_written(
    client: TestClient, svc_bundle: TinyBundle, packs_dir: Path, name: str
) -> None:
    files = upload_files(svc_bundle.uploads / "emotion" / "2.0.0")
    r = client.put(f"/packs/{name}", files=files, headers=AUTH)
    assert r.status_code == 422
    assert error_of(r)["code"] == "invalid_pack_name"
    r = client.delete(f"/packs/{name}", headers=AUTH)
    assert r.status_code == 422
    assert sorted(p.name for p in packs_dir.iterdir()) == ["emotion", "sentiment"]


def test_path_traversal_never_reaches_the_disk(
    client: TestClient, svc_bundle: TinyBundle, packs_dir: Path
) -> None:
    files = upload_files(svc_bundle.uploads / "emotion" / "2.0.0")
    for path in ("/packs/..%2F..%2Fetc", "/packs/../../etc", "/packs/%2e%2e"):
        r = client.put(path, files=files, headers=AUTH)
        assert r.status_code in (404, 405, 422), (path, r.status_code)
        assert error_of(r)["code"] in ("not_found", "method_not_allowed", "invalid_pack_name")
    assert sorted(p.name for p in packs_dir.parent.iterdir()) == ["packs"]
    assert sorted(p.name for p in packs_dir.iterdir()) == ["emotion", "sentiment"]


def test_manifest_with_a_traversal_version_is_refused(
    client: TestClient, svc_bundle: TinyBundle, packs_dir: Path
) -> None:
    src = svc_bundle.uploads / "emotion" / "2.0.0"
    files = upload_files(src)
    files["manifest"] = ("manifest.json", edited_manifest(src, version="../x"), "text/plain")
    r = client.put("/packs/emotion", files=files, headers=AUTH)
    assert r.status_code == 422
    assert error_of(r)["code"] == "invalid_pack_name"
    _assert_unchanged(client, packs_dir)


def test_delete(client: TestClient, packs_dir: Path) -> None:
    r = client.delete("/packs/emotion", headers=AUTH)
    assert r.status_code == 200
    assert r.json() == {"name": "emotion", "removed_version": "1.0.0"}
    assert not (packs_dir / "emotion").exists()
    assert [p["name"] for p in client.get("/packs").json()["packs"]] == ["sentiment"]
    r = client.post("/predict", json={"text": "hi", "pack": "emotion"})
    assert r.status_code == 404
    assert error_of(r) == {
        "code": "unknown_pack",
        "message": "no pack named 'emotion'; loaded packs: sentiment",
    }
    r = client.delete("/packs/emotion", headers=AUTH)
    assert r.status_code == 404
    assert error_of(r)["code"] == "unknown_pack"


def test_the_default_pack_cannot_be_deleted(client: TestClient, packs_dir: Path) -> None:
    r = client.delete("/packs/sentiment", headers=AUTH)
    assert r.status_code == 409
    assert error_of(r) == {
        "code": "default_pack_protected",
        "message": "sentiment is the default pack (MPLMM_DEFAULT_PACK) and cannot be removed; "
        "upload a new version instead",
    }
    assert (packs_dir / "sentiment" / "1.0.0" / "manifest.json").is_file()


def test_a_bad_pack_on_disk_at_start_is_skipped(
    svc_bundle: TinyBundle, svc_extractor: Any, packs_dir: Path
) -> None:
    manifest = packs_dir / "emotion" / "1.0.0" / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["sha256"] = "f" * 64
    manifest.write_text(json.dumps(doc))
    settings = settings_for(svc_bundle, packs_dir)
    with running_app(settings, svc_extractor, svc_bundle.feature_spec_sha256) as c:
        ready = c.get("/readyz").json()
        assert ready["ready"] is True
        assert ready["packs"] == [{"name": "sentiment", "version": "1.0.0"}]
        [rejected] = ready["rejected_packs"]
        assert (rejected["name"], rejected["version"]) == ("emotion", "1.0.0")
        assert "sha256" in rejected["reason"]
        text = c.get("/metrics").text
        assert metric(text, 'pack_load_failures_total{pack="emotion"}') == 1.0


def test_a_corrupt_version_seen_by_the_watcher_is_refused_and_reported(
    svc_bundle: TinyBundle, svc_extractor: Any, packs_dir: Path
) -> None:
    import shutil
    import time

    settings = settings_for(svc_bundle, packs_dir, pack_watch_interval_s=0.1)
    with running_app(settings, svc_extractor, svc_bundle.feature_spec_sha256) as c:
        new = packs_dir / "sentiment" / "2.0.0"
        shutil.copytree(svc_bundle.uploads / "sentiment" / "2.0.0", new)
        weights = new / "pack.safetensors"
        data = bytearray(weights.read_bytes())
        data[-1] ^= 1  # one flipped bit: the manifest's sha256 no longer matches
        weights.write_bytes(bytes(data))
        (packs_dir / "sentiment" / "CURRENT").write_text("2.0.0\n")
        deadline = time.monotonic() + 20
        while not c.get("/readyz").json()["rejected_packs"]:
            assert time.monotonic() < deadline, "the watcher never reported the bad version"
            time.sleep(0.1)
        ready = c.get("/readyz").json()
        assert ready["ready"] is True
        [rejected] = ready["rejected_packs"]
        assert (rejected["name"], rejected["version"]) == ("sentiment", "2.0.0")
        assert {"name": "sentiment", "version": "1.0.0"} in ready["packs"]
        r = c.post("/predict", json={"text": "still the old version"})
        assert r.json()["pack"] == {"name": "sentiment", "version": "1.0.0"}
        text = c.get("/metrics").text
        assert metric(text, 'pack_load_failures_total{pack="sentiment"}') == 1.0


def test_an_upload_over_the_pack_limit_is_413_naming_the_setting(
    svc_bundle: TinyBundle, svc_extractor: Any, packs_dir: Path
) -> None:
    files = upload_files(svc_bundle.uploads / "sentiment" / "2.0.0")
    manifest, weights = len(files["manifest"][1]), len(files["weights"][1])
    assert manifest < weights
    limit = manifest + 1  # the manifest fits, the weights do not
    settings = settings_for(svc_bundle, packs_dir, admin_token=TOKEN, max_pack_bytes=limit)
    with running_app(settings, svc_extractor, svc_bundle.feature_spec_sha256) as c:
        r = c.put("/packs/sentiment", files=files, headers=AUTH)
        assert r.status_code == 413
        assert error_of(r) == {
            "code": "payload_too_large",
            "message": f"weights: {weights} bytes is over the limit of {limit} bytes "
            "(limit set by MPLMM_MAX_PACK_BYTES)",
        }
        versions = {p["name"]: p["version"] for p in c.get("/packs").json()["packs"]}
        assert versions["sentiment"] == "1.0.0"  # nothing swapped in
    assert sorted(p.name for p in (packs_dir / "sentiment").iterdir()) == ["1.0.0"]


@pytest.mark.parametrize("step", ["stage", "set_current"])
def test_a_full_disk_during_an_upload_is_507_and_changes_nothing(
    client: TestClient, packs_dir: Path, svc_bundle: TinyBundle, monkeypatch: Any, step: str
) -> None:
    import errno

    from service.runtime import packdir

    def full(*_: Any, **__: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(packdir.PackDir, step, full)
    files = upload_files(svc_bundle.uploads / "sentiment" / "2.0.0")
    r = client.put("/packs/sentiment", files=files, headers=AUTH)
    assert r.status_code == 507
    err = error_of(r)
    assert err["code"] == "storage_error"
    assert err["message"].startswith(f"cannot write pack sentiment to the packs dir {packs_dir}")
    assert "No space left on device" in err["message"]
    assert err["message"].endswith("the previous version keeps serving")
    versions = {p["name"]: p["version"] for p in client.get("/packs").json()["packs"]}
    assert versions["sentiment"] == "1.0.0"
    # Nothing half-written is left: no new version, no staging dir.
    assert sorted(p.name for p in (packs_dir / "sentiment").iterdir()) == ["1.0.0"]
    assert client.post("/predict", json={"text": "still serving"}).json()["pack"] == {
        "name": "sentiment",
        "version": "1.0.0",
    }
    monkeypatch.undo()  # the disk has room again: the same upload goes through
    r = client.put("/packs/sentiment", files=files, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["pack"]["version"] == "2.0.0"


def test_what_a_killed_upload_left_is_ignored_then_cleaned(
    svc_bundle: TinyBundle, svc_extractor: Any, packs_dir: Path
) -> None:
    # The state a `kill -9` during a PUT leaves: a hidden staging dir with half a file.
    import os
    import time

    old = packs_dir / "sentiment" / ".tmp-2.0.0-dead"
    old.mkdir()
    (old / "pack.safetensors").write_bytes(b"half a pack")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    young = packs_dir / "emotion" / ".tmp-9.9.9-uploading"  # another replica, mid-upload
    young.mkdir()
    settings = settings_for(svc_bundle, packs_dir)
    with running_app(settings, svc_extractor, svc_bundle.feature_spec_sha256) as c:
        ready = c.get("/readyz").json()
        assert ready["ready"] is True
        assert {p["name"]: p["version"] for p in ready["packs"]} == {
            "emotion": "1.0.0",
            "sentiment": "1.0.0",
        }
        assert ready["rejected_packs"] == []
    assert not old.exists()
    assert young.is_dir()
