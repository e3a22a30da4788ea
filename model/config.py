"""The frozen model configuration (MulT backbone + MPLMM prompts)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any


class Task(StrEnum):
    """What the output head predicts."""

    REGRESSION = "regression"  # output `(B, K)` scores, usually K = 1
    CLASSIFICATION = "classification"  # output `(B, K)` logits over K labels


@dataclass(frozen=True)
class ModelConfig:
    """Every size and rate of the model. Modality tuples are in text, audio, video order.

    `layers` is the depth of each of the six crossmodal transformers; `self_layers` the
    depth of the three per-branch self-attention transformers (MulT: max(layers, 3)).
    The prompt dim d_p equals `d` (the paper's setting), so it has no field of its own.
    """

    dims: tuple[int, int, int] = (300, 74, 35)
    lengths: tuple[int, int, int] = (50, 50, 50)
    d: int = 30
    heads: int = 5
    layers: int = 5
    self_layers: int = 5
    prompt_length: int = 16
    attn_dropout: float = 0.1
    relu_dropout: float = 0.1
    res_dropout: float = 0.1
    embed_dropout: float = 0.25
    out_dropout: float = 0.0
    attn_mask: bool = False
    task: Task = Task.REGRESSION
    output_dim: int = 1

    def __post_init__(self) -> None:
        # JSON round-trips give lists and strings; normalise before checking.
        object.__setattr__(self, "dims", tuple(int(x) for x in self.dims))
        object.__setattr__(self, "lengths", tuple(int(x) for x in self.lengths))
        object.__setattr__(self, "task", Task(self.task))
        problems = []
        if len(self.dims) != 3 or min(self.dims) < 1:
            problems.append(f"dims must be 3 positive ints, got {self.dims}")
        if len(self.lengths) != 3 or min(self.lengths) < 1:
            problems.append(f"lengths must be 3 positive ints, got {self.lengths}")
        for name in ("d", "heads", "layers", "self_layers", "prompt_length", "output_dim"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d % self.heads:
            problems.append(f"d={self.d} must be divisible by heads={self.heads}")
        for name in ("attn_dropout", "relu_dropout", "res_dropout", "embed_dropout"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                problems.append(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.out_dropout < 1.0:
            problems.append(f"out_dropout must be in [0, 1), got {self.out_dropout}")
        if problems:
            raise ValueError("invalid ModelConfig: " + "; ".join(problems))

    @property
    def head_dim(self) -> int:
        """Width of the concatenated last steps fed to the head: 3 branches x 2d."""
        return 6 * self.d

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["dims"], out["lengths"] = list(self.dims), list(self.lengths)
        out["task"] = self.task.value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {unknown}")
        return cls(**data)

    @classmethod
    def mosi(cls, **overrides: Any) -> ModelConfig:
        """The paper's CMU-MOSI configuration (dims 300/74/35, lengths 50, d=30)."""
        return cls(**overrides)
