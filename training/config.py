"""Run configuration: a TOML file plus `--set section.key=value` overrides.

Sections: top-level run settings, `[model]` (ModelConfig fields except dims, lengths,
task and output_dim, which come from the features and the task), `[pretrain]` and
`[tune]` (TrainConfig fields), `[data]` and `[packs.<name>]`.
"""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from model.layout import ENCODERS_DIR, REPO_BUNDLE_DIR, REPO_DIR
from training.augment import Augmentation
from training.trainer import TrainConfig


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says where."""


@dataclass(frozen=True)
class DataConfig:
    source: str = "corpora"  # corpora (../shared/data MELD + RAVDESS) | manifest | pickle
    data_dir: str = "../shared/data"
    cache_dir: str = ".cache/features"
    manifest: str = ""
    pickle: str = ""
    labels: tuple[str, ...] = ()  # manifest source: the closed label set
    pairs_per_audio_train: int = 3  # label-conditioned text+audio pairs per training clip
    pairs_per_audio_eval: int = 1
    # Rows with speech but no text get its transcript as their text (when the ASR gate
    # passes it), as the service does for requests: packs learn from real transcripts.
    transcribe: bool = True
    # Augmented copies of each training clip's audio (training/augment.py): up to
    # `augment_max_chain` shifts drawn from `augment_ranges` (kind -> [low, high]; empty:
    # the defaults). Only the train split is augmented; 0 copies: none.
    augment_copies: int = 0
    augment_max_chain: int = 2
    augment_ranges: dict[str, Any] = field(default_factory=dict)

    def augmentation(self) -> Augmentation:
        ranges = {k: (float(v[0]), float(v[1])) for k, v in self.augment_ranges.items()}
        if ranges:
            return Augmentation(self.augment_copies, self.augment_max_chain, ranges)
        return Augmentation(self.augment_copies, self.augment_max_chain)


@dataclass(frozen=True)
class PackConfig:
    name: str
    task: str  # corpora: sentiment | emotion; else free text recorded in the manifest
    version: str = "1.0.0"
    description: str = ""
    # Evaluation baselines trained beside the pack: "full" = the paper's Table 3 (no
    # prompts, and each prompt kind off in turn), "baseline" = no prompts only, "none".
    ablation: str = "baseline"
    # How a face-only request is answered when the pack was never trained on video:
    # expression -> label (or {label: weight}); see model/expressions.py. None: 422.
    face_expression_map: dict[str, Any] | None = None


@dataclass(frozen=True)
class RunConfig:
    seed: int = 0
    out: str = str(REPO_BUNDLE_DIR)
    encoders: str = ""  # the encoders folder; "" = <out>/encoders
    eval_out: str = str(REPO_DIR / "docs" / "eval")
    model: dict[str, Any] = field(default_factory=dict)
    pretrain: TrainConfig = TrainConfig(missing_rate=0.3)
    pretrain_task: str = "emotion"
    tune: TrainConfig = TrainConfig()
    data: DataConfig = DataConfig()
    packs: tuple[PackConfig, ...] = ()
    ablation_epochs: int = 0  # epochs of each ablation variant; 0 = same as tune.epochs

    @property
    def encoders_dir(self) -> Path:
        return Path(self.encoders) if self.encoders else Path(self.out) / ENCODERS_DIR


def _coerce(section: str, cls: type, values: dict[str, Any]) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - known.keys())
    if unknown:
        raise ConfigError(f"[{section}]: unknown keys {unknown}; known: {sorted(known)}")
    out = {}
    for k, v in values.items():
        out[k] = tuple(v) if isinstance(v, list) else v
    return cls(**out)


def _set(tree: dict[str, Any], dotted: str, raw: str) -> None:
    try:
        value: Any = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw  # a bare word is a string
    *path, key = dotted.split(".")
    node = tree
    for part in path:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {part} is not a section")
    node[key] = value


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read `path` (TOML; None = defaults), apply `key.sub=value` overrides, validate."""
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            tree = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"{path}: {e}") from e
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        k, v = item.split("=", 1)
        _set(tree, k.strip(), v.strip())
    packs = tree.pop("packs", {})
    base = RunConfig()
    try:
        cfg = replace(
            _coerce("run", RunConfig, {k: v for k, v in tree.items() if not isinstance(v, dict)}),
            model=dict(tree.get("model", {})),
            pretrain=_coerce(
                "pretrain", TrainConfig, {**base.pretrain.to_dict(), **tree.get("pretrain", {})}
            ),
            tune=_coerce("tune", TrainConfig, tree.get("tune", {})),
            data=_coerce("data", DataConfig, tree.get("data", {})),
            packs=tuple(
                _coerce(f"packs.{n}", PackConfig, {"name": n, **p}) for n, p in packs.items()
            ),
        )
    except TypeError as e:
        raise ConfigError(str(e)) from e
    for p in cfg.packs:
        if p.ablation not in ("full", "baseline", "none"):
            raise ConfigError(f"[packs.{p.name}] ablation must be full, baseline or none")
    try:
        cfg.data.augmentation()
    except (ValueError, TypeError, IndexError) as e:
        raise ConfigError(f"[data] augment_*: {e}") from e
    if cfg.data.source not in ("corpora", "manifest", "pickle"):
        raise ConfigError(
            f"[data] source must be corpora, manifest or pickle, got {cfg.data.source!r}"
        )
    return cfg
