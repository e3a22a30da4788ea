"""Decode an audio file or a video's audio track to 16 kHz mono float32, within `Limits`.

The container is recognised from its first bytes, never from a file name. wav, flac, ogg
and mp3 go through soundfile (libsndfile); video containers (mp4/mov, webm/mkv, avi) and
raw AAC through PyAV (FFmpeg). Headers are checked against the limits before the full
decode; where a header cannot be trusted, decoding stops once a limit is passed.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from service.errors import InvalidMediaError, MediaTooLargeError, UnsupportedMediaError
from service.features.sniff import HEAD_BYTES, VIDEO_CONTAINERS, Format
from service.features.sniff import sniff as sniff_format
from service.limits import Limits

TARGET_RATE = 16_000
_BLOCK = 1 << 16  # frames per soundfile read, so a lying header cannot make us read 10 h


_SAMPLE_BYTES = {
    "PCM_U8": 1,
    "PCM_S8": 1,
    "PCM_16": 2,
    "PCM_24": 3,
    "PCM_32": 4,
    "FLOAT": 4,
    "DOUBLE": 8,
    "ULAW": 1,
    "ALAW": 1,
}  # WAV subtypes, bytes per sample
# What audio can come in: audio files, and the audio track of a video container.
_SOUNDFILE = (Format.WAV, Format.FLAC, Format.OGG, Format.MP3)
AUDIO_FORMATS = frozenset((*_SOUNDFILE, Format.AAC, *VIDEO_CONTAINERS))


@dataclass(frozen=True)
class DecodedAudio:
    """`samples` `(N,)` float32 at `rate` Hz, mono; what the source declared."""

    samples: np.ndarray
    rate: int
    source_rate: int
    channels: int
    container: Format

    @property
    def duration_s(self) -> float:
        return float(self.samples.shape[0]) / self.rate


def sniff(head: bytes) -> Format | None:
    """The container of a file from its first bytes, or None when audio cannot be in it."""
    fmt = sniff_format(head)
    return fmt if fmt in AUDIO_FORMATS else None


def read_bytes(data: bytes | Path, limits: Limits, limit: str, field: str) -> bytes:
    """The media's bytes; checks the size against `limits.<limit>` (of a path, before
    reading it) and emptiness."""
    max_bytes = int(getattr(limits, limit))
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        size = len(raw)
    else:
        path = Path(data)
        if not path.is_file():
            raise InvalidMediaError(field, f"no such file: {path}")
        size = path.stat().st_size
        raw = b""
    if size > max_bytes:
        raise MediaTooLargeError(
            field, f"{size} bytes, over the limit of {max_bytes} bytes", limit=limits.setting(limit)
        )
    if size == 0:
        raise InvalidMediaError(field, "empty file (zero bytes)")
    return raw if raw else Path(data).read_bytes()  # type: ignore[arg-type]


def _check_rate(rate: int, limits: Limits, field: str) -> None:
    if not limits.min_audio_sample_rate <= rate <= limits.max_audio_sample_rate:
        raise InvalidMediaError(
            field,
            f"sample rate {rate} Hz is outside {limits.min_audio_sample_rate}.."
            f"{limits.max_audio_sample_rate} Hz",
        )


def _seconds_limit(kind: Format) -> str:
    """A video's audio track is held to the video's duration limit, a file to the audio's."""
    return "max_video_seconds" if kind in VIDEO_CONTAINERS else "max_audio_seconds"


def _check_seconds(seconds: float, limits: Limits, kind: Format, field: str, what: str) -> None:
    name = _seconds_limit(kind)
    limit = float(getattr(limits, name))
    if seconds > limit:
        raise MediaTooLargeError(
            field,
            f"{what} {seconds:.1f} s of audio, over the limit of {limit:g} s",
            limit=limits.setting(name),
        )


_STREAMED_WAV_SIZE = 0x7FFF0000


