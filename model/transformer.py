"""MulT transformer encoders (Tsai et al. 2019): pre-LayerNorm layers, crossmodal or self.

Two implementations of the same math:

- `Encoder.forward` is the plain one, one encoder at a time with its own modules. It is
  the readable definition and what the per-sample reference uses.
- `run_grouped` runs G encoders of identical geometry as ONE stack of batched matmuls
  over weights stacked along a leading group axis. The six crossmodal transformers (and
  the three self-attention ones) have tiny widths (d=30), so one (G, N, E) x (G, E, F)
  product fuses far better than six small ones, and the ONNX graph has a sixth of the
  nodes. Stacking initializers is constant-folded by onnxruntime.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_table(num_positions: int, dim: int) -> torch.Tensor:
    """fairseq/MulT sinusoids `(num_positions + 1, dim)`; row 0 (the padding index) is zero.

    Positions start at 1, as in MulT. Unlike MulT, the position of a step never depends
    on its values (MulT zeroes steps whose first feature is exactly 0), so a generated or
    all-zero modality gets the same positions as a real one and the graph has no
    data-dependent indexing.
    """
    half = dim // 2
    step = math.log(10000) / (half - 1) if half > 1 else 0.0
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -step)  # (half,)
    angles = torch.arange(num_positions + 1, dtype=torch.float32)[:, None] * freqs[None, :]
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)  # (P+1, 2*half)
    if dim % 2:
        table = torch.cat([table, torch.zeros(num_positions + 1, 1)], dim=1)
    table[0] = 0.0
    return table


def causal_mask(q_len: int, k_len: int) -> torch.Tensor:
    """MulT's future mask `(q_len, k_len)`: 0 where allowed, -inf above the shifted diagonal."""
    full = torch.full((q_len, k_len), float("-inf"))
    return torch.triu(full, diagonal=1 + abs(k_len - q_len))


