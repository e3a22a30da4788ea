"""Which audio features carry emotion across acoustic shifts: a linear probe on RAVDESS.

For every RAVDESS speech clip, and for the test actors (21-24) under each shift of the
robustness suite (training/augment.py: SUITE), it computes two frame-feature sets over the
clip's speech span and pools each to mean and standard deviation over frames:

- `librosa`: the served audio features (service.features.audio: frame_features, 67 dims);
- `whisper`: Whisper tiny.en's encoder output (384 dims at 50 frames/s), CTranslate2 int8,
  encoding the speech span padded to a whole number of 2 s (not Whisper's 30 s window).

A logistic regression per task (sentiment, emotion: the packs' label sets) is fitted on
actors 01-20 with C chosen on actors 19-20 (fitted on 01-18), never on the test actors,
and scored (weighted F1) on actors 21-24 clean and shifted. Normalisation variants of the
whisper set are scored with the same C. A description of the features, not a test.

    .venv/bin/python bench/audio_probe.py [--out docs/eval/audio/probe.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from librosa_frames import LibrosaSpec, frame_features  # noqa: E402

from service.features.vad import VoiceActivity  # noqa: E402
from service.features.whisper import WHISPER_TINY_EN  # noqa: E402
from training.augment import SUITE  # noqa: E402
from training.data.corpora import RAVDESS_EMOTIONS  # noqa: E402

PAD_FRAMES = 200  # mel frames (10 ms) per 2 s
CS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


class Features:
    def __init__(self) -> None:
        from faster_whisper import WhisperModel

        self.whisper = WhisperModel(
            str(WHISPER_TINY_EN.verify()), device="cpu", compute_type="int8", cpu_threads=2
        )
        self.vad = VoiceActivity()
        self.spec = LibrosaSpec()

    def whisper_frames(self, y: np.ndarray) -> np.ndarray:
        mel = self.whisper.feature_extractor(y, padding=0)  # (80, n)
        n = mel.shape[1]
        target = min(3000, int(np.ceil(n / PAD_FRAMES) * PAD_FRAMES))
        mel = np.ascontiguousarray(np.pad(mel, ((0, 0), (0, max(target - n, 0))))[:, :target])
        out = np.array(self.whisper.encode(mel))[0]  # (target / 2, 384)
        return out[: max(1, n // 2)]

    def pooled(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        segments = self.vad.segments(y)
        if segments:
            y = y[int(segments[0][0] * 16000) : int(segments[-1][1] * 16000)]
        lib = frame_features(y, self.spec).frames
        if lib.shape[0] == 0:
            lib = np.zeros((1, self.spec.dim), np.float32)
        w = self.whisper_frames(y)
        return (
            np.concatenate([lib.mean(0), lib.std(0)]),
            np.concatenate([w.mean(0), w.std(0)]),
        )


def choose_c(x_fit: np.ndarray, y_fit: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> float:
    """The regularisation with the best validation weighted F1 (validation actors only)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_fit)

    def score(c: float) -> float:
        m = LogisticRegression(C=c, max_iter=3000).fit(scaler.transform(x_fit), y_fit)
        return float(f1_score(y_val, m.predict(scaler.transform(x_val)), average="weighted"))

    return max(CS, key=score)


def labels(codes: np.ndarray, task: str) -> np.ndarray:
    col = 0 if task == "emotion" else 1
    return np.array([RAVDESS_EMOTIONS[f"{c:02d}"][col] or "" for c in codes])


def main() -> int:
    import soundfile as sf
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import StandardScaler

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/ravdess-speech-16k")
    parser.add_argument("--out", type=Path, default=REPO / "docs/eval/audio/probe.json")
    args = parser.parse_args()
    clips = sorted(args.data.glob("Actor_*/*.flac"))
    if not clips:
        sys.stderr.write(f"no RAVDESS clips under {args.data}\n")
        return 2
    codes = np.array([int(c.stem.split("-")[2]) for c in clips])
    actors = np.array([int(c.stem.split("-")[6]) for c in clips])
    feats = Features()
    t0 = time.perf_counter()
    data: dict[str, dict[str, np.ndarray]] = {}
    for shift in (None, *SUITE):
        name = "clean" if shift is None else shift.name
        rows = []
        for i, clip in enumerate(clips):
            if shift is not None and actors[i] < 21:
                continue
            y, _ = sf.read(clip, dtype="float32")
            if shift is not None:
                y = shift.apply(y, np.random.default_rng(1000 + i))
            rows.append((*feats.pooled(y), codes[i], actors[i]))
        data[name] = {
            "librosa": np.stack([r[0] for r in rows]),
            "whisper": np.stack([r[1] for r in rows]),
            "code": np.array([r[2] for r in rows]),
            "actor": np.array([r[3] for r in rows]),
        }
        sys.stderr.write(f"{name}: {len(rows)} clips, {time.perf_counter() - t0:.0f} s\n")

    def variant(d: dict[str, np.ndarray], which: str) -> np.ndarray:
        if which == "librosa":
            return d["librosa"]
        if which == "librosa+whisper":
            return np.concatenate([d["librosa"], d["whisper"]], axis=1)
        w = d["whisper"]
        if which == "whisper":
            return w
        if which == "whisper, per-utterance mean removed":
            return w[:, 384:]  # removing each clip's mean leaves only the spread
        if which == "whisper, per-speaker mean removed (all of a speaker's clips)":
            out = w.copy()
            for a in np.unique(d["actor"]):
                out[d["actor"] == a, :384] -= w[d["actor"] == a, :384].mean(0)
            return out
        raise ValueError(which)

    variants = (
        "librosa",
        "whisper",
        "librosa+whisper",
        "whisper, per-utterance mean removed",
        "whisper, per-speaker mean removed (all of a speaker's clips)",
    )
    report: dict[str, object] = {
        "data": "RAVDESS speech 16 kHz; fit actors 01-20, C on 19-20, test 21-24",
        "metric": "weighted F1 of a logistic regression on mean+std pooled frames",
        "extract_seconds": round(time.perf_counter() - t0, 1),
        "results": {},
    }
    results: dict[str, dict[str, object]] = {}
    for task in ("sentiment", "emotion"):
        for which in variants:
            x, d = variant(data["clean"], which), data["clean"]
            y, a = labels(d["code"], task), d["actor"]
            keep = y != ""
            fit, val = (a <= 18) & keep, (a >= 19) & (a <= 20) & keep
            best_c = choose_c(x[fit], y[fit], x[val], y[val])
            train = (a <= 20) & keep
            scaler = StandardScaler().fit(x[train])
            model = LogisticRegression(C=best_c, max_iter=3000).fit(
                scaler.transform(x[train]), y[train]
            )
            scores = {}
            for name, ds in data.items():
                xs, ys = variant(ds, which), labels(ds["code"], task)
                k = (ys != "") & (ds["actor"] >= 21)
                pred = model.predict(scaler.transform(xs[k]))
                scores[name] = round(float(f1_score(ys[k], pred, average="weighted")), 4)
            shifted = [v for n, v in scores.items() if n != "clean"]
            results[f"{task} / {which}"] = {
                "C": best_c,
                "clean": scores["clean"],
                "mean_shifted": round(float(np.mean(shifted)), 4),
                "mean_drop": round(scores["clean"] - float(np.mean(shifted)), 4),
                "per_shift": {n: v for n, v in scores.items() if n != "clean"},
            }
    report["results"] = results
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
