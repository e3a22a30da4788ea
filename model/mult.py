"""The MPLMM model: a frozen MulT backbone plus a per-domain PromptPack, batched."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig
from model.inputs import validate_inputs, validate_stacked_packs
from model.missing import PRESENCE_TABLE
from model.prompts import KEYS, GenCase, PromptKind, PromptPack, StackedPacks, sources_of
from model.transformer import Encoder, run_grouped

# Crossmodal transformer names: "{target}_{source}", e.g. "t_a" is t <- a.
CROSS_NAMES = tuple(f"{KEYS[m]}_{KEYS[s]}" for m in range(3) for s in sources_of(m))


def _gen_case_table() -> torch.Tensor:
    # (7, 3) int64: for each missing type and target modality, which sources are present.
    table = torch.zeros(len(PRESENCE_TABLE), 3, dtype=torch.int64)
    for t, row in enumerate(PRESENCE_TABLE):
        for m in range(3):
            s1, s2 = sources_of(m)
            if row[s1] and not row[s2]:
                table[t, m] = GenCase.FIRST_ONLY
            elif row[s2] and not row[s1]:
                table[t, m] = GenCase.SECOND_ONLY
    return table


class MulTBackbone(nn.Module):
    """The frozen part: six crossmodal and three self-attention transformers.

    No projections and no head (those are per-domain, in the pack). Transformers of
    identical geometry run as one grouped batch (see `model.transformer.run_grouped`).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c, lens = config, config.lengths
        common = {
            "attn_dropout": c.attn_dropout,
            "relu_dropout": c.relu_dropout,
            "res_dropout": c.res_dropout,
            "embed_dropout": c.embed_dropout,
            "causal": c.attn_mask,
        }
        self.cross = nn.ModuleDict(
            {n: Encoder(c.d, c.heads, c.layers, max(lens), **common) for n in CROSS_NAMES}
        )
        self.branch = nn.ModuleDict(
            {
                k: Encoder(2 * c.d, c.heads, c.self_layers, max(lens) + c.prompt_length, **common)
                for k in KEYS
            }
        )
        cross_groups: dict[tuple[int, int], list[str]] = defaultdict(list)
        for name in CROSS_NAMES:
            m, s = KEYS.index(name[0]), KEYS.index(name[2])
            cross_groups[(lens[m], lens[s])].append(name)
        branch_groups: dict[int, list[int]] = defaultdict(list)
        for m in range(3):
            branch_groups[lens[m]].append(m)
        self._cross_groups = [tuple(g) for g in cross_groups.values()]
        self._branch_groups = [tuple(g) for g in branch_groups.values()]

    def forward(self, xs: list[torch.Tensor], type_prompts: torch.Tensor | None) -> torch.Tensor:
        """xs: per modality `(B, L_m, d)`; type_prompts `(B, 3, l_p, 2d)` or None.

        Returns the concatenated last steps of the three branches `(B, 6d)`.
        """
        cross: dict[str, torch.Tensor] = {}
        for names in self._cross_groups:
            q = torch.stack([xs[KEYS.index(n[0])] for n in names])  # (G, B, L_m, d)
            kv = torch.stack([xs[KEYS.index(n[2])] for n in names])  # (G, B, L_s, d)
            out = run_grouped([self.cross[n] for n in names], q, kv)
            cross.update(zip(names, out, strict=True))
        seqs = []
        for m, key in enumerate(KEYS):
            s1, s2 = sources_of(m)
            h = torch.cat([cross[f"{key}_{KEYS[s1]}"], cross[f"{key}_{KEYS[s2]}"]], dim=-1)
            if type_prompts is not None:
                # Prepended, so the branch's last step stays the data's last step.
                h = torch.cat([type_prompts[:, m], h], dim=1)  # (B, l_p + L_m, 2d)
            seqs.append(h)
        last: list[torch.Tensor] = [seqs[0]] * 3
        for group in self._branch_groups:
            x = torch.stack([seqs[m] for m in group])  # (G, B, T, 2d)
            out = run_grouped([self.branch[KEYS[m]] for m in group], x, last_only=True)
            for i, m in enumerate(group):
                last[m] = out[i]  # (B, 2d)
        return torch.cat(last, dim=-1)  # (B, 6d)


