"""Pack metrics for the manifest, and the model card written beside each pack."""

from __future__ import annotations

from typing import Any

from model.manifest import PackManifest
from training.report import HEADLINE

KEEP = ("n", "accuracy", "weighted_f1", "macro_f1", "mae", "corr", "acc2_non0", "acc7")


def summary_metrics(result: dict[str, Any]) -> dict[str, Any]:
    """The manifest's `metrics`: test split, per missing type, plus the no-prompt baseline."""

    def slim(m: dict[str, Any]) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in m.items() if k in KEEP}

    out: dict[str, Any] = {
        "split": result["split"],
        "data": result["data"],
        "seed": result["seed"],
        "per_type": {t: slim(m) for t, m in result["per_type"].items()},
    }
    if "ablation" in result:
        out["no_prompts_per_type"] = {
            t: slim(m) for t, m in result["ablation"]["no_prompts"].items()
        }
    return out


def model_card(
    manifest: PackManifest,
    result: dict[str, Any],
    seconds: float,
    counts: dict[str, int],
    machine: str,
    notes: tuple[str, ...] = (),
) -> str:
    m1, m2 = HEADLINE[result["task"]]
    trained = ", ".join(m.value for m in manifest.modalities)
    never = [m for m in ("text", "audio", "video") if m not in trained]
    lines = [
        f"# Model card: {manifest.name} {manifest.version}",
        "",
        f"- Task: {manifest.task.value}"
        + (f", labels: {', '.join(manifest.labels)}" if manifest.labels else ""),
        f"- Trained modalities: {trained}. Never trained on: {', '.join(never) or 'none'}; "
        "the service treats such a modality as absent for this pack and says so.",
        *_face_map_lines(manifest),
        f"- Backbone sha256: `{manifest.backbone_sha256}`",
        f"- Feature spec sha256: `{manifest.feature_spec_sha256}`",
        f"- Trainable parameters: {manifest.extra.get('trainable_parameters')} "
        f"({100 * manifest.extra.get('trainable_parameters', 0) / max(1, counts['backbone']):.1f}% "
        f"of the frozen backbone's {counts['backbone']})",
        f"- Training time: {seconds:.0f} s ({machine})",
        f"- Created: {manifest.created}",
        "",
        "## Training data and licences",
        "",
    ]
    for item in manifest.training_data:
        lines.append(f"- {item['name']}: licence {item['licence']}; {item.get('source', '')}")
    for note in notes:
        lines += ["", note]
    lines += [
        "",
        f"## Test-split metrics per missing type ({result['data']}; seed {result['seed']})",
        "",
        f"| missing type | n | {m1} | {m2} | {m1} without prompts |",
        "|---|---|---|---|---|",
    ]
    base = result.get("ablation", {}).get("no_prompts", {})
    for t, m in result["per_type"].items():
        b = base.get(t, {}).get(m1)
        lines.append(
            f"| {t} | {m['n']} | {m[m1]:.4f} | {m[m2]:.4f} | {'n/a' if b is None else f'{b:.4f}'} |"
        )
    lines += ["", "Full report with plots: `docs/eval/" + manifest.name + "/report.md`.", ""]
    return "\n".join(lines)


def _face_map_lines(manifest: PackManifest) -> list[str]:
    """The card's word on face-only requests (the manifest's face_expression_map)."""
    fmap = manifest.face_expression_map
    if fmap is None:
        return ["- Face-only requests: no face_expression_map, so they get 422."]
    parts = [f"{e} -> {v if isinstance(v, str) else v}" for e, v in fmap.items()]
    return [
        "- Face-only requests (no text or audio it can use): answered by the face-expression "
        "model's seven classes through the face_expression_map (" + "; ".join(parts) + "), "
        "reported as `answered_by: face_expression`; not a learnt video modality."
    ]


ROBUSTNESS_HEADING = "## Robustness: audio only under acoustic shifts"


def robustness_section(report: dict[str, Any], task: str) -> str:
    """The card's robustness table from a `bench/robustness.py` report, for `task`."""
    r = report["packs"][task]
    scores = r["weighted_f1"]
    lines = [
        ROBUSTNESS_HEADING,
        "",
        f"Weighted F1 through `POST /predict`, {report['data']}; {r['clips']} clips, each "
        "shift seeded per clip (`bench/robustness.py`). Clips the service judged to have no "
        "usable audio count as wrong.",
        "",
        "| condition | weighted F1 | drop from clean | audio judged absent |",
        "|---|---|---|---|",
    ]
    for name, f1 in scores.items():
        drop = "" if name == "clean" else f"{scores['clean'] - f1:+.4f}"
        lines.append(f"| {name} | {f1:.4f} | {drop} | {r['audio_absent'].get(name, 0)} |")
    lines += [
        f"| mean of the shifts | {r['mean_shifted']:.4f} | {r['mean_drop']:+.4f} | |",
        "",
    ]
    return "\n".join(lines)


def with_section(card: str, heading: str, section: str) -> str:
    """`card` with the section under `heading` replaced by `section` (appended if none)."""
    start = card.find(heading)
    if start < 0:
        return card.rstrip("\n") + "\n\n" + section
    end = card.find("\n## ", start + len(heading))
    rest = "" if end < 0 else card[end + 1 :]
    return card[:start] + section + ("\n" + rest if rest else "")
