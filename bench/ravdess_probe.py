"""Linear probe: how much emotion the pooled audio features carry (RAVDESS, by speaker).

Extracts the audio features of every RAVDESS speech clip with `AudioFeatureExtractor`,
pools each clip's `(La, D)` windows to mean and standard deviation over its real steps
(2D values), standardises with training statistics, and fits a logistic regression on
actors 01-20 (C chosen on actors 19-20 with 01-18 fitted); reports the held-out actors
21-24. A description of the features, not a
test threshold. Prints one JSON object.

    .venv/bin/python bench/ravdess_probe.py [--data ../shared/data/ravdess-speech-16k]
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

from service.features.audio import AudioFeatureExtractor, AudioSpec  # noqa: E402

EMOTIONS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]


def pooled_features(clips: list[Path]) -> np.ndarray:
    ex = AudioFeatureExtractor()
    ex.warmup()
    rows = []
    for clip in clips:
        r = ex.extract(clip)
        steps = r.features[r.mask]  # (n, D) real windows
        rows.append(np.concatenate([steps.mean(axis=0), steps.std(axis=0)]))
    return np.stack(rows)  # (N, 2D)


def main() -> int:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix, f1_score
    from sklearn.preprocessing import StandardScaler

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/ravdess-speech-16k")
    args = parser.parse_args()
    clips = sorted(args.data.glob("Actor_*/*.flac"))
    if not clips:
        sys.stderr.write(f"no RAVDESS clips under {args.data}\n")
        return 2
    labels = np.array([int(c.stem.split("-")[2]) - 1 for c in clips])  # 0..7
    actors = np.array([int(c.stem.split("-")[6]) for c in clips])
    t0 = time.perf_counter()
    x = pooled_features(clips)
    extract_s = time.perf_counter() - t0
    train, test = actors <= 20, actors >= 21
    scaler = StandardScaler().fit(x[train])
    out: dict[str, object] = {
        "clips": len(clips),
        "train_clips": int(train.sum()),
        "test_clips": int(test.sum()),
        "split": "actors 01-20 train, 21-24 test (speaker-independent)",
        "features": f"{AudioSpec().name} v{AudioSpec().version}: mean+std of the 50 windows",
        "dim": int(x.shape[1]),
        "extract_seconds": round(extract_s, 1),
    }
    # C is chosen on actors 19-20 (fit on 01-18), never on the test actors.
    fit, val = actors <= 18, (actors >= 19) & (actors <= 20)
    val_scaler = StandardScaler().fit(x[fit])
    val_acc = {}
    for c in (0.01, 0.03, 0.1, 0.3, 1.0):
        m = LogisticRegression(C=c, max_iter=5000).fit(val_scaler.transform(x[fit]), labels[fit])
        val_acc[c] = float((m.predict(val_scaler.transform(x[val])) == labels[val]).mean())
    best_c = max(val_acc, key=lambda c: val_acc[c])
    out["C"] = best_c
    out["validation_accuracy_by_C"] = {str(c): round(a, 4) for c, a in val_acc.items()}
    clf = LogisticRegression(C=best_c, max_iter=5000)
    clf.fit(scaler.transform(x[train]), labels[train])
    pred = clf.predict(scaler.transform(x[test]))
    out["accuracy"] = round(float((pred == labels[test]).mean()), 4)
    out["macro_f1"] = round(float(f1_score(labels[test], pred, average="macro")), 4)
    counts = np.bincount(labels[test], minlength=8)
    out["majority_baseline_accuracy"] = round(float(counts.max() / counts.sum()), 4)
    out["chance_accuracy"] = round(1 / 8, 4)
    out["per_class_recall"] = {
        e: round(float(row[i] / max(row.sum(), 1)), 3)
        for i, (e, row) in enumerate(
            zip(EMOTIONS, confusion_matrix(labels[test], pred), strict=True)
        )
    }
    sys.stdout.write(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
