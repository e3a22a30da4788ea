import json
from pathlib import Path

import numpy as np

from training.metrics import classification_metrics
from training.report import write_report


def test_report_files_and_content(tmp_path: Path) -> None:
    labels = ["negative", "neutral", "positive"]
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 50)
    per_type = {
        "TEXT_ONLY": classification_metrics(y, y, labels),
        "AUDIO_ONLY": classification_metrics(y, rng.integers(0, 3, 50), labels),
    }
    result = {
        "pack": "sentiment",
        "task": "classification",
        "labels": labels,
        "data": "unit test",
        "split": "test",
        "seed": 0,
        "per_type": per_type,
        "missing_rate": {"0.0": per_type["TEXT_ONLY"], "0.7": per_type["AUDIO_ONLY"]},
        "ablation": {"no_prompts": {"TEXT_ONLY": per_type["AUDIO_ONLY"]}, "full": per_type},
    }
    paths = write_report(result, tmp_path / "out")
    assert json.loads(paths["json"].read_text()) == result
    md = paths["markdown"].read_text()
    assert "| TEXT_ONLY | 50 | 1.0000 | 1.0000 |" in md
    assert "| AUDIO_ONLY | n/a |" in md  # ablation variant without that type
    for key in ("per_type", "missing_rate", "confusion_TEXT_ONLY", "confusion_AUDIO_ONLY"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
    # published like the bundle's files: readable by the image's non-root user
    assert {p.stat().st_mode & 0o777 for p in paths.values()} == {0o644}
