"""Arguments and helpers shared by `mplmm train`, `mplmm eval` and `mplmm export`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from training.config import RunConfig, load_config
from training.data.corpora import Task
from training.sources import Dataset, corpora_dataset, manifest_dataset, pickle_dataset

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.toml"


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="TOML run config")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set tune.epochs=5 (repeatable)",
    )


def run_config(args: argparse.Namespace) -> RunConfig:
    return load_config(args.config, args.overrides)


def dataset_for(run: RunConfig, task: str, extractor: Any) -> Dataset:
    """The configured data source; `task` picks the corpora's label set."""
    if run.data.source == "corpora":
        return corpora_dataset(run.data, Task(task), extractor, run.seed)
    if run.data.source == "manifest":
        return manifest_dataset(run.data, extractor)
    return pickle_dataset(run.data)


def extractor_for(run: RunConfig) -> Any:
    """Feature pickles need no extractor; the other sources use the bundle's encoders."""
    if run.data.source == "pickle":
        return None
    from service.features.extractor import AsrOptions, FeatureExtractor

    # Training owns the machine: transcription may use every core.
    asr = AsrOptions(enabled=run.data.transcribe, threads=os.cpu_count() or 1)
    return FeatureExtractor(run.encoders_dir, asr=asr)
