"""`mplmm serve`: the HTTP API under uvicorn, configured by MPLMM_* settings.

On SIGTERM/SIGINT the server first marks itself draining (readiness 503, new requests
503 shutting_down), then uvicorn stops accepting connections and waits up to
MPLMM_DRAIN_TIMEOUT_S for requests in flight.
"""

from __future__ import annotations

import argparse
import logging
import math
from types import FrameType

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="bind address (default: MPLMM_HOST)")
    parser.add_argument("--port", type=int, default=None, help="port (default: MPLMM_PORT)")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from service.http.app import create_app
    from service.logs import configure_logging
    from service.runtime.runtime import ServiceRuntime
    from service.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    runtime: ServiceRuntime = app.state.runtime

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            runtime.begin_drain()
            super().handle_exit(sig, frame)
            # uvicorn re-raises the signal once it has shut down, so the process would die
            # by it (exit 143); a drained shutdown is a clean one: exit status 0.
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

    config = uvicorn.Config(
        app,
        host=args.host or settings.host,
        port=args.port if args.port is not None else settings.port,
        log_config=None,  # keep our structured logging
        # Connections in flight get this long after SIGTERM; 0 cancels them at once.
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s),
        access_log=False,  # the request middleware logs each request with its ID
        proxy_headers=True,
    )
    log.info("serving on http://%s:%s", config.host, config.port)
    DrainingServer(config).run()
    return 0
