"""Parsers shared by the deployment checks: Dockerfile stages, .dockerignore matching,
compose interpolation, the agreed `MPLMM_*` names, and the CLI tools CI needs."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY_DOC = REPO / "docs" / "DEPLOY.md"
MPLMM_NAME = re.compile(r"\bMPLMM_[A-Z0-9_]+\b")


# --- Dockerfile ------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str  # upper case, e.g. "RUN"
    args: str  # the rest of the (joined) line


@dataclass
class Stage:
    name: str
    base: str  # the FROM image, build args resolved
    instructions: list[Instruction] = field(default_factory=list)

    def args_of(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        """ENV key=value pairs of this stage (the only ENV form the Dockerfile uses)."""
        out: dict[str, str] = {}
        for line in self.args_of("ENV"):
            for token in line.split():
                key, sep, value = token.partition("=")
                assert sep, f"ENV without '=' is not used here: {line!r}"
                out[key] = value
        return out


def dockerfile_instructions(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    buffer = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        keyword, _, rest = buffer.partition(" ")
        out.append(Instruction(keyword.upper(), " ".join(rest.split())))
        buffer = ""
    assert not buffer, "Dockerfile ends inside a continued instruction"
    return out


def dockerfile_stages(text: str) -> list[Stage]:
    """Stages in order; `FROM ${ARG}` resolved with the global ARG defaults."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for inst in dockerfile_instructions(text):
        if inst.keyword == "ARG" and not stages:
            name, _, default = inst.args.partition("=")
            global_args[name] = default
        elif inst.keyword == "FROM":
            parts = inst.args.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name=name, base=image))
        else:
            assert stages, f"{inst.keyword} before the first FROM"
            stages[-1].instructions.append(inst)
    return stages


def stage_arg(stage: Stage, name: str) -> str:
    for line in stage.args_of("ARG"):
        key, _, default = line.partition("=")
        if key == name:
            return default
    raise KeyError(f"stage {stage.name} has no ARG {name}")


def copy_from(args: str) -> str | None:
    """The `--from=` stage of a COPY instruction, or None for the build context."""
    match = re.search(r"--from=(\S+)", args)
    return match.group(1) if match else None


def copy_sources(args: str) -> list[str]:
    """Source paths of a shell-form COPY (all but the last word, options dropped)."""
    words = [w for w in args.split() if not w.startswith("--")]
    return words[:-1]


# --- .dockerignore ---------------------------------------------------------------------------


def _clean(pattern: str) -> str:
    return pattern.strip().strip("/")


def _pattern_matches(pattern: str, path: str) -> bool:
    """Docker's rule: a pattern matches a path or any of its parent directories; `*` stays
    within one path element and `**` spans any number of them."""
    parts = path.split("/")
    for end in range(1, len(parts) + 1):
        prefix = "/".join(parts[:end])
        regex = ""
        for piece in re.split(r"(\*\*/?|\*|\?|\[[^\]]*\])", pattern):
            if piece.startswith("[") and piece.endswith("]") and len(piece) > 2:
                regex += piece
            elif piece in ("**", "**/"):
                regex += "(?:.*/)?" if piece == "**/" else ".*"
            elif piece == "*":
                regex += "[^/]*"
            elif piece == "?":
                regex += "[^/]"
            else:
                regex += re.escape(piece)
        if re.fullmatch(regex, prefix):
            return True
    return False


def dockerignore_excludes(text: str, path: str) -> bool:
    """Whether the build context leaves `path` out (last matching pattern wins)."""
    excluded = False
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = _clean(line[1:] if negate else line)
        if _pattern_matches(pattern, path):
            excluded = not negate
    return excluded


# --- compose ---------------------------------------------------------------------------------


class ComposeLoader(yaml.SafeLoader):
    """SafeLoader that keeps Compose's `!reset` / `!override` merge tags as markers."""


@dataclass(frozen=True)
class ComposeTag:
    tag: str
    value: Any


def _tagged(loader: yaml.SafeLoader, node: yaml.Node) -> ComposeTag:
    if isinstance(node, yaml.SequenceNode):
        value: Any = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        value = loader.construct_scalar(node)  # type: ignore[arg-type]
    return ComposeTag(node.tag, value)


ComposeLoader.add_constructor("!reset", _tagged)
ComposeLoader.add_constructor("!override", _tagged)


def load_compose(path: Path) -> dict[str, Any]:
    data = yaml.load(path.read_text(), Loader=ComposeLoader)  # noqa: S506 - SafeLoader subclass
    assert isinstance(data, dict)
    return data


def interpolate_defaults(value: str) -> str:
    """Compose `${VAR:-default}` / `${VAR}` with an empty shell: the defaults."""

    def repl(match: re.Match[str]) -> str:
        return match.group(3) or ""

    return re.sub(r"\$\{(\w+)(:?-(.*?))?\}", repl, value)


def parse_duration_s(text: str) -> float:
    """Compose durations such as `30s`, `1m30s`, `500ms`."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    total = 0.0
    pieces = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text) if text else []
    assert pieces, f"empty duration {text!r}"
    assert "".join(n + u for n, u in pieces) == text, f"bad duration {text!r}"
    for number, unit in pieces:
        total += float(number) * units[unit]
    return total


# --- the agreed configuration ----------------------------------------------------------------


def doc_table_names() -> dict[str, str]:
    """`MPLMM_*` name -> default column, from the reference table in docs/DEPLOY.md."""
    names: dict[str, str] = {}
    for line in DEPLOY_DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"`MPLMM_[A-Z0-9_]+`", cells[0]):
            names[cells[0].strip("`")] = cells[1]
    return names


def settings_class() -> Any | None:
    """`service.settings.Settings`, or None while it does not exist yet."""
    try:
        module = importlib.import_module("service.settings")
    except ModuleNotFoundError as exc:
        if exc.name in ("service", "service.settings"):
            return None
        raise
    return module.Settings


def settings_names(settings_cls: Any) -> set[str]:
    prefix = settings_cls.model_config.get("env_prefix", "MPLMM_")
    return {prefix + name.upper() for name in settings_cls.model_fields}


# --- tools -----------------------------------------------------------------------------------


def find_tool(name: str) -> str | None:
    """A console script of the venv running the tests, else one on PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file():
        return str(local)
    return shutil.which(name)


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    """Render a kustomization with `kubectl kustomize` (kustomize is built into kubectl)."""
    kubectl = find_tool("kubectl")
    assert kubectl is not None
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
