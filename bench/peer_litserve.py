"""A LitServe peer of `mplmm serve` for text-only requests: the yardstick of bench/service.py.

It serves the same computation as our /predict for `{"text": ...}` (bench/text_path.py:
the service's own text encoder, pack decision, feeds, backbone session and decoding) on
LitServe's own machinery: its HTTP server, its queue to one inference worker process and
its dynamic batching, set like ours (`max_batch_size` and `batch_timeout` from the
service's defaults, MPLMM_MAX_BATCH_SIZE and MPLMM_MAX_WAIT_MS). So the comparison is of
the serving around the model, not of the model.

    .venv/bin/python bench/peer_litserve.py --port 8011 [--bundle bundle] [--packs DIR]
    curl -s localhost:8011/predict -d '{"text": "I loved it"}'   # {"label": ..., "scores": ...}

Answers: 200 with label, scores and score (as /predict's top level); 422 for a missing,
non-string or blank text; 413 past the service's text length limit. `/health` is 200 once
the worker has loaded and warmed up.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Run as a script this folder comes first on sys.path, where `service` would be
# bench/service.py; the repository root must win (also in LitServe's spawned worker,
# which imports this file again).
sys.path[:] = [str(REPO), str(REPO / "bench")] + [
    p for p in sys.path if Path(p or ".").resolve() not in (REPO, REPO / "bench")
]

import litserve as ls  # noqa: E402
from fastapi import HTTPException  # noqa: E402
from text_path import MAX_BATCH, MAX_WAIT_S, TextPath, UnusableTextError  # noqa: E402

from service.errors import MediaTooLargeError  # noqa: E402

REQUEST_TIMEOUT_S = 30.0  # the service's MPLMM_REQUEST_TIMEOUT_S default


class MplmmTextAPI(ls.LitAPI):
    """One text per request; `predict` gets the batch LitServe collected. Module-level, as
    LitServe pickles it into its spawned worker, where `setup` loads the models."""

    def __init__(self, bundle: Path, packs: Path | None, max_batch: int, max_wait_s: float):
        super().__init__(max_batch_size=max_batch, batch_timeout=max_wait_s)
        self.bundle, self.packs = bundle, packs

    def setup(self, device: str) -> None:
        self.path = TextPath.load(self.bundle, self.packs)

    # `request` and encode_response's return are left unannotated: LitServe builds the
    # endpoint from these annotations, and none means the plain JSON body in and out.
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        try:
            return self.path.usable(request.get("text"))
        except UnusableTextError as exc:
            raise HTTPException(422, str(exc)) from exc
        except MediaTooLargeError as exc:
            raise HTTPException(413, str(exc)) from exc

    def batch(self, inputs: list[str]) -> list[str]:
        return list(inputs)

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        return self.path.answers(texts)

    def unbatch(self, output: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return output

    def encode_response(self, output):  # type: ignore[no-untyped-def]
        return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--bundle", type=Path, default=REPO / "bundle")
    parser.add_argument("--packs", type=Path, default=None, help="default: <bundle>/packs")
    parser.add_argument("--max-batch", type=int, default=MAX_BATCH)
    parser.add_argument("--max-wait-ms", type=float, default=MAX_WAIT_S * 1e3)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    packs = args.packs.resolve() if args.packs is not None else None
    api = MplmmTextAPI(args.bundle.resolve(), packs, args.max_batch, args.max_wait_ms / 1e3)
    # One inference worker (as our one process), one HTTP server process; no client.py.
    server = ls.LitServer(
        api, accelerator="cpu", devices=1, workers_per_device=1, timeout=REQUEST_TIMEOUT_S
    )
    server.run(
        host=args.host,
        port=args.port,
        num_api_servers=1,
        log_level=args.log_level,
        generate_client_file=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
