"""The service runtime: loads the bundle in the background, reports readiness, watches
the shared packs dir, drains on shutdown. The HTTP app and `mplmm predict` both use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from model.feeds import warmup_feeds
from service.errors import NotReadyError, ServiceError, ShuttingDownError
from service.features.timeline import Progress, TimelineSpec
from service.metrics import ServiceMetrics
from service.runtime.packdir import PackDir
from service.runtime.packs import Backbone, LoadedPack, PackLoader
from service.runtime.pipeline import Extractor, InferencePipeline, Parse, TimelineOptions
from service.runtime.registry import PackRegistry
from service.runtime.session import BackboneSession
from service.runtime.types import Prediction, PredictRequest
from service.settings import AsrMode, ExecutionProvider, Settings

log = logging.getLogger(__name__)

# A hidden staging dir older than this was left by a writer that died (kill -9 during a
# PUT); a younger one may be another replica's upload in progress.
STALE_WRITE_S = 3600.0


class Phase(StrEnum):
    STARTING = "starting"
    LOADING_BACKBONE = "loading backbone"
    LOADING_ENCODERS = "loading encoders"
    LOADING_PACKS = "loading packs"
    WARMING_UP = "warming up"
    READY = "ready"
    FAILED = "failed"
    DRAINING = "draining"


@dataclass(frozen=True)
class LoadedExtractor:
    extractor: Extractor
    feature_spec_sha256: str

    @property
    def asr_device(self) -> str | None:
        """Where transcription runs (cpu, cuda); None when the extractor has no recogniser."""
        device = getattr(getattr(self.extractor, "asr", None), "device", None)
        return device if isinstance(device, str) else None

    @property
    def audio_encoder_device(self) -> str | None:
        """Where the audio features' speech encoder runs (cpu, cuda)."""
        audio = getattr(self.extractor, "audio", None)
        device = getattr(getattr(audio, "encoder", None), "device", None)
        return device if isinstance(device, str) else None


ExtractorFactory = Callable[[Settings], LoadedExtractor]


def default_extractor_factory(settings: Settings) -> LoadedExtractor:
    """The real feature extractor over `<bundle>/encoders`, warmed up."""
    from service.features.extractor import (  # heavy: cv2, ORT, CTranslate2
        AsrOptions,
        FeatureExtractor,
    )

    s = settings
    device = {ExecutionProvider.CPU: "cpu", ExecutionProvider.CUDA: "cuda"}.get(
        s.execution_provider, "auto"
    )
    asr = AsrOptions(
        enabled=s.asr is not AsrMode.OFF,
        threads=s.asr_threads,
        concurrency=s.asr_concurrency,
        max_seconds=s.asr_max_seconds,
        device=device,
    )
    extractor = FeatureExtractor(settings.encoders_dir, settings.limits, asr=asr)
    extractor.warmup()
    return LoadedExtractor(extractor, extractor.spec.sha256())


@dataclass(frozen=True)
class Readiness:
    ready: bool
    phase: Phase
    reason: str | None
    providers: list[str]
    packs: list[LoadedPack]
    backbone_sha256: str | None
    feature_spec_sha256: str | None
    rejected: list[tuple[str, str, str]]  # (pack, version, reason) refused on disk
    asr_device: str | None = None
    audio_encoder_device: str | None = None


