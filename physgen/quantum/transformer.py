r"""Autoregressive transformer wavefunction (decoder-only, causal attention).

Token t is the embedding of the previous visited spin ``x_{t-1}`` (a learned start token at
t = 0) plus a learned positional embedding. ``n_layers`` pre-norm blocks of causal
multi-head self-attention and an MLP follow; position t attends to positions ``<= t``, whose
tokens hold ``x_<t`` only, so output t depends on ``x_<t`` exactly. A linear head gives the
logits of ``p(x_t | x_<t)`` and, with ``phase=True``, phases ``pi * softsign(.)``.
Normalisation, sampling, U(1) masking and the Marshall sign are those of
:mod:`physgen.quantum.autoregressive` (on the shared core
:class:`physgen.models.autoregressive.AutoregressiveModel`). Attention is written out (no fused kernels) so that
``torch.func`` per-sample gradients work.

Sampling recomputes the whole prefix at each of the N steps (O(N^2) per sample; no cache),
which is cheap for the lattice sizes of exact benchmarks (N <= ~100).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from physgen.quantum.autoregressive import AutoregressiveWavefunction
from physgen.quantum.lattice import Lattice

__all__ = ["TransformerWavefunction"]


class _Block(nn.Module):
    def __init__(self, d: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, mlp), nn.GELU(), nn.Linear(mlp, d))

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        B, T, d = h.shape
        q, k, v = self.qkv(self.ln1(h)).chunk(3, -1)
        dh = d // self.heads
        q = q.reshape(B, T, self.heads, dh).transpose(1, 2)
        k = k.reshape(B, T, self.heads, dh).transpose(1, 2)
        v = v.reshape(B, T, self.heads, dh).transpose(1, 2)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        out = (att @ v).transpose(1, 2).reshape(B, T, d)
        h = h + self.proj(out)
        return h + self.mlp(self.ln2(h))


class TransformerWavefunction(AutoregressiveWavefunction):
    """Autoregressive transformer wavefunction.

    Args:
        n_sites: number of sites N.
        d_model: embedding width (divisible by ``heads``).
        heads: attention heads.
        n_layers: transformer blocks.
        mlp: hidden width of each block's MLP (default 2 * d_model).
        lattice, ordering, phase, u1, marshall: see :class:`AutoregressiveWavefunction`.
        dtype: parameter dtype.
    """

    causal: Tensor  # (N, N) bool buffer: the lower-triangular attention mask

    def __init__(
        self,
        n_sites: int,
        d_model: int = 32,
        heads: int = 4,
        n_layers: int = 2,
        mlp: int | None = None,
        *,
        lattice: Lattice | None = None,
        ordering: str = "chain",
        phase: bool = False,
        u1: bool = False,
        marshall: bool = False,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__(n_sites, lattice=lattice, ordering=ordering, phase=phase, u1=u1, marshall=marshall)
        if d_model % heads:
            raise ValueError(f"d_model={d_model} must be divisible by heads={heads}.")
        mlp = mlp or 2 * d_model
        self.tok = nn.Embedding(3, d_model)  # 0, 1, start
        self.pos = nn.Parameter(torch.randn(n_sites, d_model) * 0.02)
        self.blocks = nn.ModuleList([_Block(d_model, heads, mlp) for _ in range(n_layers)])
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, 2)
        self.phase_head = nn.Linear(d_model, 2) if phase else None
        self.register_buffer("causal", torch.ones(n_sites, n_sites).tril().bool(), persistent=False)
        self.config = {
            "type": "transformer",
            "n_sites": n_sites,
            "d_model": d_model,
            "heads": heads,
            "n_layers": n_layers,
            "mlp": mlp,
            "ordering": ordering,
            "phase": phase,
            "u1": u1,
            "marshall": marshall,
            "dtype": str(dtype).replace("torch.", ""),
        }
        self.to(dtype)

    def _embed(self, x: Tensor) -> Tensor:
        B, T = x.shape
        prev = torch.cat([torch.full((B, 1), 2, dtype=torch.long, device=x.device), x[:, :-1].long()], 1)
        return self.tok(prev) + self.pos[:T]

    def _forward(self, x: Tensor):
        T = x.shape[1]
        h = self._embed(x)
        mask = self.causal[:T, :T]
        for blk in self.blocks:
            h = blk(h, mask)
        h = self.ln(h)
        logits = self.head(h)
        phases = math.pi * F.softsign(self.phase_head(h)) if self.phase_head is not None else None
        return logits, phases

    def _logits(self, x: Tensor, context: Tensor | None = None):
        return self._forward(x)

    def _sample_step(self, x: Tensor, t: int, state, context: Tensor | None = None):
        logits, phases = self._forward(x[:, : t + 1])
        return logits[:, t], (phases[:, t] if phases is not None else None), None
