"""The Open Inference Protocol against a real `mplmm serve`, through NVIDIA's own client
(PyPI `tritonclient[http]`): live, ready, metadata and infer, with scores equal to
`/predict`'s for the same features (issue 15, item 1); and the protocol's errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from service_helpers import EMOTION_LABELS, TinyBundle, fresh_packs, served, speech_wav

tc = pytest.importorskip("tritonclient.http", reason="the dev extra installs tritonclient[http]")


@pytest.fixture(scope="module")
def server(svc_bundle: TinyBundle, tmp_path_factory: pytest.TempPathFactory) -> Any:
    packs = fresh_packs(svc_bundle, tmp_path_factory.mktemp("oip") / "packs")
    with served(svc_bundle, packs, MPLMM_ASR="off") as url:
        yield url.removeprefix("http://")  # tritonclient takes host:port


def _inputs(arrays: dict[str, np.ndarray], binary: bool) -> list[Any]:
    out = []
    for name, array in arrays.items():
        datatype = "INT64" if name == "missing_type" else "FP32"
        tensor = tc.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        out.append(tensor)
    return out


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_gets_predicts_scores_for_the_same_features(
    server: str, svc_extractor: Any, tmp_path: Path, binary: bool
) -> None:
    client = tc.InferenceServerClient(server)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("emotion")
    assert client.is_model_ready("emotion", "1.0.0")
    assert not client.is_model_ready("emotion", "9.9.9")
    meta = client.get_model_metadata("emotion")
    assert meta["versions"] == ["1.0.0"]
    assert [i["name"] for i in meta["inputs"]] == ["text", "audio", "video", "missing_type"]
    assert meta["outputs"][0] == {"name": "scores", "datatype": "FP32", "shape": [-1, 7]}
    assert meta["parameters"]["labels"] == EMOTION_LABELS

    # The features /predict computes for two requests, and its answers.
    wav = speech_wav(2.0)
    requests = [{"text": "What a lovely day"}, {"text": "I am furious", "audio": wav}]
    rows = [svc_extractor.extract(**r) for r in requests]
    present = np.concatenate([fb.present for fb in rows])  # (2, 3): absent ones are zeros
    arrays = {
        m: np.concatenate([getattr(fb, m) for fb in rows]) * present[:, i, None, None]
        for i, m in enumerate(("text", "audio", "video"))
    }
    types = np.array([4, 3], dtype=np.int64)  # text only; text and audio
    result = client.infer("emotion", _inputs({**arrays, "missing_type": types}, binary),
                          request_id="r-1")  # fmt: skip
    scores, labels = result.as_numpy("scores"), result.as_numpy("label")
    assert scores.shape == (2, 7)
    assert result.get_response()["id"] == "r-1"
    base = f"http://{server}"
    for i, req in enumerate(requests):
        files = {"audio": ("a.wav", req["audio"], "audio/wav")} if "audio" in req else None
        body = httpx.post(f"{base}/predict", data={"text": req["text"], "pack": "emotion"},
                          files=files, timeout=60).json()  # fmt: skip
        assert body["missing_type"]["id"] == types[i]
        np.testing.assert_allclose(scores[i], [body["scores"][k] for k in EMOTION_LABELS],
                                   atol=1e-5)  # fmt: skip
        label = labels[i].decode() if isinstance(labels[i], bytes) else str(labels[i])
        assert label == body["label"]
    # Video the emotion pack never read is absent, as /predict treats it: "all three"
    # with any video answers as text and audio.
    video = np.random.default_rng(0).normal(size=arrays["video"].shape).astype(np.float32)
    full_types = np.array([0, 0], dtype=np.int64)
    full = client.infer(
        "emotion", _inputs({**arrays, "video": video, "missing_type": full_types}, binary)
    )
    np.testing.assert_allclose(full.as_numpy("scores")[1], scores[1], atol=1e-5)


def test_protocol_errors_are_its_error_bodies(server: str) -> None:
    base = f"http://{server}/v2"
    r = httpx.get(f"{base}/models/sarcasm")
    assert (r.status_code, set(r.json())) == (404, {"error"})
    assert "sarcasm" in r.json()["error"]
    r = httpx.get(f"{base}/models/emotion/versions/9.9.9/ready")
    assert r.status_code == 404
    for body, says in (
        (b"not json", "not JSON"),
        (b'{"inputs": []}', "missing"),
        (b'{"inputs": [{"name": "text", "datatype": "FP16", "shape": [1]}]}', "FP16"),
    ):
        r = httpx.post(f"{base}/models/emotion/infer", content=body)
        assert r.status_code == 400, r.text
        assert says in r.json()["error"]
    meta = httpx.get(f"{base}/models/emotion").json()
    inputs = []
    for spec in meta["inputs"]:
        shape = [1, *spec["shape"][1:]]
        inputs.append({"name": spec["name"], "datatype": spec["datatype"], "shape": shape,
                       "data": [9] * int(np.prod(shape))})  # fmt: skip
    r = httpx.post(f"{base}/models/emotion/infer", json={"inputs": inputs})
    assert r.status_code == 400
    assert "missing_type must be 0 to 6" in r.json()["error"]
    inputs[-1]["data"] = [0]
    inputs[0]["shape"], inputs[0]["data"] = [1, 5, 384], [0.0] * 5 * 384
    r = httpx.post(f"{base}/models/emotion/infer", json={"inputs": inputs})
    assert r.status_code == 400
    assert "input text must be FP32 [1, 32, 384]" in r.json()["error"]
    assert httpx.get(f"{base}/health/live").json() == {"live": True}
