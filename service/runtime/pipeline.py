"""One request path: admit -> extract (thread pool) -> apply the pack -> batch -> ORT ->
unbatch -> Prediction. The HTTP route and `mplmm predict` both call `predict()`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from model.missing import MODALITIES, MissingType, Modality, NoModalityError
from service.errors import (
    NoUsableModalityError,
    QueueFullError,
    RequestTimeoutError,
    ShuttingDownError,
)
from service.features.errors import MediaError
from service.features.extractor import Sample as ExtractSample
from service.features.types import FeatureBatch
from service.metrics import ServiceMetrics, Stage
from service.runtime.batcher import BatchResult, DynamicBatcher
from service.runtime.packs import LoadedPack, TaskKind
from service.runtime.registry import PackRegistry
from service.runtime.session import BackboneSession

log = logging.getLogger(__name__)

Media = bytes | Path


class DropReason(StrEnum):
    """Reasons the service itself adds to the extractor's (not_sent, silent, no_face...)."""

    NOT_TRAINED_FOR_PACK = "not_trained_for_pack"


class Extractor(Protocol):
    """What the pipeline needs from `service.features.extractor.FeatureExtractor`."""

    def extract(
        self, text: str | None = None, audio: Media | None = None, video: Media | None = None
    ) -> FeatureBatch: ...

    def extract_many(self, samples: Sequence[ExtractSample]) -> FeatureBatch: ...


class _TextGroup(Enum):
    """The one group of the text-extraction batcher (texts from any pack share a call)."""

    TEXT = "text"


@dataclass(frozen=True)
class PredictRequest:
    text: str | None = None
    audio: Media | None = None
    video: Media | None = None
    pack: str | None = None


@dataclass(frozen=True)
class Sample:
    """One row of a backbone call: fixed-length features and the missing type."""

    text: np.ndarray  # (Lt, Dt)
    audio: np.ndarray  # (La, Da)
    video: np.ndarray  # (Lv, Dv)
    missing_type: int


@dataclass(frozen=True)
class ModalityOutcome:
    present: bool
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Prediction:
    label: str
    scores: dict[str, float] | None
    score: float | None
    pack_name: str
    pack_version: str
    missing_type: MissingType
    modalities: dict[Modality, ModalityOutcome]
    timings_ms: dict[str, float]
    batch_size: int


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=-1, keepdims=True), dtype=np.float64)


def build_feeds(pack: LoadedPack, samples: Sequence[Sample]) -> dict[str, np.ndarray]:
    """The backbone's inputs for a batch: stacked features, types, the pack's tensors."""
    feeds: dict[str, np.ndarray] = {
        "text": np.stack([s.text for s in samples]).astype(np.float32, copy=False),  # (B,Lt,Dt)
        "audio": np.stack([s.audio for s in samples]).astype(np.float32, copy=False),
        "video": np.stack([s.video for s in samples]).astype(np.float32, copy=False),
        "missing_type": np.array([s.missing_type for s in samples], dtype=np.int64),  # (B,)
    }
    feeds.update(pack.arrays)
    return feeds


