"""Evaluation reports: JSON, Markdown and PNG plots (per-type bars, missing-rate curve,
confusion matrix, ablation table). Files are written to a temp name, then renamed
(`model.files.atomic_write_bytes`: world-readable, like the bundle's files)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from model.files import atomic_write_bytes

HEADLINE = {"classification": ("accuracy", "weighted_f1"), "regression": ("acc2_non0", "mae")}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers or CI
    import matplotlib.pyplot as plt

    return plt


def _save_fig(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_per_type(result: dict[str, Any], path: Path) -> None:
    plt = _plt()
    m1, _ = HEADLINE[result["task"]]
    ablation = result.get("ablation", {"full": result["per_type"]})
    types = list(result["per_type"])
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(types)), 3.6))
    width = 0.8 / max(1, len(ablation))
    for k, (variant, per_type) in enumerate(ablation.items()):
        vals = [per_type.get(t, {}).get(m1, np.nan) for t in types]
        ax.bar(np.arange(len(types)) + k * width, vals, width, label=variant)
    ax.set_xticks(np.arange(len(types)) + 0.4 - width / 2, types, rotation=20)
    ax.set_ylabel(m1)
    ax.set_title(f"{result['pack']}: {m1} per missing type (test split)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars
    _save_fig(fig, path)


def plot_missing_rate(result: dict[str, Any], path: Path) -> None:
    plt = _plt()
    m1, _ = HEADLINE[result["task"]]
    rates = sorted(result["missing_rate"], key=float)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot([float(r) for r in rates], [result["missing_rate"][r][m1] for r in rates], marker="o")
    ax.set_xlabel("test missing rate")
    ax.set_ylabel(m1)
    ax.set_title(f"{result['pack']}: robustness to missing modalities")
    _save_fig(fig, path)


def plot_confusion(matrix: list[list[int]], labels: list[str], title: str, path: Path) -> None:
    plt = _plt()
    cm = np.asarray(matrix, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1 + 0.7 * len(labels), 0.8 + 0.7 * len(labels)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i, j in np.ndindex(cm.shape):
        ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    _save_fig(fig, path)


def markdown(result: dict[str, Any]) -> str:
    m1, m2 = HEADLINE[result["task"]]
    lines = [
        f"# Evaluation: {result['pack']}",
        "",
        f"- data: {result['data']}; split: {result['split']}; seed: {result['seed']}",
        f"- task: {result['task']}"
        + (f" ({', '.join(result['labels'])})" if result.get("labels") else ""),
        "",
        "## Per missing type (fixed, seeded patterns)",
        "",
        f"| missing type | n | {m1} | {m2} |",
        "|---|---|---|---|",
    ]
    for t, m in result["per_type"].items():
        lines.append(f"| {t} | {m['n']} | {m[m1]:.4f} | {m[m2]:.4f} |")
    if result.get("missing_rate"):
        lines += [
            "",
            "## Across test missing rates",
            "",
            f"| rate | n | {m1} | {m2} |",
            "|---|---|---|---|",
        ]
        for r, m in sorted(result["missing_rate"].items(), key=lambda kv: float(kv[0])):
            lines.append(f"| {float(r):.1f} | {m['n']} | {m[m1]:.4f} | {m[m2]:.4f} |")
    if result.get("ablation"):
        variants = list(result["ablation"])
        lines += [
            "",
            f"## Ablation ({m1}; the paper's Table 3 on our data)",
            "",
            "| missing type | " + " | ".join(variants) + " |",
            "|---|" + "---|" * len(variants),
        ]
        for t in result["per_type"]:
            vals = [result["ablation"][v].get(t, {}).get(m1) for v in variants]
            lines.append(
                f"| {t} | " + " | ".join("n/a" if x is None else f"{x:.4f}" for x in vals) + " |"
            )
    lines += ["", "Plots: `per_type.png`, `missing_rate.png`, `confusion_*.png`.", ""]
    return "\n".join(lines)


def write_report(result: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write `eval.json`, `report.md` and the plots into `out_dir`; returns the paths."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / "eval.json", "markdown": out_dir / "report.md"}
    atomic_write_bytes(paths["json"], json.dumps(result, indent=2).encode("utf-8"))
    atomic_write_bytes(paths["markdown"], markdown(result).encode("utf-8"))
    paths["per_type"] = out_dir / "per_type.png"
    plot_per_type(result, paths["per_type"])
    if result.get("missing_rate"):
        paths["missing_rate"] = out_dir / "missing_rate.png"
        plot_missing_rate(result, paths["missing_rate"])
    if result["task"] == "classification":
        for t, m in result["per_type"].items():
            p = out_dir / f"confusion_{t.lower()}.png"
            plot_confusion(m["confusion"], result["labels"], f"{result['pack']}: {t}", p)
            paths[f"confusion_{t}"] = p
    return paths
