"""`mplmm predict --timeline --plot out.png`: a timeline drawn with matplotlib.

Each class's score is a step over its segments; every segment is shaded in the colour of
its label; a short snippet of its transcript sits above it. matplotlib is imported here
only (the `plot` extra): the service never needs it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from service.http.schemas import PredictResponse, SegmentOut

SNIPPET_CHARS = 48


def _snippet(text: str | None) -> str | None:
    if not text:
        return None
    short = text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "…"
    return "\n".join(textwrap.wrap(short, 18))


def plot_timeline(body: PredictResponse, out: Path) -> None:
    """Write the timeline of `body` (a /predict response with `timeline`) to `out`."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError as exc:
        raise SystemExit(
            "mplmm predict --plot needs matplotlib: pip install 'mplmm[plot]'"
        ) from exc
    if body.timeline is None:
        raise ValueError("the response has no timeline")
    timed = [s for s in body.timeline.segments if s.start_s is not None and s.end_s is not None]
    labels = _labels(body, timed)
    colours = {lab: plt.get_cmap("tab10")(i % 10) for i, lab in enumerate(labels)}
    end = body.timeline.duration_s or max((s.end_s or 0.0 for s in timed), default=1.0)

    fig, ax = plt.subplots(figsize=(max(8.0, min(24.0, end / 3)), 4.2))
    for seg in timed:
        start, stop = float(seg.start_s or 0.0), float(seg.end_s or 0.0)
        if seg.label is not None:
            ax.axvspan(start, stop, color=colours[seg.label], alpha=0.15, lw=0)
        if seg.scores:
            for lab, value in seg.scores.items():
                ax.hlines(value, start, stop, color=colours[lab], lw=2)
        elif seg.score is not None:
            ax.hlines(seg.score, start, stop, color="black", lw=2)
        snippet = _snippet(seg.text)
        if snippet:
            ax.text((start + stop) / 2, 1.02, snippet, ha="center", va="bottom", fontsize=7)
    regression = any(s.score is not None for s in timed)
    ax.set_xlim(0, end)
    if not regression:
        ax.set_ylim(0, 1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("score" if regression else "probability")
    title = f"{body.pack.name} {body.pack.version}"
    if body.label is not None:
        title += f": whole clip {body.label}"
    ax.set_title(title, pad=44, fontsize=10)
    handles = [Patch(color=colours[lab], label=lab) for lab in labels]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def _labels(body: PredictResponse, timed: list[SegmentOut]) -> list[str]:
    """The pack's labels, in its order: from the scores when there are any."""
    for scores in (body.scores, *(s.scores for s in timed)):
        if scores:
            return list(scores)
    return sorted({s.label for s in timed if s.label is not None})
