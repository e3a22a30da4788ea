"""The prompt pack: every tensor trained per domain, and the prompt computations on them.

A `PromptPack` holds the input projections, the output head and the three prompt kinds
of MPLMM (generative prompts with the Missing Modality Generation Module, missing-signal
prompts, missing-type prompts). Everything else (the MulT transformers) is the frozen
backbone. All methods are batched over samples; the only Python loops run over the
three modalities.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig

# Modality axis order everywhere: text, audio, video.
KEYS = ("t", "a", "v")


class PackTensors:
    """Where the prompt computations read the pack's tensors: one pack for the whole
    batch (the module's own parameters: training and torch inference).

    A tensor read with `get` is shared by every row, shape as in the state dict; the
    computations broadcast it over the batch. `StackedPacks` is the other source, where
    each row reads its own pack; the computations are written once for both.
    """

    def __init__(self, pack: nn.Module) -> None:
        self._params = dict(pack.named_parameters())

    def get(self, key: str) -> torch.Tensor:
        """The tensor `key` (a state-dict key), shared by every row."""
        return self._params[key]

    def kernel(self, key: str) -> torch.Tensor:
        """A 1x1 convolution's weight `(out, in, 1)` as the matrix `(out, in)`."""
        return self.get(key)[:, :, 0]

    def linear(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`x (B, [L,] in) @ weight.T + bias` with a shared `weight (out, in)`."""
        return F.linear(x, weight, bias)

    def by_case(self, key: str, cases: torch.Tensor) -> torch.Tensor:
        """Each row's slice of `key` (a tensor with one slice per GenCase) `(B, ...)`."""
        return self.get(key)[cases]


class StackedPacks(PackTensors):
    """Several packs in one call: every tensor stacked on a leading pack axis `(P, ...)`
    and `index (B,)` naming each row's pack. This is what the exported graph computes.

    `get` gathers each row's slice `(B, ...)`, so a row never sees another pack's
    tensors; one pack for the whole batch is simply P = 1 with an all-zero index.
    `shapes` (one pack's tensor shapes) keeps every reshape a constant in the graph.
    """

    def __init__(
        self,
        stacked: Mapping[str, torch.Tensor],
        index: torch.Tensor,
        shapes: Mapping[str, tuple[int, ...]],
    ) -> None:
        self._stacked = dict(stacked)
        self._index = index
        self._shapes = shapes

    def get(self, key: str) -> torch.Tensor:
        return self._stacked[key][self._index]  # (B, ...)

    def kernel(self, key: str) -> torch.Tensor:
        # The kernel axis goes before the rows are gathered (a reshape, no copy): sliced
        # after, it is an element-wise gather of every row's weights, 20% of a call.
        out, inp, _ = self._shapes[key]
        return self._stacked[key].reshape(-1, out, inp)[self._index]  # (B, out, in)

    def linear(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-row `weight (B, out, in)` and `bias (B, out)`: one batched matmul."""
        rows = x if x.dim() == 3 else x[:, None, :]  # (B, L, in)
        y = rows @ weight.transpose(-1, -2)  # (B, L, out)
        if bias is not None:
            y = y + bias[:, None, :]
        return y if x.dim() == 3 else y[:, 0]

    def by_case(self, key: str, cases: torch.Tensor) -> torch.Tensor:
        # One gather over the (pack, case) pairs flattened: row i reads slice
        # index[i] * n_cases + cases[i], never the other cases of its pack.
        n_cases, *rest = self._shapes[key]
        flat = self._stacked[key].reshape(-1, *rest)  # (P * n_cases, ...)
        return flat[self._index * n_cases + cases]


def sources_of(m: int) -> tuple[int, int]:
    """The two other modalities of modality index `m`, in canonical order."""
    s1, s2 = (i for i in range(3) if i != m)
    return s1, s2


class GenCase(enum.IntEnum):
    """Which sources of a generated modality are present: one fuse weight per case."""

    BOTH = 0
    FIRST_ONLY = 1
    SECOND_ONLY = 2


class PromptKind(enum.Flag):
    """Which prompt kinds the forward uses. NONE is stage-1 pretraining (plain MulT)."""

    NONE = 0
    GENERATIVE = enum.auto()
    MISSING_SIGNAL = enum.auto()
    MISSING_TYPE = enum.auto()
    ALL = GENERATIVE | MISSING_SIGNAL | MISSING_TYPE


class PromptPack(nn.Module):
    """Every per-domain tensor. Names (state-dict keys) are the pack contract:

    - `proj_{t,a,v}.weight` `(d, D_m, 1)`: MulT input projections (Conv1d, no bias);
    - `proj1.*`, `proj2.*` `(6d, 6d)`, `out_layer.*` `(K, 6d)`: the residual head;
    - `gen_prompt.{t,a,v}` `(l_p, d)`: generative prompts P_G;
    - `gen_map.{m}_from_{s}.weight` `(d, d, 1)` + `.bias` `(d,)`: f_{s->m};
    - `gen_fuse.{m}.weight` `(3, L_m, l_p + L_s1 + L_s2)` + `gen_fuse.{m}.bias` `(3, L_m)`:
      the time-axis 1x1 conv, one per GenCase;
    - `signal.{t,a,v}` `(2, d)`: missing-signal prompts, row 0 real, row 1 generated;
    - `type_prompt` `(3, l_p, d)`: missing-type prompts P_MT, one per branch;
    - `type_w.{t,a,v}` `(d, 2d)`: the per-modality matrices W_k building M_P.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d, lp, lens = config.d, config.prompt_length, config.lengths
        self.proj_t, self.proj_a, self.proj_v = (
            nn.Conv1d(dim, d, kernel_size=1, bias=False) for dim in config.dims
        )
        self.proj1 = nn.Linear(config.head_dim, config.head_dim)
        self.proj2 = nn.Linear(config.head_dim, config.head_dim)
        self.out_layer = nn.Linear(config.head_dim, config.output_dim)
        self.gen_prompt = nn.ParameterDict(
            {k: nn.Parameter(0.1 * torch.randn(lp, d)) for k in KEYS}
        )
        self.gen_map = nn.ModuleDict(
            {
                f"{KEYS[m]}_from_{KEYS[s]}": nn.Conv1d(d, d, kernel_size=1)
                for m in range(3)
                for s in sources_of(m)
            }
        )
        fuse_w, fuse_b = {}, {}
        for m in range(3):
            s1, s2 = sources_of(m)
            w = torch.empty(len(GenCase), lens[m], lp + lens[s1] + lens[s2])
            for case in GenCase:
                nn.init.xavier_uniform_(w[case])
            fuse_w[KEYS[m]] = nn.Parameter(w)
            fuse_b[KEYS[m]] = nn.Parameter(torch.zeros(len(GenCase), lens[m]))
        self.gen_fuse = nn.ModuleDict({k: _WeightBias(fuse_w[k], fuse_b[k]) for k in KEYS})
        self.signal = nn.ParameterDict({k: nn.Parameter(0.1 * torch.randn(2, d)) for k in KEYS})
        # The released code zero-initialises P_MT and W_k: their product and both
        # gradients then stay zero forever. Random init lets both learn.
        self.type_prompt = nn.Parameter(torch.randn(3, lp, d))
        self.type_w = nn.ParameterDict(
            {k: nn.Parameter(nn.init.xavier_normal_(torch.empty(d, 2 * d))) for k in KEYS}
        )

    def tensors(self) -> PackTensors:
        """This pack's own parameters as the source of every prompt computation."""
        return PackTensors(self)

    def project(self, xs: list[torch.Tensor], t: PackTensors) -> list[torch.Tensor]:
        """Raw `(B, L_m, D_m)` -> projected `(B, L_m, d)` per modality (a 1x1 conv)."""
        return [
            t.linear(x, t.kernel(f"proj_{key}.weight")) for x, key in zip(xs, KEYS, strict=True)
        ]

    def generate(
        self, xs: list[torch.Tensor], present: torch.Tensor, cases: torch.Tensor, t: PackTensors
    ) -> list[torch.Tensor]:
        """Missing Modality Generation Module, batched.

        xs: projected `(B, L_m, d)` with absent modalities zero; present `(B, 3)` float
        0/1; cases `(B, 3)` int64, the GenCase of each modality's sources. Every
        modality's generation is computed for the whole batch and selected by mask,
        so a batch may mix all seven missing types.
        """
        out = []
        b = xs[0].shape[0]
        for m, key in enumerate(KEYS):
            s1, s2 = sources_of(m)
            f1 = self._map(m, s1, xs[s1], t) * present[:, s1, None, None]  # (B, L_s1, d)
            f2 = self._map(m, s2, xs[s2], t) * present[:, s2, None, None]  # (B, L_s2, d)
            prompt = t.get(f"gen_prompt.{key}").expand(b, -1, -1)  # (B, l_p, d)
            seq = torch.cat([prompt, f1, f2], dim=1)  # (B, l_p + L_s1 + L_s2, d)
            w = t.by_case(f"gen_fuse.{key}.weight", cases[:, m])  # (B, L_m, l_p + L_s1 + L_s2)
            bias = t.by_case(f"gen_fuse.{key}.bias", cases[:, m])  # (B, L_m)
            gen = torch.baddbmm(bias[:, :, None], w, seq)  # (B, L_m, d)
            out.append(torch.where(present[:, m, None, None] > 0, xs[m], gen))
        return out

    def _map(self, m: int, s: int, x: torch.Tensor, t: PackTensors) -> torch.Tensor:
        name = f"gen_map.{KEYS[m]}_from_{KEYS[s]}"
        return t.linear(x, t.kernel(f"{name}.weight"), t.get(f"{name}.bias"))  # (B, L_s, d)

    def signals(self, present: torch.Tensor, t: PackTensors) -> list[torch.Tensor]:
        """Per modality `(B, d)`: its missing-signal prompt for each row's state."""
        out = []
        for m, key in enumerate(KEYS):
            p = present[:, m, None]  # (B, 1)
            sig = t.get(f"signal.{key}")  # (2, d) or (B, 2, d): real, generated
            out.append(p * sig[..., 0, :] + (1.0 - p) * sig[..., 1, :])
        return out

    def add_signals(self, xs: list[torch.Tensor], sigs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Add each modality's missing-signal prompt to every time step."""
        return [x + s[:, None, :] for x, s in zip(xs, sigs, strict=True)]

    def type_prompts(self, sigs: list[torch.Tensor], t: PackTensors) -> torch.Tensor:
        """Missing-type prompts `(B, 3, l_p, 2d)`: P_MT[m] @ M_P, M_P = sum_k diag(s_k) W_k."""
        m_p = sum(
            s[:, :, None] * t.get(f"type_w.{k}") for s, k in zip(sigs, KEYS, strict=True)
        )  # (B, d, 2d)
        three, lp, d = self.type_prompt.shape
        prompts = t.get("type_prompt").reshape(-1, three * lp, d) @ m_p  # (B, 3 l_p, 2d)
        return prompts.reshape(-1, three, lp, 2 * d)

    def head(self, h: torch.Tensor, t: PackTensors) -> torch.Tensor:
        """Residual MLP over the concatenated last steps `(B, 6d)` -> `(B, K)`."""
        hidden = F.relu(t.linear(h, t.get("proj1.weight"), t.get("proj1.bias")))
        hidden = F.dropout(hidden, self.config.out_dropout, self.training)
        out = t.linear(hidden, t.get("proj2.weight"), t.get("proj2.bias")) + h
        return t.linear(out, t.get("out_layer.weight"), t.get("out_layer.bias"))


class _WeightBias(nn.Module):
    # A bare (weight, bias) holder so the state-dict keys read gen_fuse.t.weight / .bias.
    def __init__(self, weight: nn.Parameter, bias: nn.Parameter) -> None:
        super().__init__()
        self.weight = weight
        self.bias = bias