def _wav_data_chunk(raw: bytes) -> tuple[int, int] | None:
    """(declared data bytes, bytes actually present) of a WAV's data chunk, if readable.

    libsndfile silently shortens a WAV whose data chunk is cut off, and sizes its frame
    count from the file rather than the header; both facts matter to us.
    """
    pos = 12
    while pos + 8 <= len(raw):
        cid, size = raw[pos : pos + 4], struct.unpack("<I", raw[pos + 4 : pos + 8])[0]
        if cid == b"data":
            present = len(raw) - (pos + 8)
            # Streamed WAVs (written to a pipe) do not know their length: ffmpeg writes 0 or
            # 0xFFFFFFFF, espeak-ng and sox about 2**31 (0x7FFFF000). Not checkable.
            if size in (0, 0xFFFFFFFF) or (size >= _STREAMED_WAV_SIZE and size > present):
                return None
            return size, present
        pos += 8 + size + (size & 1)
    return None


def _error_text(e: Exception) -> str:
    """libsndfile's own message, without soundfile's repr of our in-memory buffer."""
    return str(getattr(e, "error_string", None) or e)


def _decode_soundfile(raw: bytes, kind: Format, limits: Limits, field: str) -> DecodedAudio:
    max_s = float(getattr(limits, _seconds_limit(kind)))
    try:
        f = sf.SoundFile(io.BytesIO(raw))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise InvalidMediaError(
            field, f"cannot open as {kind.value} (corrupt or not {kind.value}): {_error_text(e)}"
        ) from e
    with f:
        rate, declared, channels = int(f.samplerate), int(f.frames), int(f.channels)
        _check_rate(rate, limits, field)
        if channels < 1:
            raise InvalidMediaError(field, f"{channels} channels")
        chunk = _wav_data_chunk(raw) if kind is Format.WAV else None
        if chunk is not None:
            frame_bytes = channels * max(_SAMPLE_BYTES.get(f.subtype, 2), 1)
            _check_seconds(chunk[0] / frame_bytes / rate, limits, kind, field, "header declares")
        if declared <= 0:
            raise InvalidMediaError(
                field, f"{kind.value} audio with zero samples (empty or truncated)"
            )
        _check_seconds(declared / rate, limits, kind, field, "header declares")
        if chunk is not None and chunk[1] < chunk[0]:
            raise InvalidMediaError(
                field, f"truncated wav: data chunk declares {chunk[0]} bytes, {chunk[1]} present"
            )
        cap = int(max_s * rate) + 1
        blocks: list[np.ndarray] = []
        got = 0
        try:
            while got < min(declared, cap):
                block = f.read(min(_BLOCK, cap - got), dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    break
                blocks.append(block)
                got += block.shape[0]
        except (sf.LibsndfileError, RuntimeError) as e:
            raise InvalidMediaError(field, f"corrupt {kind.value} audio: {_error_text(e)}") from e
    if got == 0:
        raise InvalidMediaError(field, f"{kind.value} audio decoded to zero samples")
    _check_seconds(got / rate, limits, kind, field, "decoded")
    # Compressed formats may stop a little short of their header (MP3 sizes are estimates
    # from the Xing header or the bitrate); a large gap is a cut-off file.
    slack = declared // 20 if kind is Format.MP3 else declared // 100
    if got < declared - max(rate // 10, slack):
        raise InvalidMediaError(
            field, f"truncated {kind.value}: {got} of {declared} declared samples decoded"
        )
    stereo = np.concatenate(blocks)  # (N, C)
    return DecodedAudio(_to_mono_16k(stereo, rate, field), TARGET_RATE, rate, channels, kind)


def _decode_av(raw: bytes, kind: Format, limits: Limits, field: str) -> DecodedAudio | None:
    import av

    max_s = float(getattr(limits, _seconds_limit(kind)))

    try:
        container = av.open(io.BytesIO(raw), mode="r")
    except av.FFmpegError as e:
        raise InvalidMediaError(field, f"cannot open {kind.value} container: {e}") from e
    with container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate or 0)
        _check_rate(rate, limits, field)
        if stream.duration is not None and stream.time_base is not None:
            _check_seconds(float(stream.duration * stream.time_base), limits, kind, field, "header")
        elif container.duration is not None:
            _check_seconds(
                container.duration / av.time_base, limits, kind, field, "header declares"
            )
        resampler = av.AudioResampler(format="flt", layout="mono", rate=TARGET_RATE)
        cap = int(max_s * TARGET_RATE)
        chunks: list[np.ndarray] = []
        got = 0
        channels = int(stream.codec_context.channels or 1)
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)  # (n,) packed mono float32
                    chunks.append(chunk)
                    got += chunk.shape[0]
                if got > cap:
                    _check_seconds(got / TARGET_RATE, limits, kind, field, "decoded")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as e:
            raise InvalidMediaError(field, f"corrupt {kind.value} audio track: {e}") from e
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if samples.shape[0] == 0:
        raise InvalidMediaError(field, f"the {kind.value} audio track decoded to zero samples")
    _check_seconds(samples.shape[0] / TARGET_RATE, limits, kind, field, "decoded")
    if not np.isfinite(samples).all():
        raise InvalidMediaError(field, "audio contains NaN or infinite samples")
    return DecodedAudio(samples, TARGET_RATE, rate, channels, kind)


