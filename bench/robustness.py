"""The packs' audio-only weighted F1 on RAVDESS test actors (21-24), clean and shifted.

Starts `mplmm serve` on the bundle with transcription off (audio only, as the missing type
`audio_only`), sends every test clip of each pack's task clean and under each shift of the
robustness suite (training/augment.py: SUITE; each clip's shift seeded by its index) as a
16 kHz WAV to POST /predict, and scores the answers. Writes one JSON per packs' version
(the version the server serves) and redraws the PNG from every JSON in the folder, so old
and new packs sit side by side. `--update-cards` writes the table into each measured
pack's MODEL_CARD.md.

    .venv/bin/python bench/robustness.py [--update-cards] [--out docs/eval/robustness]
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.append(str(REPO / "bench"))

from harness import SHARED, Server, multipart  # noqa: E402

from training.augment import SUITE  # noqa: E402
from training.cards import ROBUSTNESS_HEADING, robustness_section, with_section  # noqa: E402
from training.data.corpora import Task, ravdess_manifest  # noqa: E402
from training.data.manifest import Split  # noqa: E402

ACTORS = {"test": "21-24", "valid": "19-20"}


def predict(base: str, pack: str, y: np.ndarray) -> str:
    buf = io.BytesIO()
    sf.write(buf, y, 16_000, format="WAV", subtype="PCM_16")
    body, ctype = multipart(
        {"pack": pack, "transcribe": "false"}, {"audio": ("a.wav", buf.getvalue(), "audio/wav")}
    )
    req = urllib.request.Request(
        f"{base}/predict", data=body, headers={"Content-Type": ctype}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            answer = json.loads(r.read())
    except urllib.error.HTTPError as e:
        error = e.read().decode()
        if e.code == 422 and json.loads(error)["error"]["code"] == "no_usable_modality":
            return "<absent>"  # e.g. the VAD heard no speech: a wrong answer, counted apart
        raise SystemExit(f"/predict answered {e.code}: {error}") from e
    return str(answer["label"]) if answer["missing_type"]["present"] == ["audio"] else "<absent>"


def weighted_f1(truth: list[str], pred: list[str]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(truth, pred, average="weighted", labels=sorted(set(truth))))


def plot(folder: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reports = [
        json.loads(p.read_text()) for p in sorted(folder.glob("*.json")) if "-" not in p.stem
    ]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), sharey=True)
    for ax, task in zip(axes, ("sentiment", "emotion"), strict=True):
        names = ["clean", *[s.name for s in SUITE]]
        width = 0.8 / max(len(reports), 1)
        for k, rep in enumerate(reports):
            scores = rep["packs"][task]["weighted_f1"]
            xs = np.arange(len(names)) + k * width
            ax.bar(xs, [scores.get(n, np.nan) for n in names], width, label=f"packs {rep['tag']}")
        ax.set_xticks(np.arange(len(names)) + width * (len(reports) - 1) / 2)
        ax.set_xticklabels(names, rotation=45, ha="right")
        ax.set_title(f"{task}: audio-only weighted F1, RAVDESS actors 21-24")
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    out = folder / "robustness.png"
    fig.savefig(out, dpi=110)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--split",
        choices=("test", "valid"),
        default="test",
        help="test: actors 21-24 (the report); valid: actors 19-20, to choose training "
        "settings without looking at the test actors (writes <version>-valid.json)",
    )
    parser.add_argument("--update-cards", action="store_true", help="write the model cards' table")
    parser.add_argument("--bundle", type=Path, default=REPO / "bundle")
    parser.add_argument("--out", type=Path, default=REPO / "docs/eval/robustness")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "data": f"RAVDESS speech, actors {ACTORS[args.split]} ({args.split} split), audio "
        "only, transcription off",
        "shifts": [s.name for s in SUITE],
        "packs": {},
    }
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        packs = Path(tmp) / "packs"
        shutil.copytree(args.bundle / "packs", packs)
        server = Server(args.bundle, packs, asr="off")
        try:
            ready = server.wait_ready()
            versions = {p["name"]: p["version"] for p in ready["packs"]}
            if len({versions[t.value] for t in (Task.SENTIMENT, Task.EMOTION)}) != 1:
                raise SystemExit(f"the two packs' versions differ: {versions}")
            report["tag"] = versions[Task.SENTIMENT.value]
            for task in (Task.SENTIMENT, Task.EMOTION):
                rows = [r for r in ravdess_manifest(SHARED, task) if r.split is Split(args.split)]
                clean = [sf.read(r.audio, dtype="float32")[0] for r in rows if r.audio]
                truth = [r.label for r in rows]
                scores: dict[str, float] = {}
                absent: dict[str, int] = {}
                for shift in (None, *SUITE):
                    name = "clean" if shift is None else shift.name
                    pred = []
                    for i, y in enumerate(clean):
                        z = y if shift is None else shift.apply(y, np.random.default_rng(1000 + i))
                        pred.append(predict(server.base, task.value, z))
                    scores[name] = round(weighted_f1(truth, pred), 4)
                    absent[name] = pred.count("<absent>")
                    sys.stderr.write(f"{task.value} {name}: {scores[name]}\n")
                shifted = [v for n, v in scores.items() if n != "clean"]
                report["packs"][task.value] = {
                    "clips": len(clean),
                    "weighted_f1": scores,
                    "mean_shifted": round(float(np.mean(shifted)), 4),
                    "mean_drop": round(scores["clean"] - float(np.mean(shifted)), 4),
                    "audio_absent": absent,
                }
        finally:
            server.stop()
    report["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    name = report["tag"] + ("" if args.split == "test" else "-valid")
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(args.out)
    if args.update_cards and args.split == "test":
        for task in report["packs"]:
            card = args.bundle / "packs" / task / report["tag"] / "MODEL_CARD.md"
            text = card.read_text(encoding="utf-8")
            card.write_text(
                with_section(text, ROBUSTNESS_HEADING, robustness_section(report, task)),
                encoding="utf-8",
            )
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
