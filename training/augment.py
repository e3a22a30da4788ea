"""Acoustic shifts of 16 kHz mono speech: the robustness suite's, and training augmentation.

Each shift is a pure function of the waveform, its parameter and a seeded generator, so a
shifted copy is reproducible from `(shift, seed)` and can be cached like any feature.

- `telephone`: the 300-3400 Hz band at 8 kHz with G.711 mu-law quantisation;
- `mp3` / `opus`: a round trip through the codec at a bitrate (kbps), through PyAV;
- `noise`: pink noise at an SNR (dB) measured over the whole clip;
- `pitch`: a pitch shift in semitones at constant tempo (librosa's phase vocoder);
- `speed`: tempo and pitch together by resampling, as Kaldi's speed perturbation;
- `reverb`: a synthetic room impulse (direct path plus exponentially decaying noise)
  with the given RT60 (s);
- `gain`: a level change in dB, clipped to [-1, 1].

`Augmentation` draws random chains of these for training copies.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import av
import librosa
import numpy as np
from scipy import signal

RATE = 16_000


def _telephone(y: np.ndarray, _param: float, _rng: np.random.Generator) -> np.ndarray:
    narrow = librosa.resample(y, orig_sr=RATE, target_sr=8_000)
    sos = signal.butter(4, [300, 3400], btype="bandpass", fs=8_000, output="sos")
    narrow = signal.sosfilt(sos, narrow)
    mu = 255.0  # G.711 mu-law: 8 bits per sample
    x = np.clip(narrow, -1.0, 1.0)
    code = np.round(np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu) * 127.0) / 127.0
    narrow = np.sign(code) * np.expm1(np.abs(code) * np.log1p(mu)) / mu
    return librosa.resample(narrow.astype(np.float32), orig_sr=8_000, target_sr=RATE)


def _codec(name: str, rate: int) -> Callable[[np.ndarray, float, np.random.Generator], np.ndarray]:
    def apply(y: np.ndarray, kbps: float, _rng: np.random.Generator) -> np.ndarray:
        return codec_round_trip(y, name, int(kbps * 1000), rate)

    return apply


def codec_round_trip(y: np.ndarray, codec: str, bit_rate: int, codec_rate: int) -> np.ndarray:
    """`y` encoded with `codec` at `bit_rate` (b/s) and `codec_rate` Hz, decoded to 16 kHz."""
    fmt = {"libmp3lame": "mp3", "libopus": "ogg"}[codec]
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=codec_rate)
        stream.bit_rate = bit_rate
        stream.layout = "mono"
        src = y if codec_rate == RATE else librosa.resample(y, orig_sr=RATE, target_sr=codec_rate)
        pcm = (np.clip(src, -1.0, 1.0) * 32767).astype(np.int16)[None, :]
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = codec_rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    buf.seek(0)
    parts = []
    with av.open(buf, "r") as src_file:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        for frame in src_file.decode(audio=0):
            for f in resampler.resample(frame):
                parts.append(f.to_ndarray()[0])
        for f in resampler.resample(None):
            parts.append(f.to_ndarray()[0])
    decoded = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
    return _fit_length(decoded, y.shape[0])


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """Codec delay and frame padding change the length: trim or zero-pad to `n`."""
    return y[:n] if y.shape[0] >= n else np.pad(y, (0, n - y.shape[0]))


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS 1/f noise `(n,)`: white noise shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.arange(spectrum.shape[0], dtype=np.float64)
    freqs[0] = 1.0
    pink = np.fft.irfft(spectrum / np.sqrt(freqs), n)
    return (pink / (np.sqrt(np.mean(pink**2)) + 1e-12)).astype(np.float32)


def _noise(y: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    power = float(np.mean(y.astype(np.float64) ** 2))
    if power == 0.0:
        return y
    scale = math.sqrt(power / 10 ** (snr_db / 10))
    return y + scale * pink_noise(y.shape[0], rng)


def _pitch(y: np.ndarray, semitones: float, _rng: np.random.Generator) -> np.ndarray:
    return librosa.effects.pitch_shift(y, sr=RATE, n_steps=semitones)


def _speed(y: np.ndarray, factor: float, _rng: np.random.Generator) -> np.ndarray:
    # Read at `factor` times the rate: shorter (factor > 1) and higher, as a faster tape.
    return librosa.resample(y, orig_sr=RATE * factor, target_sr=RATE)


def room_impulse(rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse `(n,)`: a unit direct path, then decaying noise (-60 dB at
    `rt60_s`) from 5 ms on, at 0.3 of the direct energy."""
    n = int(rt60_s * RATE)
    t = np.arange(n) / RATE
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60_s)  # ln(1000): -60 dB
    tail[: int(0.005 * RATE)] = 0.0
    tail *= math.sqrt(0.3 / (np.sum(tail**2) + 1e-12))
    tail[0] = 1.0
    return tail.astype(np.float32)


