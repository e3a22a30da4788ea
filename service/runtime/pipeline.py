"""The request path, top to bottom, in one method (`InferencePipeline.predict`):

    admit -> parse -> pick the pack -> extract -> apply the pack -> batch -> infer
          -> decode the output -> Prediction

Both callers hand it a parser: the HTTP route (the request body) and `mplmm predict`
(its arguments). The pipeline times every stage and emits every per-request metric;
the route only serialises the `Prediction`. Admission comes first, before a byte of the
body is read, so the queue and byte limits protect memory as well as the extractors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import Enum
from operator import attrgetter
from typing import TYPE_CHECKING, Protocol

import numpy as np

from model.feeds import backbone_feeds, stack_pack_feeds
from model.missing import MODALITIES, MissingType, Modality, types_from_presence
from service.errors import (
    MediaError,
    RequestTimeoutError,
    ServiceError,
)
from service.features.timeline import Progress, TimelineSpec
from service.features.types import Sample, SampleFeatures
from service.limits import Limits
from service.metrics import ServiceMetrics, Stage
from service.runtime import policy
from service.runtime.admission import Admission, Ticket
from service.runtime.batcher import Batch, DynamicBatcher
from service.runtime.packs import LoadedPack
from service.runtime.registry import PackRegistry
from service.runtime.session import BackboneSession
from service.runtime.types import (
    Answer,
    AnsweredBy,
    Prediction,
    PredictRequest,
    SegmentPrediction,
    Timeline,
)
from service.settings import AsrMode

if TYPE_CHECKING:  # the extractor's modules load models: the runtime imports them lazily
    from service.features.timeline_features import TimelineFeatures

Parse = Callable[[], Awaitable[PredictRequest]]


class Extractor(Protocol):
    """What the pipeline needs from `service.features.extractor.FeatureExtractor`."""

    def extract_many(self, samples: Sequence[Sample]) -> list[SampleFeatures]: ...

    def timeline(
        self,
        sample: Sample,
        spec: TimelineSpec,
        limits: Limits,
        max_segments: int,
        progress: Progress | None = None,
    ) -> TimelineFeatures: ...


@dataclass(frozen=True)
class TimelineOptions:
    """How timelines are cut, and the limits of a synchronous one."""

    spec: TimelineSpec = field(default_factory=TimelineSpec)
    limits: Limits = field(default_factory=Limits)
    max_segments: int = 1000


class _TextGroup(Enum):
    """The one group of the text batcher: texts for any pack share a text-encoder call."""

    TEXT = "text"


def _ms_since(t: float) -> float:
    return (time.perf_counter() - t) * 1e3


def _extract_timings(t: float, features: SampleFeatures) -> dict[str, float]:
    """The extract stage since `t`, and each of its steps as `extract.<step>`."""
    timings = {Stage.EXTRACT.value: _ms_since(t)}
    for key, ms in features.timings_ms.items():
        timings[f"{Stage.EXTRACT.value}.{key}"] = float(ms)
    return timings


class InferencePipeline:
    """Owns admission, the extraction pool and both batchers. The session, the registry
    and the extractor are built (and warmed) by the runtime."""

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
        max_inflight_bytes: int,
        request_timeout_s: float,
        extract_workers: int,
        asr_mode: AsrMode = AsrMode.AUTO,
        timeline: TimelineOptions | None = None,
        mix_packs: bool = True,
    ) -> None:
        self.session = session
        self.registry = registry
        self.extractor = extractor
        self.metrics = metrics
        self.request_timeout_s = request_timeout_s
        self.asr_mode = asr_mode
        self.timeline = timeline or TimelineOptions()
        self.admission = Admission(max_queue, max_inflight_bytes, metrics.queue_depth.set)
        self._pool = ThreadPoolExecutor(extract_workers, thread_name_prefix="mplmm-extract")
        # Packs of one shape may share a call (`LoadedPack.batch_key`); rows never change
        # pack version on the way, so a swap still serves each row by its own version.
        self.batcher: DynamicBatcher[LoadedPack, SampleFeatures, np.ndarray] = DynamicBatcher(
            self._infer,
            max_batch=max_batch,
            max_wait_s=max_wait_s,
            on_batch=self._observe_batch,
            nothing_else_coming=self.admission.nothing_else_coming,
            mix_key=attrgetter("batch_key") if mix_packs else None,
            name="ort",
        )
        # One executor job per batch of texts: fp32 MiniLM costs about half as much per
        # utterance at batch 16+ as alone; int8 encodes one text per call (TextEncoder).
        self.text_batcher: DynamicBatcher[_TextGroup, str, SampleFeatures] = DynamicBatcher(
            self._extract_texts,
            max_batch=max_batch,
            max_wait_s=max_wait_s,
            nothing_else_coming=self.admission.nothing_left_to_extract,
            name="text",
        )

    @property
    def in_flight(self) -> int:
        return self.admission.in_flight

    def start(self) -> None:
        self.batcher.start()
        self.text_batcher.start()

    async def close(self, drain_timeout_s: float) -> None:
        await self.admission.drain(drain_timeout_s)
        await self.batcher.close(0.0)
        await self.text_batcher.close(0.0)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ the path

    async def predict(self, parse: Parse, nbytes: int = 0) -> Prediction:
        """Raises ServiceError subclasses for everything a client can fix. `nbytes` is
        what the body may hold (its Content-Length, or its limit when chunked): it is
        admitted before a byte of it is read."""
        start = time.perf_counter()
        pack_label = "unknown"  # never a client-chosen label value
        try:
            with self.admission.admit(nbytes) as ticket:
                async with asyncio.timeout(self.request_timeout_s):
                    req = await parse()
                    parse_ms = _ms_since(start)
                    pack = self.registry.get(req.pack)  # pinned: later swaps do not matter
                    pack_label = pack.name
                    policy.require_sent(req.sample)
                    if req.timeline:
                        pred = await self._timeline(req, pack, self.timeline.limits, ticket)
                    else:
                        pred = await self._admitted(req, pack, ticket)
        except TimeoutError as exc:
            self.metrics.count_request(pack_label, "none", RequestTimeoutError.http_status)
            raise RequestTimeoutError(
                f"the request took longer than MPLMM_REQUEST_TIMEOUT_S="
                f"{self.request_timeout_s:g} s; send shorter media or retry later"
            ) from exc
        except ServiceError as exc:
            self.metrics.count_request(pack_label, "none", exc.http_status)
            raise
        except Exception:
            self.metrics.count_request(pack_label, "none", 500)
            raise
        timings = {Stage.PARSE.value: parse_ms, **pred.timings_ms}
        timings[Stage.TOTAL.value] = _ms_since(start)
        for stage in Stage:
            self.metrics.latency.labels(stage=stage.value).observe(timings[stage.value] / 1e3)
        kind = pred.missing_type.name if pred.missing_type is not None else "none"
        self.metrics.count_request(pack.name, kind, 200)
        return replace(pred, timings_ms={k: round(v, 3) for k, v in timings.items()})

    async def run_job(
        self, req: PredictRequest, limits: Limits, progress: Progress | None = None
    ) -> Prediction:
        """A job's request: a timeline under the jobs' own limits, outside admission
        (jobs have their own bounds), on the same extraction pool and batcher."""
        start = time.perf_counter()
        pack = self.registry.get(req.pack)
        policy.require_sent(req.sample)
        pred = await self._timeline(req, pack, limits, None, progress)
        timings = {**pred.timings_ms, Stage.TOTAL.value: _ms_since(start)}
        return replace(pred, timings_ms={k: round(v, 3) for k, v in timings.items()})

    async def _admitted(self, req: PredictRequest, pack: LoadedPack, ticket: Ticket) -> Prediction:
        t = time.perf_counter()
        sent = req.sample
        features = await self._extract(self._to_extract(req, pack), pack, ticket)
        self._count_transcription(features)
        timings = _extract_timings(t, features)

        decision = policy.decide(sent, features, pack)
        self._count_dropped(decision.row)
        if decision.face is not None:  # nothing the pack reads, but a face: it answers
            ticket.queued_for_backbone()  # this request will never reach the batcher
            timings[Stage.QUEUE.value] = timings[Stage.INFER.value] = 0.0
            return self._prediction(
                decision.face,
                AnsweredBy.FACE_EXPRESSION,
                pack,
                decision.row,
                MissingType.VIDEO_ONLY,
                timings,
                0,
            )
        row = decision.row
        missing_type = policy.missing_type_of(row, pack.name, pack.modalities)  # or 422

        ticket.queued_for_backbone()
        out = await self.batcher.submit(pack, row)
        timings[Stage.QUEUE.value] = out.queue_ms
        timings[Stage.INFER.value] = out.infer_ms
        answer = policy.decode_output(pack.task, pack.labels, out.output)
        return self._prediction(
            answer, AnsweredBy.PACK, pack, row, missing_type, timings, out.batch_size
        )

    async def _timeline(
        self,
        req: PredictRequest,
        pack: LoadedPack,
        limits: Limits,
        ticket: Ticket | None,
        progress: Progress | None = None,
    ) -> Prediction:
        """The whole clip's answer and one per segment; all the rows that need the
        backbone are queued at once, so they share as few calls as the batch size
        allows."""
        t = time.perf_counter()
        sent = req.sample
        to_extract = self._to_extract(req, pack)
        opts = self.timeline
        if ticket is not None:
            ticket.extracting()
        work = self._pool.submit(
            self.extractor.timeline, to_extract, opts.spec, limits, opts.max_segments, progress
        )
        if ticket is not None:
            ticket.hold_until(work)
        features = await asyncio.wrap_future(work)
        self._count_transcription(features.whole)
        timings = _extract_timings(t, features.whole)

        if ticket is not None:
            ticket.queued_for_backbone()
        rows = [features.whole, *(s.row for s in features.segments)]
        decisions = [policy.decide(sent, row, pack) for row in rows]
        self._count_dropped(decisions[0].row)
        todo = [i for i, d in enumerate(decisions) if d.face is None and d.missing_type is not None]
        outs = await asyncio.gather(*(self.batcher.submit(pack, decisions[i].row) for i in todo))
        answers: list[tuple[Answer | None, AnsweredBy | None]] = [
            (d.face, AnsweredBy.FACE_EXPRESSION if d.face else None) for d in decisions
        ]
        for i, out in zip(todo, outs, strict=True):
            answers[i] = (policy.decode_output(pack.task, pack.labels, out.output), AnsweredBy.PACK)
        timings[Stage.QUEUE.value] = max((o.queue_ms for o in outs), default=0.0)
        timings[Stage.INFER.value] = max((o.infer_ms for o in outs), default=0.0)

        segments = [
            SegmentPrediction(
                start_s=seg.start_s,
                end_s=seg.end_s,
                answer=answers[i][0],
                answered_by=answers[i][1],
                missing_type=decisions[i].missing_type,
                modalities=decisions[i].row.results,
            )
            for i, seg in enumerate(features.segments, start=1)
        ]
        whole, (answer, answered_by) = decisions[0], answers[0]
        return Prediction(
            answer=answer,
            answered_by=answered_by,
            pack_name=pack.name,
            pack_version=pack.version,
            missing_type=whole.missing_type,
            modalities=whole.row.results,
            timings_ms=timings,
            batch_size=max((o.batch_size for o in outs), default=0),
            timeline=Timeline(segments, features.duration_s, features.reason),
        )

    @staticmethod
    def _prediction(
        answer: Answer,
        answered_by: AnsweredBy,
        pack: LoadedPack,
        row: SampleFeatures,
        missing_type: MissingType,
        timings: dict[str, float],
        batch_size: int,
    ) -> Prediction:
        return Prediction(
            answer=answer,
            answered_by=answered_by,
            pack_name=pack.name,
            pack_version=pack.version,
            missing_type=missing_type,
            modalities=row.results,
            timings_ms=timings,
            batch_size=batch_size,
        )

    def _to_extract(self, req: PredictRequest, pack: LoadedPack) -> Sample:
        """What of the request the pack reads (and the speech to transcribe)."""
        sent = req.sample
        transcribe = policy.should_transcribe(self.asr_mode, req.transcribe, sent, pack.modalities)
        reads_faces = pack.expression_map is not None
        return policy.inputs_to_extract(sent, pack.modalities, reads_faces, transcribe)

    def _count_transcription(self, features: SampleFeatures) -> None:
        text = features[Modality.TEXT]
        if text.details.get("source") != "asr" or "asr" not in features.timings_ms:
            return
        self.metrics.transcriptions.labels(outcome=text.reason or "used").inc()
        self.metrics.asr_seconds.observe(features.timings_ms["asr"] / 1e3)

    def _count_dropped(self, row: SampleFeatures) -> None:
        for m in MODALITIES:
            if row[m].reason is not None:
                self.metrics.modality_dropped.labels(modality=m.value, reason=row[m].reason).inc()

    # ------------------------------------------------------------------ stages

    async def _extract(self, sample: Sample, pack: LoadedPack, ticket: Ticket) -> SampleFeatures:
        """Text alone goes through the text batcher; media through the extraction pool,
        whose thread keeps the ticket until it ends (a timeout does not stop a thread);
        nothing (the pack reads none of what was sent) is answered at once."""
        ticket.extracting()  # before submitting: the text batcher may stop waiting now
        if sample.audio is None and sample.video is None:
            if sample.text is None:
                return SampleFeatures.not_sent(pack.input_shapes)
            return (await self.text_batcher.submit(_TextGroup.TEXT, sample.text)).output
        work = self._pool.submit(self.extractor.extract_many, [sample])
        ticket.hold_until(work)
        rows = await asyncio.wrap_future(work)
        return rows[0]

    def _extract_texts(self, batch: Batch[_TextGroup, str]) -> list[SampleFeatures | BaseException]:
        texts = batch.payloads
        try:
            return list(self.extractor.extract_many([Sample(text=t) for t in texts]))
        except MediaError:
            # One bad text (e.g. over the limit) must not fail the others: redo one by one.
            return [self._extract_one_text(t) for t in texts]

    def _extract_one_text(self, text: str) -> SampleFeatures | BaseException:
        try:
            return self.extractor.extract_many([Sample(text=text)])[0]
        except MediaError as exc:
            return exc

    def _observe_batch(self, batch: Batch[LoadedPack, SampleFeatures]) -> None:
        self.metrics.observe_batch(len(batch), len(batch.groups))

    def _infer(self, batch: Batch[LoadedPack, SampleFeatures]) -> list[np.ndarray]:
        """One backbone call for rows of one or more pack versions of one shape: their
        arrays stacked (one pack: fed as they are), each row's index into them; B rows
        of `(K,)`."""
        rows = batch.payloads
        text, audio, video = (np.stack([r[m].features for r in rows]) for m in MODALITIES)
        types = types_from_presence(np.array([r.presence for r in rows]))  # (B,)
        packs = stack_pack_feeds([p.arrays for p in batch.groups])
        index = np.array(batch.group_index, dtype=np.int64)
        return list(self.session.run(backbone_feeds(text, audio, video, types, packs, index)))