def _to_mono_16k(stereo: np.ndarray, rate: int, field: str) -> np.ndarray:
    if not np.isfinite(stereo).all():
        raise InvalidMediaError(field, "audio contains NaN or infinite samples")
    mono = stereo.mean(axis=1, dtype=np.float32)  # (N,)
    if rate != TARGET_RATE:
        mono = soxr.resample(mono, rate, TARGET_RATE, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def declared_seconds(raw: bytes) -> float | None:
    """The duration a file's header declares, without decoding it: what a job checks
    before it is queued. None when the header does not say (a WAV written to a pipe) or
    the file does not open (its decoder says why later)."""
    kind = sniff_format(raw[:HEAD_BYTES])
    if kind in _SOUNDFILE:
        try:
            info = sf.info(io.BytesIO(raw))
        except (sf.LibsndfileError, RuntimeError, TypeError):
            return None
        rate = int(info.samplerate)
        if rate <= 0:
            return None
        if kind is not Format.WAV:
            return float(info.frames) / rate
        chunk = _wav_data_chunk(raw)  # libsndfile sizes a WAV from what is there
        if chunk is None:
            return None
        frame_bytes = int(info.channels) * _SAMPLE_BYTES.get(str(info.subtype), 2)
        return chunk[0] / frame_bytes / rate
    import av

    try:
        with av.open(io.BytesIO(raw), mode="r") as container:
            duration = container.duration
    except (av.FFmpegError, OSError):
        return None
    return float(duration) / av.time_base if duration and duration > 0 else None


def decode_audio(
    data: bytes | Path, limits: Limits | None = None, field: str = "audio"
) -> DecodedAudio | None:
    """Decode to 16 kHz mono float32; None when a video container has no audio track.

    Raises InvalidMediaError (corrupt, truncated, empty, NaN, absurd sample rate),
    MediaTooLargeError (bytes or seconds over `limits`) or UnsupportedMediaError.
    """
    limits = limits or Limits()
    # Which container it is is not known before reading: hold it to the larger byte limit.
    larger = max(("max_audio_bytes", "max_video_bytes"), key=lambda n: getattr(limits, n))
    raw = read_bytes(data, limits, larger, field)
    kind = sniff(raw[:HEAD_BYTES])
    if kind is None:
        raise UnsupportedMediaError(
            field,
            f"unrecognised container (first bytes {raw[:8]!r}); send wav, flac, ogg, mp3, "
            "or a video (mp4, mov, webm, mkv, avi) with an audio track",
        )
    if kind not in VIDEO_CONTAINERS and len(raw) > limits.max_audio_bytes:
        raise MediaTooLargeError(
            field,
            f"{len(raw)} bytes, over the limit of {limits.max_audio_bytes} bytes",
            limit=limits.setting("max_audio_bytes"),
        )
    if kind in _SOUNDFILE:
        return _decode_soundfile(raw, kind, limits, field)
    return _decode_av(raw, kind, limits, field)
