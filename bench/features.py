"""Feature extraction speed: real-time factors, text ms per utterance, a peer, peak memory.

Prints one JSON object. Real-time factor (RTF) = wall seconds of compute per second of
media, one request at a time on this machine (2 cores); `*_rtf_cpu` is process CPU
seconds per media second (onnxruntime and OpenCV may use both cores).

- audio: `AudioFeatureExtractor.extract` (decode + features) on RAVDESS clips (real
  speech, 16 kHz FLAC) when ../shared/data is there, else on synthetic speech-like WAVs.
- peer: MMSA-FET's librosa audio extractor on the same files in the same run. The real
  module is used when `mmsa-fet` is importable from --peer-path (install it there with
  `pip install --no-deps --target /tmp/mmsa-fet mmsa-fet`: its package __init__ pulls in
  torch, mediapipe and opensmile, so only its librosa extractor and base class are loaded);
  otherwise its recipe from example_configs/librosa.json is re-created here, and
  `peer_name` says which one ran.
- video: the video engineer's extractor through `FeatureExtractor` on a 640x360, 25 fps
  face clip written by bench/video.py's `write_clip` (null when video is not built).
- text: MiniLM through onnxruntime on MELD utterances (else fixed sentences), batched
  (64) and one at a time.
- speech: Silero VAD over each whole clip, and Whisper tiny.en (int8, CTranslate2) over
  its speech segments, with 1 and 2 CPU threads: seconds of compute per second of audio;
  the audio features' Whisper encoder over each speech span (1 and 2 threads) beside the
  librosa frame features it replaced (bench/librosa_frames.py), per second of span.

    .venv/bin/python bench/features.py [--encoders bundle/encoders] [--clips 120]
"""

from __future__ import annotations

import argparse
import csv
import importlib
import importlib.util
import inspect
import io
import json
import logging
import os
import resource
import sys
import tempfile
import time
import tracemalloc
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from librosa_frames import LibrosaSpec, frame_features  # noqa: E402

from service.features.audio import AudioFeatureExtractor  # noqa: E402
from service.features.extractor import FeatureExtractor  # noqa: E402

DATA = REPO.parent / "shared" / "data"
log = logging.getLogger("bench.features")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall s, process CPU s) of one call."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def audio_files(n: int, tmp: Path) -> tuple[list[Path], str]:
    clips = sorted((DATA / "ravdess-speech-16k").glob("Actor_*/*.flac"))
    if clips:
        step = max(len(clips) // n, 1)
        return clips[::step][:n], f"RAVDESS speech, {min(n, len(clips))} clips (16 kHz FLAC)"
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        t = np.arange(int(16_000 * (3 + (i % 3)))) / 16_000
        f0 = 120 + 10 * (i % 8)
        y = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * 0.05
        y = y * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)) + 0.002 * rng.standard_normal(t.shape)
        path = tmp / f"synthetic_{i}.wav"
        sf.write(path, y.astype(np.float32), 16_000)
        out.append(path)
    return out, f"synthetic speech-like WAVs, {n} clips (RAVDESS not found)"


# MMSA-FET 0.4.1's example_configs/librosa.json (audio part), used when the package is absent.
PEER_CONFIG: dict[str, Any] = {
    "tool": "librosa",
    "sample_rate": 22050,
    "n_fft": 512,
    "hop_lenth": 128,  # sic: the shipped config misspells it, so the default 128 applies
    "features": {
        "chroma_stft": {},
        "chroma_cqt": {},
        "chroma_cens": {},
        "mfcc": {"n_mfcc": 13, "htk": True},
        "rms": {},
        "spectral_centroid": {},
        "spectral_bandwidth": {},
        "spectral_contrast": {},
        "spectral_flatness": {},
        "spectral_rolloff": {},
        "poly_features": {},
        "tonnetz": {},
        "zero_crossing_rate": {},
    },
}


def load_peer(peer_path: Path) -> tuple[Callable[[Path], np.ndarray], str]:
    """MMSA-FET's librosaExtractor with its shipped librosa.json config, or that recipe."""
    pkg_dir = peer_path / "MSA_FET"
    if (pkg_dir / "extractors" / "audio" / "librosa.py").is_file():
        # Register the packages without running their __init__ (torch, mediapipe, ...).
        for name, sub in (
            ("MSA_FET", pkg_dir),
            ("MSA_FET.extractors", pkg_dir / "extractors"),
            ("MSA_FET.extractors.audio", pkg_dir / "extractors" / "audio"),
        ):
            module = types.ModuleType(name)
            module.__path__ = [str(sub)]
            sys.modules.setdefault(name, module)
        mod = importlib.import_module("MSA_FET.extractors.audio.librosa")
        version = "?"
        for dist in peer_path.glob("*.dist-info"):
            version = dist.name.removesuffix(".dist-info").split("-")[1]
        config = json.loads((pkg_dir / "example_configs" / "librosa.json").read_text())["audio"]
        extractor = mod.librosaExtractor(config, logging.getLogger("mmsa-fet"))
        return extractor.extract, f"MMSA-FET {version} librosaExtractor, its librosa.json config"

    import librosa

    sr, n_fft, hop = PEER_CONFIG["sample_rate"], PEER_CONFIG["n_fft"], 128

    def recipe(path: Path) -> np.ndarray:
        y, _ = librosa.load(path, sr=sr)
        feats = []
        for name, kwargs in PEER_CONFIG["features"].items():
            fn = getattr(librosa.feature, name)
            params = inspect.signature(fn).parameters
            kw = dict(kwargs, hop_length=hop)
            if "sr" in params:
                kw["sr"] = sr
            if "n_fft" in params or name == "mfcc":
                kw["n_fft"] = n_fft
            elif "frame_length" in params:
                kw["frame_length"] = n_fft
            feats.append(fn(y=y, **kw).T)
        return np.concatenate(feats, axis=1)

    return recipe, "MMSA-FET 0.4.1 librosa.json recipe re-created (mmsa-fet not importable)"