class EncoderLayer(nn.Module):
    """One pre-LN layer: x + Attn(LN(x), LN(kv)), then x + FFN(LN(x)).

    As in MulT, the same LayerNorm (`ln_attn`) normalises the query stream and, in a
    crossmodal layer, the key/value stream.
    """

    def __init__(
        self, dim: int, heads: int, attn_dropout: float, relu_dropout: float, res_dropout: float
    ) -> None:
        super().__init__()
        self.dim, self.heads = dim, heads
        self.attn_dropout, self.relu_dropout, self.res_dropout = (
            attn_dropout,
            relu_dropout,
            res_dropout,
        )
        self.ln_attn = nn.LayerNorm(dim)
        self.in_proj = nn.Linear(dim, 3 * dim)  # rows: query, key, value
        self.out_proj = nn.Linear(dim, dim)
        self.ln_ffn = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)
        # MulT initialisation: xavier weights, zero biases.
        for lin in (self.in_proj, self.out_proj, self.fc1, self.fc2):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def _attention(
        self, x: torch.Tensor, src: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        b, t, e = x.shape
        s = src.shape[1]
        hd = e // self.heads
        w, bias = self.in_proj.weight, self.in_proj.bias
        q = F.linear(x, w[:e], bias[:e]) * hd**-0.5  # (B, T, E)
        k = F.linear(src, w[e : 2 * e], bias[e : 2 * e])  # (B, S, E)
        v = F.linear(src, w[2 * e :], bias[2 * e :])  # (B, S, E)
        q = q.view(b, t, self.heads, hd).transpose(1, 2)  # (B, H, T, hd)
        k = k.view(b, s, self.heads, hd).transpose(1, 2)  # (B, H, S, hd)
        v = v.view(b, s, self.heads, hd).transpose(1, 2)  # (B, H, S, hd)
        scores = q @ k.transpose(-1, -2)  # (B, H, T, S)
        if mask is not None:
            scores = scores + mask
        probs = F.dropout(scores.softmax(-1), self.attn_dropout, self.training)
        out = (probs @ v).transpose(1, 2).reshape(b, t, e)  # (B, T, E)
        return self.out_proj(out)

    def forward(
        self, x: torch.Tensor, kv: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x `(B, T, E)`, kv `(B, S, E)` or None for self-attention -> `(B, T, E)`."""
        residual = x
        x = self.ln_attn(x)
        src = x if kv is None else self.ln_attn(kv)
        x = residual + F.dropout(self._attention(x, src, mask), self.res_dropout, self.training)
        residual = x
        x = F.dropout(F.relu(self.fc1(self.ln_ffn(x))), self.relu_dropout, self.training)
        return residual + F.dropout(self.fc2(x), self.res_dropout, self.training)


class Encoder(nn.Module):
    """A MulT TransformerEncoder: scale by sqrt(E), add positions, dropout, layers, LN."""

    def __init__(
        self,
        dim: int,
        heads: int,
        layers: int,
        max_len: int,
        *,
        attn_dropout: float,
        relu_dropout: float,
        res_dropout: float,
        embed_dropout: float,
        causal: bool,
    ) -> None:
        super().__init__()
        self.dim, self.heads, self.embed_dropout, self.causal = dim, heads, embed_dropout, causal
        self.scale = math.sqrt(dim)
        self.layers = nn.ModuleList(
            EncoderLayer(dim, heads, attn_dropout, relu_dropout, res_dropout) for _ in range(layers)
        )
        self.ln_out = nn.LayerNorm(dim)
        # A function of the config, not a weight: kept out of the state dict.
        self.register_buffer("positions", sinusoidal_table(max_len, dim), persistent=False)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """`(..., T, E)` -> scaled, position-added, dropped-out `(..., T, E)`."""
        x = self.scale * x + self.positions[1 : x.shape[-2] + 1]
        return F.dropout(x, self.embed_dropout, self.training)

    def forward(self, x: torch.Tensor, kv: torch.Tensor | None = None) -> torch.Tensor:
        """x `(B, T, E)`; kv `(B, S, E)` for a crossmodal encoder -> `(B, T, E)`."""
        x = self.embed(x)
        kv = None if kv is None else self.embed(kv)
        mask = None
        if self.causal:
            mask = causal_mask(x.shape[1], x.shape[1] if kv is None else kv.shape[1])
        for layer in self.layers:
            x = layer(x, kv, mask)
        return self.ln_out(x)


def _stack(encoders: Sequence[Encoder], name: str) -> torch.Tensor:
    return torch.stack([enc.get_parameter(name) for enc in encoders])


def _fold(
    encoders: Sequence[Encoder], ln: str, lin: str, rows: slice | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked `(G, E_in, E_out)` weight and `(G, 1, E_out)` bias of `lin(LN(x))`, with the
    LayerNorm's affine folded in, so only the plain normalisation runs on activations:
    (n * g + b) @ W^T + c = n @ (g[:, None] * W^T) + (b @ W^T + c). Depends on weights
    only, so onnxruntime constant-folds it and torch recomputes it cheaply."""
    g, b = _stack(encoders, ln + ".weight"), _stack(encoders, ln + ".bias")  # (G, E_in)
    w, c = _stack(encoders, lin + ".weight"), _stack(encoders, lin + ".bias")  # (G, O, E_in)
    if rows is not None:
        w, c = w[:, rows], c[:, rows]
    wt = w.transpose(1, 2)  # (G, E_in, O)
    return g[:, :, None] * wt, (b[:, None, :] @ wt) + c[:, None, :]


def _heads(w: torch.Tensor, b: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    # (G, E, E) / (G, 1, E) -> head-major (G, H, E, hd) / (G, H, 1, hd), so a projection
    # lands directly in (G, H, N, hd) with no transpose of activations.
    g, e, o = w.shape
    hd = o // heads
    return w.reshape(g, e, heads, hd).permute(0, 2, 1, 3), b.reshape(g, 1, heads, hd).transpose(
        1, 2
    )


def _norm(x: torch.Tensor, dim: int) -> torch.Tensor:
    # `dim` is a Python int so that the exported LayerNormalization has a static shape.
    return F.layer_norm(x, (dim,), eps=1e-5)


def run_grouped(
    encoders: Sequence[Encoder],
    x: torch.Tensor,
    kv: torch.Tensor | None = None,
    *,
    last_only: bool = False,
) -> torch.Tensor:
    """Run G encoders of identical geometry at once; same math as `Encoder.forward`.

    x `(G, B, T, E)` is encoder g's query input at `x[g]`; kv `(G, B, S, E)` likewise.
    Returns `(G, B, T, E)`, or `(G, B, E)`, the last step only, with `last_only`: the
    last layer then computes queries, attention output and FFN for that step alone (its
    keys and values still cover every step), which is exact and saves most of a layer.

    Layout choices for onnxruntime: LayerNorm affines and the 1/sqrt(hd) scale are folded
    into the next weights; q, k, v are projected straight into head-major
    `(G, H, B, T, hd)`, leaving one transpose per layer; the key/value stream of a
    crossmodal encoder is normalised once, not per layer (each layer's LayerNorm affine is
    folded into its weights).
    """
    first = encoders[0]
    # Python ints, so the exported graph's shapes are constants; only B (the -1) is dynamic.
    g, e, h, t = len(encoders), first.dim, first.heads, int(x.shape[2])
    hd = e // h
    s = t if kv is None else int(kv.shape[2])
    x = first.embed(x).reshape(g, -1, e)  # (G, N, E), N = B*T
    srcn = None if kv is None else _norm(first.embed(kv).reshape(g, -1, e), e)[:, None]
    mask = causal_mask(t, s) if first.causal else None
    layer0 = first.layers[0]
    p_attn, p_relu, p_res = layer0.attn_dropout, layer0.relu_dropout, layer0.res_dropout
    training = first.training
    n_layers = len(first.layers)
    for i in range(n_layers):
        p = f"layers.{i}."
        ln, inp = p + "ln_attn", p + "in_proj"
        wq, bq = _fold(encoders, ln, inp, slice(0, e))
        wq, bq = _heads(wq * hd**-0.5, bq * hd**-0.5, h)  # (G, H, E, hd), (G, H, 1, hd)
        # The query bias rides on a ones column: a (.., hd)-wide broadcast Add is slow.
        wq = torch.cat([wq, bq], dim=2)  # (G, H, E + 1, hd)
        # The key bias adds q.b_k to every score of a row: softmax cancels it, so drop it.
        wk, _ = _heads(*_fold(encoders, ln, inp, slice(e, 2 * e)), h)
        wv, bv = _heads(*_fold(encoders, ln, inp, slice(2 * e, 3 * e)), h)
        w_out = _stack(encoders, p + "out_proj.weight").transpose(1, 2)  # (G, E, E)
        b_out = _stack(encoders, p + "out_proj.bias")[:, None, :]  # (G, 1, E)
        fold_v = not (training and p_attn > 0)
        if fold_v:
            # Softmax rows sum to 1, so probs @ (v + b_v) = probs @ v + b_v: fold b_v into
            # the output bias. Attention dropout breaks the sum, so not when training.
            b_out = b_out + bv.transpose(1, 2).reshape(g, 1, e) @ w_out
        xn = _norm(x, e)  # (G, N, E)
        kvn = xn[:, None] if srcn is None else srcn  # (G, 1, M, E)
        tq = t
        if last_only and i == n_layers - 1:
            # Only the last step's output is wanted: keys/values above cover every step.
            x, xn, tq = x.reshape(g, -1, t, e)[:, :, -1], xn.reshape(g, -1, t, e)[:, :, -1], 1
            mask = None if mask is None else mask[-1:]
        xq = F.pad(xn, (0, 1), value=1.0)[:, None]  # (G, 1, N, E + 1): [xn, 1]
        q = (xq @ wq).reshape(g, h, -1, tq, hd)  # (G, H, B, Tq, hd)
        k = (kvn @ wk).reshape(g, h, -1, s, hd)  # (G, H, B, S, hd)
        v = kvn @ wv if fold_v else kvn @ wv + bv
        v = v.reshape(g, h, -1, s, hd)  # (G, H, B, S, hd)
        scores = q @ k.transpose(-1, -2)  # (G, H, B, Tq, S)
        if mask is not None:
            scores = scores + mask
        probs = F.dropout(scores.softmax(-1), p_attn, training)
        att = (probs @ v).permute(0, 2, 3, 1, 4).reshape(g, -1, e)  # (G, N, E)
        x = x + F.dropout(att @ w_out + b_out, p_res, training)
        w1, b1 = _fold(encoders, p + "ln_ffn", p + "fc1")  # (G, E, 4E), (G, 1, 4E)
        w2 = _stack(encoders, p + "fc2.weight").transpose(1, 2)  # (G, 4E, E)
        b2 = _stack(encoders, p + "fc2.bias")[:, None, :]
        hid = F.dropout(F.relu(_norm(x, e) @ w1 + b1), p_relu, training)  # (G, N, 4E)
        x = x + F.dropout(hid @ w2 + b2, p_res, training)
    ln_w, ln_b = _stack(encoders, "ln_out.weight"), _stack(encoders, "ln_out.bias")
    x = _norm(x, e) * ln_w[:, None, :] + ln_b[:, None, :]
    return x if last_only else x.reshape(g, -1, t, e)  # (G, B, E) or (G, B, T, E)
