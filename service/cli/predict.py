"""`mplmm predict`: the /predict request path without a server; prints the same JSON."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import uuid
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text", default=None, help="utterance text")
    parser.add_argument("--audio", type=Path, default=None, help="audio file")
    parser.add_argument("--video", type=Path, default=None, help="video file")
    parser.add_argument("--pack", default=None, help="pack name (default: MPLMM_DEFAULT_PACK)")
    parser.add_argument(
        "--transcribe",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="without --text, use (or never use) the speech's transcript as the text "
        "(default: as MPLMM_ASR says)",
    )
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="also one answer per speech segment or video window (as timeline=true); "
        "media up to MPLMM_JOB_MAX_SECONDS, as a job",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="PNG",
        help="with --timeline: draw the scores over time to this PNG (needs matplotlib)",
    )


def run(args: argparse.Namespace) -> int:
    import asyncio

    if args.plot is not None and not args.timeline:
        sys.stderr.write("mplmm predict: --plot needs --timeline\n")
        return 2
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        # Said now, not after a timeline of up to half an hour of media.
        sys.stderr.write("mplmm predict: --plot needs matplotlib: pip install 'mplmm[plot]'\n")
        return 2

    from service.errors import InvalidMediaError, ServiceError
    from service.features.types import Sample
    from service.http.schemas import prediction_response
    from service.metrics import ServiceMetrics
    from service.runtime.packdir import check_pack_name
    from service.runtime.runtime import ServiceRuntime
    from service.runtime.types import PredictRequest
    from service.settings import get_settings

    settings = get_settings().model_copy(update={"pack_watch_interval_s": 0.0})

    async def parse() -> PredictRequest:
        for field in ("audio", "video"):
            path = getattr(args, field)
            if path is not None and not path.is_file():
                raise InvalidMediaError(field, f"{path}: no such file")
        sample = Sample(
            text=args.text,
            audio=args.audio.read_bytes() if args.audio else None,
            video=args.video.read_bytes() if args.video else None,
        )
        pack = None if args.pack is None else check_pack_name(args.pack)
        return PredictRequest(sample, pack, transcribe=args.transcribe, timeline=args.timeline)

    async def once() -> int:
        runtime = ServiceRuntime(settings, ServiceMetrics())
        await runtime.load()
        try:
            if args.timeline:  # local media may be long: a job's limits, no request timeout
                pred = await runtime.run_job(await parse())
            else:
                pred = await runtime.predict(parse)  # alone in flight: always admitted
        except ServiceError as exc:
            error = {"error": {"code": exc.code.value, "message": exc.message}}
            sys.stdout.write(json.dumps(error) + "\n")
            return 2 if exc.http_status < 500 else 1
        finally:
            await runtime.stop()
        body = prediction_response(pred, uuid.uuid4().hex)
        sys.stdout.write(body.model_dump_json(indent=2) + "\n")
        if args.plot is not None and body.timeline is not None:
            from service.cli.plot import plot_timeline

            plot_timeline(body, args.plot)
        return 0

    return asyncio.run(once())