def bench_audio(ex: AudioFeatureExtractor, files: list[Path], peer: Callable) -> dict[str, Any]:
    duration = sum(sf.info(str(f)).duration for f in files)
    for f in files[:3]:
        ex.extract(f)
        peer(f)
    ours_w = ours_c = peer_w = peer_c = 0.0
    for f in files:  # interleaved, so both see the same machine load
        w, c = _timed(lambda f=f: ex.extract(f))
        ours_w, ours_c = ours_w + w, ours_c + c
        w, c = _timed(lambda f=f: peer(f))
        peer_w, peer_c = peer_w + w, peer_c + c
    return {
        "audio_rtf": ours_w / duration,
        "audio_rtf_cpu": ours_c / duration,
        "audio_ms_per_clip": 1e3 * ours_w / len(files),
        "peer_audio_rtf": peer_w / duration,
        "peer_audio_rtf_cpu": peer_c / duration,
        "audio_media_seconds": round(duration, 1),
    }


def bench_speech(ex: AudioFeatureExtractor, files: list[Path], clips: int) -> dict[str, Any]:
    """VAD and ASR real-time factors on the first `clips` files (per second of audio), and
    the audio features' speech encoder on their speech spans (per second of span) beside
    the librosa frame features it replaced."""
    from service.features.asr import Transcriber
    from service.features.audio_decode import decode_audio
    from service.features.speech_encoder import SpeechEncoder

    files = files[:clips]
    decoded = [decode_audio(f, ex.limits, "audio") for f in files]
    waves = [d.samples for d in decoded if d is not None]
    seconds = sum(len(w) for w in waves) / 16_000
    ex.vad.warmup()
    vad_s, segments = 0.0, []
    for w in waves:
        t = time.perf_counter()
        segments.append(ex.vad.segments(w))
        vad_s += time.perf_counter() - t
    speech = sum(e - s for seg in segments for s, e in seg)
    out: dict[str, Any] = {
        "speech_clips": len(waves),
        "speech_audio_seconds": round(seconds, 1),
        "speech_seconds": round(speech, 1),
        "vad_rtf": vad_s / seconds,
        "vad_ms_per_clip": 1e3 * vad_s / len(waves),
    }
    spans = [
        w[int(seg[0][0] * 16_000) : int(seg[-1][1] * 16_000)]
        for w, seg in zip(waves, segments, strict=True)
        if seg
    ]
    span_s = sum(len(x) for x in spans) / 16_000
    out["speech_span_seconds"] = round(span_s, 1)
    # Before: the librosa frame features the packs used up to 1.1.0, on the same spans.
    before = LibrosaSpec()
    frame_features(spans[0], before)  # numba compiles here
    wall = cpu = 0.0
    for x in spans:
        dw, dc = _timed(lambda x=x: frame_features(x, before))
        wall, cpu = wall + dw, cpu + dc
    out["librosa_frames_rtf"] = wall / span_s
    out["librosa_frames_ms_per_clip"] = 1e3 * wall / len(spans)
    for threads in (1, 2):
        encoder = SpeechEncoder(threads=threads, concurrency=1)
        encoder.warmup()
        wall = cpu = 0.0
        for x in spans:
            dw, dc = _timed(lambda x=x, e=encoder: e.frames(x))
            wall, cpu = wall + dw, cpu + dc
        out[f"audio_encoder_rtf_{threads}t"] = wall / span_s
        out[f"audio_encoder_rtf_cpu_{threads}t"] = cpu / span_s
        out[f"audio_encoder_ms_per_clip_{threads}t"] = 1e3 * wall / len(spans)
    for threads in (1, 2):
        asr = Transcriber(threads=threads)
        asr.warmup()
        wall = cpu = 0.0
        for w, seg in zip(waves, segments, strict=True):
            dw, dc = _timed(lambda w=w, seg=seg, asr=asr: asr.transcribe(w, seg))
            wall, cpu = wall + dw, cpu + dc
        out[f"asr_rtf_{threads}t"] = wall / seconds
        out[f"asr_rtf_cpu_{threads}t"] = cpu / seconds
        out[f"asr_ms_per_clip_{threads}t"] = 1e3 * wall / len(waves)
    return out