class MPLMM(nn.Module):
    """Backbone + pack. `prompts` picks the prompt kinds: ALL for MPLMM, NONE for stage-1
    pretraining (plain MulT: absent modalities stay zero), or ALL minus one kind for an
    ablation. `missing_type` alone decides presence: an absent modality's input is
    zeroed whatever it holds, so training can simulate missingness by type.
    """

    def __init__(
        self,
        config: ModelConfig,
        prompts: PromptKind = PromptKind.ALL,
        *,
        backbone: MulTBackbone | None = None,
        pack: PromptPack | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.prompts = prompts
        self.backbone = backbone if backbone is not None else MulTBackbone(config)
        self.pack = pack if pack is not None else PromptPack(config)
        presence = torch.as_tensor(PRESENCE_TABLE, dtype=torch.float32)  # (7, 3)
        self.register_buffer("presence_table", presence, persistent=False)
        self.register_buffer("gen_case_table", _gen_case_table(), persistent=False)

    def freeze_backbone(self) -> None:
        """Stage 2: only pack tensors train."""
        self.backbone.requires_grad_(False)

    def parameter_counts(self) -> dict[str, int]:
        """{"pack": trainable per-domain count, "backbone": frozen count, "total": both}."""
        pack = sum(p.numel() for p in self.pack.parameters())
        backbone = sum(p.numel() for p in self.backbone.parameters())
        return {"pack": pack, "backbone": backbone, "total": pack + backbone}

    def _stacked(
        self, packs: Mapping[str, torch.Tensor], pack_index: torch.Tensor | None
    ) -> StackedPacks:
        assert pack_index is not None  # validated, or traced with one
        shapes = {k: tuple(v.shape) for k, v in self.pack.named_parameters()}
        return StackedPacks(packs, pack_index, shapes)

    def forward(
        self,
        text: torch.Tensor,
        audio: torch.Tensor,
        video: torch.Tensor,
        missing_type: torch.Tensor,
        packs: Mapping[str, torch.Tensor] | None = None,
        pack_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """text/audio/video float32 `(B, L_m, D_m)`, missing_type int64 `(B,)` -> `(B, K)`.

        Without `packs` every row runs with `self.pack`. With `packs` (every pack tensor
        stacked on a leading pack axis `(P, ...)`, keyed as in the state dict) and
        `pack_index (B,)` int64, row i runs with pack `pack_index[i]`: the exported
        graph's computation, where one call serves several packs.
        """
        if not torch.jit.is_tracing():  # shapes are fixed when exporting
            validate_inputs(self.config.lengths, self.config.dims, text, audio, video, missing_type)
            if packs is not None:
                validate_stacked_packs(self.pack.state_dict(), packs, pack_index, len(text))
        t = self.pack.tensors() if packs is None else self._stacked(packs, pack_index)
        present = self.presence_table[missing_type]  # (B, 3) float 0/1
        text = F.dropout(text, self.config.embed_dropout, self.training)  # MulT's input dropout
        xs = self.pack.project([text, audio, video], t)  # 3 x (B, L_m, d)
        xs = [x * present[:, m, None, None] for m, x in enumerate(xs)]
        kinds = self.prompts
        if PromptKind.GENERATIVE in kinds:
            xs = self.pack.generate(xs, present, self.gen_case_table[missing_type], t)
        type_prompts = None
        if kinds & (PromptKind.MISSING_SIGNAL | PromptKind.MISSING_TYPE):
            sigs = self.pack.signals(present, t)
            if PromptKind.MISSING_SIGNAL in kinds:
                xs = self.pack.add_signals(xs, sigs)
            if PromptKind.MISSING_TYPE in kinds:
                type_prompts = self.pack.type_prompts(sigs, t)
        return self.pack.head(self.backbone(xs, type_prompts), t)
