"""Service configuration: environment variables with the prefix `MPLMM_`.

`get_settings()` builds the settings once, on first call (never at import), from the
process environment. Tests build them from an explicit mapping with
`Settings.from_env({...})`, which ignores the process environment entirely.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from model.layout import ENCODERS_DIR, PACK_NAME_PATTERN, PACKS_DIR, REPO_BUNDLE_DIR, user_data_dir
from service.limits import ENV_PREFIX, LIMIT_FIELDS, Limits

DEFAULT_BUNDLE_DIR = REPO_BUNDLE_DIR
_LIMITS = Limits()  # the limit settings take their defaults from here
# Set while `Settings.from_env` builds: only its mapping counts, never os.environ.
_EXPLICIT_ONLY: ContextVar[bool] = ContextVar("mplmm_settings_explicit_only", default=False)


class ExecutionProvider(StrEnum):
    """Which onnxruntime execution provider to ask for."""

    AUTO = "auto"  # CUDA when the session really gets it, else CPU
    CUDA = "cuda"
    CPU = "cpu"


class AsrMode(StrEnum):
    """When speech is transcribed into the text modality (a request's `transcribe`
    field overrides auto and on)."""

    AUTO = "auto"  # speech, no text, and the pack reads text
    ON = "on"  # speech and no text, whatever the pack reads (the transcript is reported)
    OFF = "off"  # never; the recogniser is not loaded


class JobsBackend(StrEnum):
    """Where jobs are queued and kept."""

    MEMORY = "memory"  # in this process: one server (a restart loses them, and says so)
    REDIS = "redis"  # a Redis server shared by every replica (MPLMM_REDIS_URL)


class LogFormat(StrEnum):
    JSON = "json"
    TEXT = "text"


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class Settings(BaseSettings):
    """Every `MPLMM_*` variable. Sizes in bytes, times in seconds unless named `_ms`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    bundle_dir: Path = DEFAULT_BUNDLE_DIR
    packs_dir: Path | None = Field(
        default=None,
        description="packs/<name>/<version>/, written by PUT /packs; defaults to the user's "
        "data dir ($XDG_DATA_HOME/mplmm/packs), seeded from <bundle_dir>/packs when empty",
    )
    default_pack: str = Field(default="sentiment", pattern=PACK_NAME_PATTERN)
    admin_token: str | None = Field(default=None, description="unset: admin endpoints 403")
    execution_provider: ExecutionProvider = ExecutionProvider.AUTO
    intra_op_threads: int = Field(default=0, ge=0)
    max_batch_size: int = Field(default=32, ge=1, le=4096)
    max_wait_ms: float = Field(default=5.0, ge=0)
    mix_packs: bool = Field(
        default=True,
        description="rows of several packs of one shape may share one backbone call",
    )
    max_queue: int = Field(default=256, ge=1)
    max_inflight_bytes: int = Field(
        default=512 * 1024 * 1024, ge=1, description="body bytes admitted at once"
    )
    request_timeout_s: float = Field(default=30.0, gt=0)
    extract_workers: int = Field(default=4, ge=1)
    asr: AsrMode = AsrMode.AUTO
    asr_threads: int = Field(
        default=0, ge=0, description="CPU threads per transcription; 0: half the cores"
    )
    asr_concurrency: int = Field(default=1, ge=1, description="transcriptions at once")
    asr_max_seconds: float = Field(default=60.0, gt=0, description="speech transcribed per request")
    # Input limits: the same names as `Limits`, whose defaults they take.
    max_text_chars: int = Field(default=_LIMITS.max_text_chars, ge=1)
    max_audio_bytes: int = Field(default=_LIMITS.max_audio_bytes, ge=1)
    max_audio_seconds: float = Field(default=_LIMITS.max_audio_seconds, gt=0)
    max_video_bytes: int = Field(default=_LIMITS.max_video_bytes, ge=1)
    max_video_seconds: float = Field(default=_LIMITS.max_video_seconds, gt=0)
    max_video_frames: int = Field(default=_LIMITS.max_video_frames, ge=1)
    max_video_pixels: int = Field(default=_LIMITS.max_video_pixels, ge=1)
    min_audio_sample_rate: int = Field(default=_LIMITS.min_audio_sample_rate, ge=1)
    max_audio_sample_rate: int = Field(default=_LIMITS.max_audio_sample_rate, ge=1)
    # Timelines (POST /predict with timeline=true) and jobs (POST /jobs).
    timeline_max_seconds: float = Field(
        default=120.0, gt=0, description="media seconds of a synchronous timeline"
    )
    timeline_max_segments: int = Field(default=1000, ge=1, description="segments per timeline")
    timeline_min_segment_s: float = Field(default=1.0, gt=0)
    timeline_max_segment_s: float = Field(default=10.0, gt=0)
    timeline_merge_gap_s: float = Field(default=0.6, ge=0)
    timeline_window_s: float = Field(default=2.0, gt=0, description="video without speech")
    job_max_seconds: float = Field(default=1800.0, gt=0, description="media seconds of a job")
    job_max_bytes: int = Field(default=512 * 1024 * 1024, ge=1, description="one job's media")
    jobs_max_bytes: int = Field(
        default=1024 * 1024 * 1024, ge=1, description="media bytes held by queued jobs"
    )
    max_jobs: int = Field(default=32, ge=1, description="jobs queued or running")
    job_concurrency: int = Field(default=1, ge=1, description="jobs running at once")
    job_ttl_s: float = Field(default=3600.0, gt=0, description="a finished job's result kept")
    job_timeout_s: float = Field(default=3600.0, gt=0)
    job_heartbeat_s: float = Field(
        default=30.0, gt=0, description="a running job without a heartbeat this long is lost"
    )
    jobs_backend: JobsBackend = JobsBackend.MEMORY
    redis_url: str | None = Field(default=None, description="redis://host:6379/0 (jobs)")
    max_pack_bytes: int = Field(default=256 * 1024 * 1024, ge=1, description="PUT /packs part")
    pack_watch_interval_s: float = Field(default=2.0, ge=0, description="0 turns it off")
    drain_timeout_s: float = Field(default=20.0, ge=0)
    log_level: LogLevel = LogLevel.INFO
    log_format: LogFormat = LogFormat.JSON

    @model_validator(mode="before")
    @classmethod
    def _empty_token_is_unset(cls, data: Any) -> Any:
        # An empty MPLMM_ADMIN_TOKEN= in a compose file must not enable admin with "".
        if isinstance(data, dict) and data.get("admin_token") == "":
            data = {**data, "admin_token": None}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        # Checked here too (TimelineSpec checks itself) to fail at start naming the setting.
        if self.jobs_backend is JobsBackend.REDIS and not self.redis_url:
            raise ValueError("MPLMM_JOBS_BACKEND=redis needs MPLMM_REDIS_URL (redis://host:6379/0)")
        if self.timeline_min_segment_s > self.timeline_max_segment_s:
            raise ValueError("MPLMM_TIMELINE_MIN_SEGMENT_S is over MPLMM_TIMELINE_MAX_SEGMENT_S")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if _EXPLICIT_ONLY.get():
            return (init_settings,)
        return (init_settings, env_settings)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Settings from an explicit `MPLMM_*` mapping only (the process env is ignored)."""
        values: dict[str, Any] = {}
        for key, value in env.items():
            if key.upper().startswith(ENV_PREFIX):
                values[key[len(ENV_PREFIX) :].lower()] = value
        token = _EXPLICIT_ONLY.set(True)
        try:
            return cls(**values)
        finally:
            _EXPLICIT_ONLY.reset(token)

    @property
    def resolved_packs_dir(self) -> Path:
        """Where packs are read and written: MPLMM_PACKS_DIR, else the user's data dir
        (never the bundle, which may be the git tree or a read-only image layer)."""
        return self.packs_dir if self.packs_dir is not None else user_data_dir() / PACKS_DIR

    @property
    def bundled_packs_dir(self) -> Path:
        """The bundle's packs: they seed an empty packs dir on first start."""
        return self.bundle_dir / PACKS_DIR

    @property
    def encoders_dir(self) -> Path:
        return self.bundle_dir / ENCODERS_DIR

    @property
    def limits(self) -> Limits:
        return Limits(**{name: getattr(self, name) for name in LIMIT_FIELDS})

    @property
    def timeline_limits(self) -> Limits:
        """The input limits of a synchronous timeline."""
        return self.limits.for_long_media(
            self.timeline_max_seconds, seconds_setting="timeline_max_seconds"
        )

    @property
    def job_limits(self) -> Limits:
        """The input limits of a job."""
        return self.limits.for_long_media(
            self.job_max_seconds,
            seconds_setting="job_max_seconds",
            max_bytes=self.job_max_bytes,
            bytes_setting="job_max_bytes",
        )

    def _body_for(self, media: int) -> int:
        """A body holding `media` bytes of media: base64 and form overhead (4/3) and room
        for text and multipart boundaries."""
        return media * 4 // 3 + 4 * self.max_text_chars + 64 * 1024

    @property
    def max_job_body_bytes(self) -> int:
        """Largest POST /jobs body: the media of one job."""
        return self._body_for(self.job_max_bytes)

    @property
    def max_body_bytes(self) -> int:
        """Largest /predict body we read: both media at their limits."""
        return self._body_for(self.max_audio_bytes + self.max_video_bytes)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