def bench_audio_memory(ex: AudioFeatureExtractor, seconds: float) -> dict[str, Any]:
    """Python-heap peak (numpy arrays included) of one request of `seconds` of audio."""
    rng = np.random.default_rng(0)
    t = np.arange(int(16_000 * seconds)) / 16_000
    y = (0.1 * np.sin(2 * np.pi * 150 * t) + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, y, 16_000, format="WAV")
    data = buf.getvalue()
    rss0 = _rss_mb()
    tracemalloc.start()
    wall, _ = _timed(lambda: ex.extract(data))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        f"audio_{int(seconds)}s_request_heap_peak_mb": round(peak / 2**20, 1),
        f"audio_{int(seconds)}s_request_rss_growth_mb": round(_rss_mb() - rss0, 1),
        f"audio_{int(seconds)}s_request_ms": round(wall * 1e3, 1),
    }


def meld_texts(n: int) -> tuple[list[str], str]:
    path = DATA / "meld" / "test_sent_emo.csv"
    if path.is_file():
        with path.open(encoding="utf-8") as f:
            rows = [r["Utterance"] for r in csv.DictReader(f)]
        return rows[:n], f"MELD test utterances, first {n}"
    base = ["Oh my God, I can't believe you did that!", "Okay.", "What are you talking about?"]
    return [base[i % 3] for i in range(n)], "fixed sentences (MELD not found)"


def bench_text(ex: FeatureExtractor, texts: list[str], singles: int) -> dict[str, Any]:
    ex.text.encode_batch(texts[:64])

    def batched() -> None:
        for start in range(0, len(texts), 64):
            ex.text.encode_batch(texts[start : start + 64])

    def one_by_one() -> None:
        for text in texts[:singles]:
            ex.text.encode(text)

    bw, bc = _timed(batched)
    sw, sc = _timed(one_by_one)
    return {
        "text_ms_per_utterance_batched": bw * 1e3 / len(texts),
        "text_ms_per_utterance_single": sw * 1e3 / singles,
        "text_cpu_ms_per_utterance_batched": bc * 1e3 / len(texts),
        "text_cpu_ms_per_utterance_single": sc * 1e3 / singles,
        "text_batch_size": 64,
        "text_utterances": len(texts),
    }


def bench_video(ex: FeatureExtractor, tmp: Path, seconds: float) -> dict[str, Any]:
    if ex.video is None:
        return {"video_rtf": None, "video_note": "no video extractor in this build"}
    spec = importlib.util.spec_from_file_location("bench_video", REPO / "bench" / "video.py")
    if spec is None or spec.loader is None:
        return {"video_rtf": None, "video_note": "bench/video.py (write_clip) not found"}
    bench_video_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_video_mod)
    import cv2
    import skimage.data

    path = tmp / "face.mp4"
    image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    bench_video_mod.write_clip(path, image, seconds)
    ex.video.extract(path)
    runs = [_timed(lambda: ex.video.extract(path)) for _ in range(2)]
    wall = min(r[0] for r in runs)
    cpu = min(r[1] for r in runs)
    result = ex.video.extract(path)
    return {
        "video_rtf": wall / seconds,
        "video_rtf_cpu": cpu / seconds,
        "video_clip": f"640x360 25 fps mp4v, {seconds:g} s, astronaut face pan",
        "video_present": bool(result.present),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", type=Path, default=REPO / "bundle" / "encoders")
    parser.add_argument("--clips", type=int, default=120)
    parser.add_argument("--texts", type=int, default=1024)
    parser.add_argument("--singles", type=int, default=200)
    parser.add_argument("--video-seconds", type=float, default=8.0)
    parser.add_argument("--peer-path", type=Path, default=Path("/tmp/mmsa-fet"))
    parser.add_argument("--speech-clips", type=int, default=60, help="clips for VAD and ASR")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    out: dict[str, Any] = {"load_average_start": list(os.getloadavg())}
    t0 = time.perf_counter()
    ex = FeatureExtractor(args.encoders)
    ex.warmup()
    out["startup_with_warmup_s"] = round(time.perf_counter() - t0, 2)
    out["rss_after_warmup_mb"] = round(_rss_mb(), 1)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        files, out["audio_files"] = audio_files(args.clips, tmp)
        peer, out["peer_name"] = load_peer(args.peer_path)
        out.update(bench_audio(ex.audio, files, peer))
        out["audio_vs_peer_speedup"] = out["peer_audio_rtf"] / out["audio_rtf"]
        out.update(bench_audio_memory(ex.audio, 60.0))
        out.update(bench_speech(ex.audio, files, args.speech_clips))
        texts, out["text_source"] = meld_texts(args.texts)
        out.update(bench_text(ex, texts, args.singles))
        out.update(bench_video(ex, tmp, args.video_seconds))
    out["peak_rss_mb"] = round(_rss_mb(), 1)
    out["load_average_end"] = list(os.getloadavg())
    out["feature_spec_sha256"] = ex.spec.sha256()
    rounded = {k: round(v, 5) if isinstance(v, float) else v for k, v in out.items()}
    sys.stdout.write(json.dumps(rounded, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