def _reverb(y: np.ndarray, rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    wet = signal.fftconvolve(y, room_impulse(rt60_s, rng))[: y.shape[0]]
    peak = float(np.max(np.abs(wet))) if wet.size else 0.0
    return wet / peak * float(np.max(np.abs(y))) if peak > 0 else wet


def _gain(y: np.ndarray, db: float, _rng: np.random.Generator) -> np.ndarray:
    return y * 10 ** (db / 20)


SHIFTS: dict[str, Callable[[np.ndarray, float, np.random.Generator], np.ndarray]] = {
    "telephone": _telephone,
    "mp3": _codec("libmp3lame", 24_000),
    "opus": _codec("libopus", 48_000),
    "noise": _noise,
    "pitch": _pitch,
    "speed": _speed,
    "reverb": _reverb,
    "gain": _gain,
}


@dataclass(frozen=True)
class Shift:
    """One shift: `kind` (a key of SHIFTS) and its parameter."""

    kind: str
    param: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in SHIFTS:
            raise ValueError(f"unknown shift {self.kind!r}; known: {', '.join(SHIFTS)}")

    @property
    def name(self) -> str:
        units = {
            "mp3": "kbps",
            "opus": "kbps",
            "noise": "dB",
            "pitch": "st",
            "speed": "x",
            "gain": "dB",
        }
        if self.kind == "telephone":
            return "telephone"
        if self.kind == "reverb":
            return f"reverb_rt60_{self.param:g}s"
        return f"{self.kind}_{self.param:+g}{units.get(self.kind, '')}".replace("+", "")

    def apply(self, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = SHIFTS[self.kind](np.asarray(y, dtype=np.float32), self.param, rng)
        return np.clip(out, -1.0, 1.0).astype(np.float32)


# The robustness suite (docs/TRAINING.md): each applied alone to the clean test clips.
SUITE: tuple[Shift, ...] = (
    Shift("telephone"),
    Shift("mp3", 32),
    Shift("noise", 20),
    Shift("noise", 10),
    Shift("noise", 5),
    Shift("pitch", 3),
    Shift("pitch", -3),
    Shift("speed", 0.9),
    Shift("speed", 1.1),
    Shift("reverb", 0.5),
)


@dataclass(frozen=True)
class Augmentation:
    """Training copies: each copy applies up to `max_chain` shifts drawn at random, each
    with its parameter drawn uniformly from its range (`ranges`: kind -> [low, high];
    telephone's range is ignored). Part of the feature cache key."""

    copies: int = 0  # augmented copies per training clip (0: none)
    max_chain: int = 2
    ranges: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {
            "speed": (0.9, 1.1),
            "pitch": (-2.5, 2.5),
            "noise": (5.0, 30.0),
            "reverb": (0.2, 0.8),
            "telephone": (0.0, 0.0),
            "mp3": (24.0, 64.0),
            "opus": (12.0, 32.0),
            "gain": (-12.0, 6.0),
        }
    )

    def __post_init__(self) -> None:
        for kind in self.ranges:
            Shift(kind)  # raises for an unknown kind
        if self.copies < 0 or self.max_chain < 1:
            raise ValueError("augmentation: copies must be >= 0 and max_chain >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def chain(self, rng: np.random.Generator) -> list[Shift]:
        """A random chain of distinct shifts, in a canonical order (speed and pitch act on
        the voice, then the room, then the channel, then the level)."""
        kinds = sorted(self.ranges)
        k = int(rng.integers(1, self.max_chain + 1))
        picked = set(rng.choice(kinds, size=min(k, len(kinds)), replace=False).tolist())
        order = ["speed", "pitch", "reverb", "noise", "telephone", "mp3", "opus", "gain"]
        out = []
        for kind in order:
            if kind in picked:
                low, high = self.ranges[kind]
                out.append(Shift(kind, round(float(rng.uniform(low, high)), 3)))
        return out

    def apply(self, y: np.ndarray, seed: int) -> tuple[np.ndarray, list[Shift]]:
        """One augmented copy of `y` from `seed`, and the chain applied."""
        rng = np.random.default_rng(seed)
        shifts = self.chain(rng)
        for s in shifts:
            y = s.apply(y, rng)
        return y, shifts
