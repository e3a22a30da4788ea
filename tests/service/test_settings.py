"""Settings: defaults, the MPLMM_ prefix, validation, and isolation from os.environ."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.limits import LIMIT_FIELDS, Limits
from service.settings import (
    DEFAULT_BUNDLE_DIR,
    ExecutionProvider,
    LogFormat,
    Settings,
    get_settings,
)


def test_defaults_match_the_configuration_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", "/data/home")
    s = Settings.from_env({})
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.bundle_dir == DEFAULT_BUNDLE_DIR
    # A local server writes packs to the user's data dir, never into the bundle (the git
    # tree); the bundle's packs only seed it.
    assert s.resolved_packs_dir == Path("/data/home/mplmm/packs")
    assert s.bundled_packs_dir == DEFAULT_BUNDLE_DIR / "packs"
    assert s.default_pack == "sentiment"
    assert s.admin_token is None
    assert s.execution_provider is ExecutionProvider.AUTO
    assert (s.max_batch_size, s.max_wait_ms, s.max_queue) == (32, 5.0, 256)
    assert (s.request_timeout_s, s.extract_workers) == (30.0, 4)
    assert (s.max_text_chars, s.max_audio_bytes, s.max_audio_seconds) == (2000, 20971520, 60.0)
    assert (s.max_video_bytes, s.max_video_seconds) == (104857600, 60.0)
    assert (s.max_video_frames, s.max_video_pixels) == (3000, 2073600)
    assert (s.pack_watch_interval_s, s.drain_timeout_s) == (2.0, 20.0)
    assert s.log_format is LogFormat.JSON


def test_from_env_reads_only_its_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLMM_PORT", "9999")
    s = Settings.from_env({"MPLMM_MAX_BATCH_SIZE": "8", "OTHER": "x", "MPLMM_PACKS_DIR": "/p"})
    assert s.port == 8000
    assert s.max_batch_size == 8
    assert s.resolved_packs_dir == Path("/p")
    assert Settings().port == 9999  # the process environment, when asked for


def test_limits_follow_the_settings() -> None:
    s = Settings.from_env({"MPLMM_MAX_TEXT_CHARS": "10", "MPLMM_MAX_VIDEO_FRAMES": "7"})
    assert s.limits.max_text_chars == 10
    assert s.limits.max_video_frames == 7


def test_every_limit_is_a_setting_with_the_same_default() -> None:
    # One definition: the extractors' Limits; each field is a setting of the same name.
    defaults, settings = Limits(), Settings.from_env({})
    for name in LIMIT_FIELDS:
        assert name in Settings.model_fields, name
        assert getattr(settings, name) == getattr(defaults, name), name
    assert settings.limits == defaults
    assert {f.name for f in fields(Limits)} == {*LIMIT_FIELDS, "renamed"}


def test_packs_dir_falls_back_to_home_without_xdg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", "/home/someone")
    assert Settings.from_env({}).resolved_packs_dir == Path(
        "/home/someone/.local/share/mplmm/packs"
    )


def test_empty_admin_token_means_disabled() -> None:
    assert Settings.from_env({"MPLMM_ADMIN_TOKEN": ""}).admin_token is None
    assert Settings.from_env({"MPLMM_ADMIN_TOKEN": "s3cret"}).admin_token == "s3cret"


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("MPLMM_EXECUTION_PROVIDER", "tpu", "execution_provider"),
        ("MPLMM_MAX_BATCH_SIZE", "0", "max_batch_size"),
        ("MPLMM_PORT", "70000", "port"),
        ("MPLMM_DEFAULT_PACK", "../etc", "default_pack"),
        ("MPLMM_LOG_FORMAT", "xml", "log_format"),
    ],
)
def test_invalid_values_are_refused(key: str, value: str, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings.from_env({key: value})
    assert info.value.errors()[0]["loc"] == (field,)


def test_get_settings_is_cached_and_not_built_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv("MPLMM_PORT", "8123")
    try:
        assert get_settings().port == 8123
        monkeypatch.setenv("MPLMM_PORT", "8124")
        assert get_settings() is get_settings()
        assert get_settings().port == 8123
    finally:
        get_settings.cache_clear()


def test_jobs_in_redis_need_its_url() -> None:
    with pytest.raises(ValidationError, match="MPLMM_REDIS_URL"):
        Settings.from_env({"MPLMM_JOBS_BACKEND": "redis"})
    redis = Settings.from_env(
        {"MPLMM_JOBS_BACKEND": "redis", "MPLMM_REDIS_URL": "redis://127.0.0.1:6379/0"}
    )
    assert redis.jobs_backend.value == "redis"
    with pytest.raises(ValidationError, match="MPLMM_TIMELINE_MIN_SEGMENT_S"):
        Settings.from_env({"MPLMM_TIMELINE_MIN_SEGMENT_S": "12"})


def test_timeline_and_job_limits_are_stretched_and_name_their_settings() -> None:
    s = Settings.from_env({"MPLMM_TIMELINE_MAX_SECONDS": "300", "MPLMM_JOB_MAX_BYTES": "1000"})
    assert s.timeline_limits.max_audio_seconds == 300
    assert s.timeline_limits.max_audio_bytes == s.max_audio_bytes  # /predict's bytes
    assert s.timeline_limits.setting("max_video_seconds") == "timeline_max_seconds"
    assert s.job_limits.max_video_bytes == 1000
    assert s.job_limits.setting("max_audio_bytes") == "job_max_bytes"
    assert s.max_job_body_bytes > 1000
