"""The librosa frame features the packs used up to 1.1.0, kept as the audio probe's baseline.

Per 10 ms frame (25 ms window): 20 MFCCs with deltas and delta-deltas, f0 (YIN) and a
voicing measure, RMS energy, spectral centroid, rolloff and flatness, zero-crossing rate:
67 values, with fixed scales and cepstral mean normalisation per clip, over the clip's
active span. The service now uses Whisper encoder frames (service.features.audio).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import librosa
import numpy as np


@dataclass(frozen=True)
class LibrosaSpec:
    """The parameters of the librosa frame features (the served audio features to 1.1.0)."""

    name: str = "librosa-frames"
    version: str = "1"
    dim: int = 67
    length: int = 32  # La windows; RAVDESS clips (~3.5 s) give ~110 ms per window
    sample_rate: int = 16_000
    n_fft: int = 512
    win_length: int = 400  # 25 ms
    hop_length: int = 160  # 10 ms
    n_mels: int = 40
    n_mfcc: int = 20
    delta_width: int = 9
    f0_min_hz: float = 65.0
    f0_max_hz: float = 500.0
    f0_frame_length: int = 512  # YIN: the longest period (f0_min) must fit in half a frame
    voicing_threshold: float = 0.6  # NCCF at the YIN period above which a frame is voiced
    active_db: float = -60.0  # frame RMS (dBFS) above which a frame is active ...
    active_rel_db: float = 50.0  # ... and within this many dB of the loudest frame
    min_active_s: float = 0.25  # less active audio than this is too short to use
    trim_margin_frames: int = 10
    pooling: str = "mean-uniform-windows"


# Fixed scales that bring each feature group to roughly unit range (docs/FEATURES.md).
_MFCC_SCALE, _DELTA_SCALE, _DELTA2_SCALE = 20.0, 4.0, 2.0
_C0_FACTOR = 4.0  # c0 (log energy) spans about 4x the range of the other coefficients
_F0_REF_HZ = 200.0  # f0 -> log2(f0 / 200): octaves around a mid speaking pitch
_RMS_DB_CENTER, _RMS_DB_SCALE = -40.0, 20.0
_FLATNESS_SCALE = 4.0  # log10 flatness in about [-8, 0]


@dataclass(frozen=True)
class FrameFeatures:
    """`frames (n, D)` float32 over the active span, plus what the report needs."""

    frames: np.ndarray
    active_s: float
    voiced_fraction: float
    reason: str | None


def _voicing(y: np.ndarray, f0: np.ndarray, spec: LibrosaSpec) -> np.ndarray:
    """Normalised cross-correlation between each frame and itself one YIN period later.

    `y` is the segment YIN saw (uncentred frames), `f0` `(n,)` its estimate per frame.
    """
    frames = librosa.util.frame(y, frame_length=spec.f0_frame_length, hop_length=spec.hop_length).T[
        : f0.shape[0]
    ]  # (n, F)
    width = spec.f0_frame_length // 2  # compare `width` samples; period + width fits a frame
    period = np.clip(np.rint(spec.sample_rate / f0), 1, spec.f0_frame_length - width)
    idx = period.astype(np.int64)[:, None] + np.arange(width)[None, :]  # (n, W)
    a = frames[:, :width]
    b = np.take_along_axis(frames, idx, axis=1)
    num = (a * b).sum(axis=1)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1)) + 1e-10
    voicing: np.ndarray = np.clip(num / den, 0.0, 1.0).astype(np.float32)  # (n,)
    return voicing


@functools.lru_cache(maxsize=8)
def _constants(spec: LibrosaSpec) -> tuple[np.ndarray, float]:
    """Mel filterbank `(M, F)` and the Parseval factor turning STFT power into mean square."""
    mel_basis = librosa.filters.mel(sr=spec.sample_rate, n_fft=spec.n_fft, n_mels=spec.n_mels)
    window = librosa.filters.get_window("hann", spec.win_length, fftbins=True)
    return mel_basis.astype(np.float32), spec.n_fft * float((window**2).sum()) / 2.0


def frame_features(y: np.ndarray, spec: LibrosaSpec) -> FrameFeatures:
    """Frame features of 16 kHz mono float32 `y` `(N,)` over its active span."""
    sr, hop = spec.sample_rate, spec.hop_length
    power = (
        np.abs(librosa.stft(y, n_fft=spec.n_fft, hop_length=hop, win_length=spec.win_length)) ** 2
    )  # (F, n)
    mel_basis, norm = _constants(spec)
    # RMS from the power spectrum (Parseval), per frame, in dBFS.
    rms_db = 10.0 * np.log10(
        np.maximum((power[0] / 2 + power[1:].sum(axis=0)) / norm, 1e-12)
    )  # (n,)
    thresh = max(spec.active_db, float(rms_db.max()) - spec.active_rel_db)
    active = rms_db > thresh
    active_s = float(active.sum()) * hop / sr
    if not active.any():
        return FrameFeatures(np.zeros((0, spec.dim), np.float32), 0.0, 0.0, "silent")
    if active_s < spec.min_active_s:
        return FrameFeatures(np.zeros((0, spec.dim), np.float32), active_s, 0.0, "too_short")
    on = np.flatnonzero(active)
    start = max(int(on[0]) - spec.trim_margin_frames, 0)
    stop = min(int(on[-1]) + 1 + spec.trim_margin_frames, power.shape[1])

    # (M, n). A plain C loop, not BLAS: multithreaded OpenBLAS on a matrix this small is
    # 10-100x slower than this when the cores are busy (measured: 11 ms vs 1 ms).
    mel = np.einsum("mf,ft->mt", mel_basis, power, optimize=False)
    mfcc = librosa.feature.mfcc(
        S=librosa.power_to_db(mel, ref=1.0, top_db=None), n_mfcc=spec.n_mfcc
    )
    mfcc = mfcc - mfcc[:, active].mean(axis=1, keepdims=True)  # per-clip CMN (channel, speaker)
    d1 = librosa.feature.delta(mfcc, width=spec.delta_width, order=1)
    d2 = librosa.feature.delta(mfcc, width=spec.delta_width, order=2)

    mag = np.sqrt(power[:, start:stop])
    centroid = librosa.feature.spectral_centroid(S=mag, sr=sr, n_fft=spec.n_fft)[0]
    rolloff = librosa.feature.spectral_rolloff(S=mag, sr=sr, n_fft=spec.n_fft)[0]
    flatness = librosa.feature.spectral_flatness(S=mag)[0]

    # YIN, the costliest step, runs on the active span only. Frames are centred like the
    # STFT's: the segment carries half a YIN frame of real context (zeros at clip edges).
    half = spec.f0_frame_length // 2
    seg = np.pad(y, half)[start * hop : (stop - 1) * hop + 2 * half + 1]
    n = stop - start
    f0 = librosa.yin(
        seg,
        fmin=spec.f0_min_hz,
        fmax=spec.f0_max_hz,
        sr=sr,
        frame_length=spec.f0_frame_length,
        hop_length=hop,
        center=False,
    )[:n]  # (n,)
    voicing = _voicing(seg, f0, spec)
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=spec.win_length, hop_length=hop)[
        0, start:stop
    ]
    voiced = (voicing > spec.voicing_threshold) & active[start:stop]
    log_f0 = np.where(voiced, np.log2(f0 / _F0_REF_HZ), 0.0)

    nyquist = sr / 2.0
    c0 = np.ones(spec.n_mfcc, dtype=np.float32)  # (20,) per-coefficient extra scale
    c0[0] = _C0_FACTOR
    frames = np.concatenate(
        [
            mfcc[:, start:stop].T / (_MFCC_SCALE * c0),  # (n, 20)
            d1[:, start:stop].T / (_DELTA_SCALE * c0),
            d2[:, start:stop].T / (_DELTA2_SCALE * c0),
            np.stack(
                [
                    log_f0,
                    voicing,
                    (rms_db[start:stop] - _RMS_DB_CENTER) / _RMS_DB_SCALE,
                    centroid / nyquist,
                    rolloff / nyquist,
                    np.log10(np.maximum(flatness, 1e-10)) / _FLATNESS_SCALE,
                    zcr,
                ],
                axis=1,
            ),  # (n, 7)
        ],
        axis=1,
    ).astype(np.float32)  # (n, D)
    return FrameFeatures(frames, active_s, float(voiced.mean()), None)
