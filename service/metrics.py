"""Prometheus metrics, one registry per app instance (so two apps in one process, as in
the tests, never share or clash)."""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Stage(StrEnum):
    """Stages of one /predict request, as reported in `timings_ms` and the histogram.
    `parse` is reading the HTTP body (or the CLI's files) into a request."""

    PARSE = "parse"
    EXTRACT = "extract"
    QUEUE = "queue"
    INFER = "infer"
    TOTAL = "total"


_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_PACKS_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32)


class ServiceMetrics:
    """Every metric the service exports, registered in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "predict_requests_total",
            "Finished /predict requests by pack, missing type and HTTP status.",
            ["pack", "missing_type", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "predict_latency_seconds",
            "Latency of /predict per stage (parse, extract, queue, infer, total).",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "batch_size",
            "Rows per onnxruntime call made by the dynamic batcher.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.packs_per_batch = Histogram(
            "packs_per_batch",
            "Pack versions per onnxruntime call: 1 for a call of one pack, more when "
            "packs of one shape share a call (MPLMM_MIX_PACKS).",
            buckets=_PACKS_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "queue_depth",
            "Admitted /predict requests not yet answered (extracting or waiting to batch).",
            registry=self.registry,
        )
        self.pack_swaps = Counter(
            "pack_swaps_total",
            "Pack versions swapped in (upload, directory watch) by pack.",
            ["pack"],
            registry=self.registry,
        )
        self.pack_load_failures = Counter(
            "pack_load_failures_total",
            "Pack versions that failed validation and were not swapped in.",
            ["pack"],
            registry=self.registry,
        )
        self.modality_dropped = Counter(
            "modality_dropped_total",
            "Modalities reported absent, by modality and reason.",
            ["modality", "reason"],
            registry=self.registry,
        )

        self.transcriptions = Counter(
            "asr_transcriptions_total",
            "Transcriptions by outcome: used as the text, or refused by the gate "
            "(asr_low_confidence, empty_text).",
            ["outcome"],
            registry=self.registry,
        )
        self.asr_seconds = Histogram(
            "asr_seconds",
            "Decoding time of one transcription (not the wait for a free recogniser).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.jobs = Counter(
            "jobs_total",
            "Jobs by outcome: submitted, succeeded, failed, cancelled, requeued (a replica "
            "stopped while running it), lost.",
            ["outcome"],
            registry=self.registry,
        )
        self.jobs_running = Gauge(
            "jobs_running", "Jobs this process is running now.", registry=self.registry
        )
        self.job_seconds = Histogram(
            "job_seconds",
            "Run time of a job, from claim to finish.",
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
            registry=self.registry,
        )

    def observe_batch(self, rows: int, packs: int) -> None:
        """One onnxruntime call of the backbone batcher: its rows and its pack versions."""
        self.batch_size.observe(rows)
        self.packs_per_batch.observe(packs)

    def count_request(self, pack: str, missing_type: str, status: int) -> None:
        """One finished /predict request. `pack` is a loaded pack's name or "unknown",
        never a client-chosen value; `missing_type` a MissingType name or "none"."""
        self.requests.labels(pack=pack, missing_type=missing_type, status=str(status)).inc()