class ServiceRuntime:
    """Owns the session, extractor, registry and pipeline of one service instance."""

    def __init__(
        self,
        settings: Settings,
        metrics: ServiceMetrics,
        *,
        extractor_factory: ExtractorFactory = default_extractor_factory,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._extractor_factory = extractor_factory
        self.phase = Phase.STARTING
        self.failure: str | None = None
        self.session: BackboneSession | None = None
        self.backbone: Backbone | None = None
        self.registry: PackRegistry | None = None
        self.pipeline: InferencePipeline | None = None
        self.feature_spec_sha256: str | None = None
        self.asr_device: str | None = None
        self.audio_encoder_device: str | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------- lifecycle

    def _load_sync(self) -> tuple[BackboneSession, Backbone, LoadedExtractor, PackRegistry]:
        s = self.settings
        self.phase = Phase.LOADING_BACKBONE
        backbone = Backbone.load(s.bundle_dir)
        session = BackboneSession(
            backbone.onnx_path,
            provider=s.execution_provider,
            intra_op_threads=s.intra_op_threads,
        )
        self.session, self.backbone = session, backbone
        self.phase = Phase.LOADING_ENCODERS
        loaded = self._extractor_factory(s)
        want = backbone.feature_spec_sha256
        if want is None:
            log.warning("backbone.json records no feature spec; packs are checked against ours")
        elif loaded.feature_spec_sha256 != want:
            raise RuntimeError(
                f"the encoders' feature spec ({loaded.feature_spec_sha256[:12]}) differs from "
                f"the one the backbone was trained on ({want[:12]}): the bundle was trained "
                "on other features (another release's extractors, or other encoders). Serve "
                "it with the release it was trained with, rebuild the encoders it was trained "
                "on (`mplmm build-encoders`), or train a bundle on these features "
                "(`mplmm train bundle`)"
            )
        self.feature_spec_sha256 = loaded.feature_spec_sha256
        self.asr_device = loaded.asr_device
        self.audio_encoder_device = loaded.audio_encoder_device
        self.phase = Phase.LOADING_PACKS
        packs_dir = s.resolved_packs_dir
        packs_dir.mkdir(parents=True, exist_ok=True)
        for path in PackDir(packs_dir).remove_stale(STALE_WRITE_S):
            log.warning("removed what an interrupted pack write left", extra={"path": str(path)})
        seeded = PackDir(packs_dir).seed_from(s.bundled_packs_dir)
        if seeded:
            names = [f"{loc.name}={loc.version}" for loc in seeded]
            log.info(
                "copied the bundle's pack versions the packs dir lacked", extra={"packs": names}
            )

        def warm(pack: LoadedPack) -> None:
            feeds = warmup_feeds(backbone.lengths, backbone.dims, pack.arrays)
            out = session.run(feeds)  # (7, K): every missing type
            pack.check_output(out)

        registry = PackRegistry(
            packs_dir,
            PackLoader(backbone, loaded.feature_spec_sha256),
            warm,
            default_pack=s.default_pack,
            metrics=self.metrics,
        )
        self.phase = Phase.WARMING_UP
        failures = registry.load_all()
        for line in failures:
            log.error("pack not loaded: %s", line)
        if len(registry) == 0:
            detail = "; ".join(failures) if failures else f"no packs in {packs_dir}"
            raise RuntimeError(f"no usable pack: {detail}")
        return session, backbone, loaded, registry

    async def load(self) -> None:
        """Load everything off the event loop; on failure stay up, not ready, with a reason."""
        try:
            session, _backbone, loaded, registry = await asyncio.to_thread(self._load_sync)
        except Exception as exc:  # reported by /readyz and the log; the process stays up
            self.phase = Phase.FAILED
            self.failure = f"{type(exc).__name__}: {exc}"
            log.exception("start-up failed; /readyz will answer 503")
            return
        s = self.settings
        self.registry = registry
        self.pipeline = InferencePipeline(
            session=session,
            registry=registry,
            extractor=loaded.extractor,
            metrics=self.metrics,
            max_batch=s.max_batch_size,
            max_wait_s=s.max_wait_ms / 1e3,
            mix_packs=s.mix_packs,
            max_queue=s.max_queue,
            max_inflight_bytes=s.max_inflight_bytes,
            request_timeout_s=s.request_timeout_s,
            extract_workers=s.extract_workers,
            asr_mode=s.asr,
            timeline=TimelineOptions(
                spec=TimelineSpec(
                    min_segment_s=s.timeline_min_segment_s,
                    max_segment_s=s.timeline_max_segment_s,
                    merge_gap_s=s.timeline_merge_gap_s,
                    window_s=s.timeline_window_s,
                ),
                limits=s.timeline_limits,
                max_segments=s.timeline_max_segments,
            ),
        )
        self.pipeline.start()
        if s.pack_watch_interval_s > 0:
            self._tasks.append(asyncio.create_task(self._watch(), name="mplmm-pack-watch"))
        if self.phase is not Phase.DRAINING:
            self.phase = Phase.READY
        log.info(
            "ready",
            extra={
                "execution_provider": session.provider,
                "packs": [f"{p.name}={p.version}" for p in registry.all()],
            },
        )

    def start(self) -> None:
        """Start loading in the background (so /healthz answers while the bundle loads)."""
        self._tasks.append(asyncio.create_task(self.load(), name="mplmm-load"))

    async def _watch(self) -> None:
        assert self.registry is not None
        interval = self.settings.pack_watch_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                changes = await asyncio.to_thread(self.registry.sync)
            except OSError as exc:  # a flaky shared volume must not kill the watcher
                log.warning("packs dir poll failed: %s", exc)
                continue
            if changes:
                log.info("packs dir changed", extra={"changes": changes})

    def begin_drain(self) -> None:
        """SIGTERM: readiness goes 503 at once and no new request is admitted."""
        if self.phase is not Phase.DRAINING:
            log.info("draining: no new requests admitted")
        self.phase = Phase.DRAINING
        if self.pipeline is not None:
            self.pipeline.admission.stop()

    async def stop(self) -> None:
        self.begin_drain()
        if self.pipeline is not None:
            await self.pipeline.close(self.settings.drain_timeout_s)
        log.info("drained; shutting down")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    # ------------------------------------------------------------- queries

    def readiness(self) -> Readiness:
        ready = self.phase is Phase.READY
        if ready:
            reason = None
        elif self.phase is Phase.FAILED:
            reason = f"start-up failed: {self.failure}"
        elif self.phase is Phase.DRAINING:
            reason = "draining: the server is shutting down"
        else:
            reason = f"loading: {self.phase.value}"
        return Readiness(
            ready=ready,
            phase=self.phase,
            reason=reason,
            providers=list(self.session.providers) if self.session else [],
            packs=self.registry.all() if self.registry else [],
            backbone_sha256=self.backbone.sha256 if self.backbone else None,
            feature_spec_sha256=self.feature_spec_sha256,
            rejected=self.registry.rejected() if self.registry else [],
            asr_device=self.asr_device,
            audio_encoder_device=self.audio_encoder_device,
        )

    def ready_pipeline(self) -> InferencePipeline:
        if self.phase is Phase.READY and self.pipeline is not None:
            return self.pipeline
        if self.phase is Phase.DRAINING:
            raise ShuttingDownError()
        raise NotReadyError(f"not ready: {self.readiness().reason}")

    def ready_registry(self) -> PackRegistry:
        if self.registry is not None and self.phase in (Phase.READY, Phase.DRAINING):
            return self.registry
        raise NotReadyError(f"not ready: {self.readiness().reason}")

    async def predict(self, parse: Parse, nbytes: int = 0) -> Prediction:
        """The request path (`InferencePipeline.predict`) once ready; 503 before."""
        try:
            pipeline = self.ready_pipeline()
        except ServiceError as exc:
            self.metrics.count_request("unknown", "none", exc.http_status)
            raise
        return await pipeline.predict(parse, nbytes)

    async def run_job(self, req: PredictRequest, progress: Progress | None = None) -> Prediction:
        """A job's timeline (`InferencePipeline.run_job`) under the jobs' limits."""
        return await self.ready_pipeline().run_job(req, self.settings.job_limits, progress)
