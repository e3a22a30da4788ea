"""A tiny run configuration for the training CLI tests: a d=8 model, two epochs, the
manifest at <root>/data.csv with labels neg/pos, outputs under <root>."""

from pathlib import Path

ENCODERS = Path(__file__).resolve().parents[3] / "bundle" / "encoders"


def write_run_config(root: Path, packs: str) -> Path:
    """<root>/run.toml with the given [packs.*] sections appended."""
    path = root / "run.toml"
    path.write_text(
        f"""
out = "{root / "bundle"}"
encoders = "{ENCODERS}"
eval_out = "{root / "eval"}"
pretrain_task = "toy"
[model]
d = 8
heads = 2
layers = 1
self_layers = 1
prompt_length = 2
[pretrain]
epochs = 2
batch_size = 8
[tune]
epochs = 2
batch_size = 8
[data]
source = "manifest"
manifest = "{root / "data.csv"}"
labels = ["neg", "pos"]
cache_dir = "{root / "cache"}"
"""
        + packs,
        encoding="utf-8",
    )
    return path