class InferencePipeline:
    """The request path. Owns the extraction pool and the batcher; the registry, the
    session and the extractor are built (and warmed) by the runtime."""

    def __init__(
        self,
        *,
        session: BackboneSession,
        registry: PackRegistry,
        extractor: Extractor,
        metrics: ServiceMetrics,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        request_timeout_s: float,
        extract_workers: int,
    ) -> None:
        self.session = session
        self.registry = registry
        self.extractor = extractor
        self.metrics = metrics
        self.max_queue = max_queue
        self.request_timeout_s = request_timeout_s
        self._extract_pool = ThreadPoolExecutor(
            max_workers=extract_workers, thread_name_prefix="mplmm-extract"
        )
        self.batcher: DynamicBatcher[LoadedPack, Sample, np.ndarray] = DynamicBatcher(
            self._run_batch,
            max_batch=max_batch,
            max_wait_s=max_wait_s,
            on_batch=metrics.batch_size.observe,
            nothing_else_coming=lambda: self._before_ort == 0,
            name="ort",
        )
        # Text-only requests share one text-encoder call: MiniLM per utterance is about
        # half as costly at batch 16+ as alone (DESIGN.md section 10).
        self.text_batcher: DynamicBatcher[_TextGroup, str, FeatureBatch] = DynamicBatcher(
            self._extract_texts, max_batch=max_batch, max_wait_s=max_wait_s, name="text"
        )
        self.in_flight = 0
        self._before_ort = 0  # admitted requests not yet queued for the backbone
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        self.batcher.start()
        self.text_batcher.start()

    def _run_batch(self, pack: LoadedPack, samples: Sequence[Sample]) -> list[np.ndarray]:
        return list(self.session.run(build_feeds(pack, samples)))  # B rows of (K,)

    def _extract_texts(
        self, _: _TextGroup, texts: Sequence[str]
    ) -> list[FeatureBatch | BaseException]:
        try:
            fb = self.extractor.extract_many([ExtractSample(text=t) for t in texts])
        except MediaError:
            # One bad text (e.g. over the limit) must not fail the others: redo one by one.
            return [self._extract_one_text(t) for t in texts]
        return [FeatureBatch.stack([fb.results[i]], [fb.timings_ms[i]]) for i in range(len(fb))]

    def _extract_one_text(self, text: str) -> FeatureBatch | BaseException:
        try:
            return self.extractor.extract(text=text)
        except MediaError as exc:
            return exc

    # -------------------------------------------------------------- admission

    def _admit(self) -> None:
        if self._closing:
            raise ShuttingDownError()
        if self.in_flight >= self.max_queue:
            raise QueueFullError(
                f"{self.in_flight} requests are already queued (MPLMM_MAX_QUEUE="
                f"{self.max_queue}); retry after the Retry-After delay"
            )
        self.in_flight += 1
        self._before_ort += 1
        self._idle.clear()
        self.metrics.queue_depth.set(self.in_flight)

    def _release(self) -> None:
        self.in_flight -= 1
        self.metrics.queue_depth.set(self.in_flight)
        if self.in_flight == 0:
            self._idle.set()

    def stop_admitting(self) -> None:
        self._closing = True

    async def drain(self, timeout_s: float) -> bool:
        """Stop admitting; wait for admitted requests. True when all finished in time."""
        self._closing = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            log.warning("drain timed out with %d requests in flight", self.in_flight)
            return False
        return True

    async def close(self, timeout_s: float) -> None:
        await self.drain(timeout_s)
        await self.batcher.close(0.0)
        await self.text_batcher.close(0.0)
        self._extract_pool.shutdown(wait=False, cancel_futures=True)

    # -------------------------------------------------------------- predict

    async def predict(self, req: PredictRequest) -> Prediction:
        """Raises ServiceError or MediaError subclasses for everything a client can fix."""
        start = time.perf_counter()
        if self._closing:
            raise ShuttingDownError()
        sent = {Modality.TEXT: req.text, Modality.AUDIO: req.audio, Modality.VIDEO: req.video}
        if all(v is None for v in sent.values()):
            raise NoUsableModalityError(
                "no modality sent: send at least one of text, audio or video"
            )
        pack = self.registry.get(req.pack)  # pinned: a later swap does not affect us
        self._admit()
        try:
            async with asyncio.timeout(self.request_timeout_s):
                return await self._predict_admitted(req, pack, start)
        except TimeoutError as exc:
            raise RequestTimeoutError(
                f"the request took longer than MPLMM_REQUEST_TIMEOUT_S="
                f"{self.request_timeout_s:g} s; send shorter media or retry later"
            ) from exc
        finally:
            self._release()

    def _extract_args(self, req: PredictRequest, pack: LoadedPack) -> dict[str, Any]:
        trained = pack.modalities
        args: dict[str, Any] = {}
        if req.text is not None and Modality.TEXT in trained:
            args["text"] = req.text
        if req.audio is not None and Modality.AUDIO in trained:
            args["audio"] = req.audio
        # A video is decoded when the pack reads video, or for its audio track when the
        # pack reads audio and no separate audio was sent.
        wants_track = Modality.AUDIO in trained and req.audio is None
        if req.video is not None and (Modality.VIDEO in trained or wants_track):
            args["video"] = req.video
        return args

    async def _predict_admitted(
        self, req: PredictRequest, pack: LoadedPack, start: float
    ) -> Prediction:
        queued_for_ort = False
        try:
            timings: dict[str, float] = {}
            args = self._extract_args(req, pack)
            t = time.perf_counter()
            fb: FeatureBatch | None = None
            if list(args) == ["text"]:
                fb = (await self.text_batcher.submit(_TextGroup.TEXT, args["text"])).output
            elif args:
                loop = asyncio.get_running_loop()
                fb = await loop.run_in_executor(
                    self._extract_pool, partial(self.extractor.extract, **args)
                )
            timings[Stage.EXTRACT.value] = (time.perf_counter() - t) * 1e3
            if fb is not None:
                for key, ms in fb.timings_ms[0].items():
                    timings[f"{Stage.EXTRACT.value}.{key}"] = float(ms)
            sample, outcomes = self._apply_pack(req, pack, fb)
            for m, o in outcomes.items():
                if not o.present and o.reason is not None:
                    self.metrics.modality_dropped.labels(modality=m.value, reason=o.reason).inc()
            self._before_ort -= 1
            queued_for_ort = True
            result = await self.batcher.submit(pack, sample)
        finally:
            if not queued_for_ort:
                self._before_ort -= 1
        timings[Stage.QUEUE.value] = result.queue_ms
        timings[Stage.INFER.value] = result.infer_ms
        timings[Stage.TOTAL.value] = (time.perf_counter() - start) * 1e3
        for stage in (Stage.EXTRACT, Stage.QUEUE, Stage.INFER):
            self.metrics.latency.labels(stage=stage.value).observe(timings[stage.value] / 1e3)
        return self._unbatch(pack, sample, outcomes, result, timings)

    def _apply_pack(
        self, req: PredictRequest, pack: LoadedPack, fb: FeatureBatch | None
    ) -> tuple[Sample, dict[Modality, ModalityOutcome]]:
        """Per modality: features from the extractor, or zeros when absent or when the
        pack was never trained on it (then it counts as absent, and the response says)."""
        arrays: dict[Modality, np.ndarray] = {}
        outcomes: dict[Modality, ModalityOutcome] = {}
        sent = {Modality.TEXT: req.text, Modality.AUDIO: req.audio, Modality.VIDEO: req.video}
        for i, m in enumerate(MODALITIES):
            shape = pack.input_shapes[m]  # (L, D) of the backbone input
            result = fb.results[0].get(m) if fb is not None else None
            untrained = m not in pack.modalities
            if untrained and (sent[m] is not None or (result is not None and result.present)):
                outcomes[m] = ModalityOutcome(False, DropReason.NOT_TRAINED_FOR_PACK.value)
                arrays[m] = np.zeros(shape, dtype=np.float32)
            elif fb is not None and result is not None:
                present = bool(fb.present[0, i])
                outcomes[m] = ModalityOutcome(
                    present, None if present else (result.reason or "absent"), result.details
                )
                feats = (fb.text, fb.audio, fb.video)[i][0]
                arrays[m] = feats if present else np.zeros(shape, dtype=np.float32)
            else:
                outcomes[m] = ModalityOutcome(False, "not_sent")
                arrays[m] = np.zeros(shape, dtype=np.float32)
        presence = [outcomes[m].present for m in MODALITIES]
        try:
            mt = MissingType.from_presence(*presence)
        except NoModalityError as exc:
            why = ", ".join(f"{m.value}: {o.reason}" for m, o in outcomes.items())
            raise NoUsableModalityError(
                f"no usable modality for pack {pack.name} ({why}); send at least one "
                f"modality the pack was trained on ({', '.join(pack.modality_names)}) "
                "with usable content"
            ) from exc
        sample = Sample(arrays[Modality.TEXT], arrays[Modality.AUDIO], arrays[Modality.VIDEO], mt)
        return sample, outcomes

    @staticmethod
    def _unbatch(
        pack: LoadedPack,
        sample: Sample,
        outcomes: dict[Modality, ModalityOutcome],
        result: BatchResult[np.ndarray],
        timings: dict[str, float],
    ) -> Prediction:
        row = result.output  # (K,)
        if pack.task is TaskKind.CLASSIFICATION:
            probs = softmax(row[None, :])[0]
            scores: dict[str, float] | None = {
                lab: float(p) for lab, p in zip(pack.labels, probs, strict=True)
            }
            label = pack.labels[int(np.argmax(probs))]
            score = None
        else:
            scores = None
            score = float(row[0])
            label = pack.regression_label(score)
        return Prediction(
            label=label,
            scores=scores,
            score=score,
            pack_name=pack.name,
            pack_version=pack.version,
            missing_type=MissingType(sample.missing_type),
            modalities=outcomes,
            timings_ms={k: round(v, 3) for k, v in timings.items()},
            batch_size=result.batch_size,
        )
