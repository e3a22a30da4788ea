"""bench/device_check.sh, the GPU check run on a lent machine, falls back to the CPU: its
quick mode runs here and prints one JSON object with the keys a GPU run fills in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_device_check_quick_on_cpu_prints_the_report() -> None:
    proc = subprocess.run(
        ["bash", "bench/device_check.sh", "--quick", "--device", "cpu", "--batches", "1,4"],
        cwd=REPO,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)  # stdout is the JSON alone
    assert out["device"] == "cpu"
    assert out["gpu"] == {"skipped": "no CUDA device (torch.cuda.is_available() is False)"}
    assert set(out["ort_cuda"]) == {"skipped"}
    for b in ("1", "4"):
        row = out["forward"][b]
        assert row["ours_samples_per_s"] > 0
        assert row["reference_samples_per_s"] > 0
        assert row["ratio_ours_vs_reference"] > 0
        assert row["max_abs_diff_ours_vs_reference"] < 1e-4
        assert out["ort_cpu"][b]["max_abs_diff_vs_torch"] < 1e-4  # the exporter still fits
    for key in ("cuda_vs_cpu_max_abs_diff", "missing", "versions", "skipped_for_time"):
        assert key in out
    assert out["skipped_for_time"] == []
