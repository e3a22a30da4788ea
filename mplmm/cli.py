"""The `mplmm` console script.

Each subcommand lives in its own module, imported only when that subcommand runs, so
`mplmm serve` never imports torch and `mplmm --help` stays fast. A command module
provides `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("service.cli.serve", "serve the HTTP API (default bundle unless configured)"),
    "predict": ("service.cli.predict", "run /predict's pipeline locally and print its JSON"),
    "extract": ("service.features.cli", "extract features from media and print a JSON summary"),
    "build-encoders": ("training.encoders.cli", "build the ONNX text and face encoders"),
    "train": ("training.cli.train", "pretrain a backbone or tune a prompt pack"),
    "eval": ("training.cli.evaluate", "evaluate a pack per missing type on a test split"),
    "export": ("training.cli.export", "export a backbone checkpoint to ONNX"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mplmm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        _top_parser().parse_args(argv or ["--help"])
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"mplmm {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return int(module.run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
