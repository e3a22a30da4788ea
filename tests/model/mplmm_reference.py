"""A per-sample reference of the MPLMM forward, in the style of the paper's released code.

Python loop over samples, an if/elif per missing type that builds each sample's inputs
and M_P by hand, inputs and prompts grown with torch.cat, then the plain (ungrouped)
MulT encoders one at a time. It shares only parameters with `model.mult.MPLMM`, so
agreement checks the batched, grouped, table-driven forward. Imported by the tests and
by bench/model_forward.py; it is deliberately slow and never used for serving.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.missing import MissingType
from model.mult import MPLMM
from model.prompts import GenCase, PromptKind

REAL, GENERATED = 0, 1


def _proj(conv: torch.nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    # x (L, D) -> (L, d), as MulT: Conv1d over (1, D, L).
    return conv(x.t().unsqueeze(0))[0].t()


def _gen(model: MPLMM, target: str, sources: list[torch.Tensor | None], case: int) -> torch.Tensor:
    """Generate modality `target` from its two source slots (None = absent -> zeros)."""
    pack = model.pack
    cfg = model.config
    order = {"t": ("a", "v"), "a": ("t", "v"), "v": ("t", "a")}[target]
    lens = dict(zip("tav", cfg.lengths, strict=True))
    parts = [pack.gen_prompt[target]]
    for src_key, src in zip(order, sources, strict=True):
        if src is None:
            parts.append(torch.zeros(lens[src_key], cfg.d, device=parts[0].device))
        else:
            conv = pack.gen_map[f"{target}_from_{src_key}"]
            parts.append(conv(src.t().unsqueeze(0))[0].t())
    seq = torch.cat(parts, dim=0)  # (l_p + L_s1 + L_s2, d)
    fuse = pack.gen_fuse[target]
    return F.conv1d(seq.unsqueeze(0), fuse.weight[case].unsqueeze(-1), fuse.bias[case])[0]


def complete_sample(model: MPLMM, t: torch.Tensor, a: torch.Tensor, v: torch.Tensor, mtype: int):
    """One sample's projected, generated and signalled (L, d) inputs and its M_P (d, 2d)."""
    pack, kinds = model.pack, model.prompts
    gen_on = PromptKind.GENERATIVE in kinds
    pt, pa, pv = _proj(pack.proj_t, t), _proj(pack.proj_a, a), _proj(pack.proj_v, v)
    zt, za, zv = torch.zeros_like(pt), torch.zeros_like(pa), torch.zeros_like(pv)
    if mtype == MissingType.FULL:
        xt, xa, xv = pt, pa, pv
        state = (REAL, REAL, REAL)
    elif mtype == MissingType.NO_TEXT:
        xt = _gen(model, "t", [pa, pv], GenCase.BOTH) if gen_on else zt
        xa, xv = pa, pv
        state = (GENERATED, REAL, REAL)
    elif mtype == MissingType.NO_AUDIO:
        xa = _gen(model, "a", [pt, pv], GenCase.BOTH) if gen_on else za
        xt, xv = pt, pv
        state = (REAL, GENERATED, REAL)
    elif mtype == MissingType.NO_VIDEO:
        xv = _gen(model, "v", [pt, pa], GenCase.BOTH) if gen_on else zv
        xt, xa = pt, pa
        state = (REAL, REAL, GENERATED)
    elif mtype == MissingType.TEXT_ONLY:
        xa = _gen(model, "a", [pt, None], GenCase.FIRST_ONLY) if gen_on else za
        xv = _gen(model, "v", [pt, None], GenCase.FIRST_ONLY) if gen_on else zv
        xt = pt
        state = (REAL, GENERATED, GENERATED)
    elif mtype == MissingType.AUDIO_ONLY:
        xt = _gen(model, "t", [pa, None], GenCase.FIRST_ONLY) if gen_on else zt
        xv = _gen(model, "v", [None, pa], GenCase.SECOND_ONLY) if gen_on else zv
        xa = pa
        state = (GENERATED, REAL, GENERATED)
    elif mtype == MissingType.VIDEO_ONLY:
        xt = _gen(model, "t", [None, pv], GenCase.SECOND_ONLY) if gen_on else zt
        xa = _gen(model, "a", [None, pv], GenCase.SECOND_ONLY) if gen_on else za
        xv = pv
        state = (GENERATED, GENERATED, REAL)
    else:
        raise ValueError(f"unknown missing type {mtype}")
    sig = [pack.signal[k][s] for k, s in zip("tav", state, strict=True)]  # 3 x (d,)
    if PromptKind.MISSING_SIGNAL in kinds:
        xt, xa, xv = xt + sig[0], xa + sig[1], xv + sig[2]
    m_p = (
        torch.diag(sig[0]) @ pack.type_w["t"]
        + torch.diag(sig[1]) @ pack.type_w["a"]
        + torch.diag(sig[2]) @ pack.type_w["v"]
    )
    return xt, xa, xv, m_p


def reference_forward(
    model: MPLMM, text: torch.Tensor, audio: torch.Tensor, video: torch.Tensor, missing_type
) -> torch.Tensor:
    """The released code's structure: per-sample completion, then the plain MulT."""
    xx_t = xx_a = xx_v = batch_prompt = None
    for i in range(len(text)):
        xt, xa, xv, m_p = complete_sample(model, text[i], audio[i], video[i], int(missing_type[i]))
        prompt = torch.matmul(model.pack.type_prompt, m_p).unsqueeze(0)  # (1, 3, l_p, 2d)
        if xx_t is None:
            xx_t, xx_a, xx_v = xt[None], xa[None], xv[None]
            batch_prompt = prompt
        else:
            xx_t = torch.cat([xx_t, xt[None]], dim=0)
            xx_a = torch.cat([xx_a, xa[None]], dim=0)
            xx_v = torch.cat([xx_v, xv[None]], dim=0)
            batch_prompt = torch.cat([batch_prompt, prompt], dim=0)
    bb = model.backbone
    use_type = PromptKind.MISSING_TYPE in model.prompts
    h_t = torch.cat([bb.cross["t_a"](xx_t, xx_a), bb.cross["t_v"](xx_t, xx_v)], dim=2)
    h_a = torch.cat([bb.cross["a_t"](xx_a, xx_t), bb.cross["a_v"](xx_a, xx_v)], dim=2)
    h_v = torch.cat([bb.cross["v_t"](xx_v, xx_t), bb.cross["v_a"](xx_v, xx_a)], dim=2)
    if use_type:
        h_t = torch.cat([batch_prompt[:, 0], h_t], dim=1)
        h_a = torch.cat([batch_prompt[:, 1], h_a], dim=1)
        h_v = torch.cat([batch_prompt[:, 2], h_v], dim=1)
    last_t = bb.branch["t"](h_t)[:, -1]
    last_a = bb.branch["a"](h_a)[:, -1]
    last_v = bb.branch["v"](h_v)[:, -1]
    last_hs = torch.cat([last_t, last_a, last_v], dim=1)
    pack = model.pack
    proj = pack.proj2(F.relu(pack.proj1(last_hs)))
    return pack.out_layer(proj + last_hs)
