"""`mplmm predict`: the /predict pipeline without a server; prints the same JSON."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text", default=None, help="utterance text")
    parser.add_argument("--audio", type=Path, default=None, help="audio file")
    parser.add_argument("--video", type=Path, default=None, help="video file")
    parser.add_argument("--pack", default=None, help="pack name (default: MPLMM_DEFAULT_PACK)")


def _error(status: int, code: str, message: str) -> int:
    sys.stdout.write(json.dumps({"error": {"code": code, "message": message}}) + "\n")
    return 2 if status < 500 else 1


def run(args: argparse.Namespace) -> int:
    import asyncio

    from service.errors import ServiceError
    from service.features.errors import MediaError
    from service.http.schemas import prediction_response
    from service.metrics import ServiceMetrics
    from service.runtime.packdir import check_pack_name
    from service.runtime.pipeline import PredictRequest
    from service.runtime.runtime import ServiceRuntime
    from service.settings import get_settings

    settings = get_settings().model_copy(update={"pack_watch_interval_s": 0.0})

    async def once() -> int:
        runtime = ServiceRuntime(settings, ServiceMetrics())
        await runtime.load()
        try:
            for path in (args.audio, args.video):
                if path is not None and not path.is_file():
                    return _error(422, "invalid_media", f"{path}: no such file")
            req = PredictRequest(
                text=args.text,
                audio=args.audio.read_bytes() if args.audio else None,
                video=args.video.read_bytes() if args.video else None,
                pack=None if args.pack is None else check_pack_name(args.pack),
            )
            pred = await runtime.predict(req)
        except ServiceError as exc:
            return _error(exc.http_status, exc.code.value, exc.message)
        except MediaError as exc:
            return _error(exc.http_status, exc.code, f"{exc.field}: {exc.message}")
        finally:
            await runtime.stop()
        body = prediction_response(pred, uuid.uuid4().hex)
        sys.stdout.write(body.model_dump_json(indent=2) + "\n")
        return 0

    return asyncio.run(once())
