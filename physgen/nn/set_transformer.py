r"""Set-transformer encoder for variable-size point sets (Lee et al. 2019), with masking.

    h⁰ = W x_i,
    hˡ⁺¹ = hˡ + FF(LN(hˡ + MHA(LN(hˡ), LN(hˡ), mask))),     (self-attention blocks, SAB)
    z    = PMA_k(h) = MHA(S, LN(h), mask)  with k learned seed vectors S,     (pooling by attention)
    f(X) = ρ(flatten(z)).

Padded points are excluded as keys in every attention (their attention weight is exactly 0), so
adding padding changes nothing, and they are never pooled. Self-attention is permutation
equivariant and PMA permutation invariant, so f is permutation invariant; in floating point the
attention-weighted sums depend on the summation order only through rounding (~1e-7 relative in
float32, tested < 1e-5). No positional encoding is used anywhere.

Input convention as :class:`physgen.nn.deepsets.DeepSetsEncoder` (mask as the last column, or an
explicit mask); an all-masked set raises ``ValueError``. ``x_standardization = "none"``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from physgen.nn.deepsets import points_and_mask
from physgen.nn.mlp import MLP

__all__ = ["SetTransformerEncoder"]


class _MHA(nn.Module):
    def __init__(self, features: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(features, features)
        self.kv = nn.Linear(features, 2 * features)
        self.out = nn.Linear(features, features)

    def forward(self, q: Tensor, kv: Tensor, mask: Tensor) -> Tensor:
        # q (B, Nq, F), kv (B, N, F), mask (B, N) True = real point
        b, nq, f = q.shape
        h = self.heads
        qh = self.q(q).reshape(b, nq, h, f // h).transpose(1, 2)
        k, v = self.kv(kv).reshape(b, kv.shape[1], 2, h, f // h).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(qh, k, v, attn_mask=mask[:, None, None, :])
        return self.out(o.transpose(1, 2).reshape(b, nq, f))


class _SAB(nn.Module):
    def __init__(self, features: int, heads: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(features), nn.LayerNorm(features)
        self.attn = _MHA(features, heads)
        self.ff = nn.Sequential(nn.Linear(features, 2 * features), nn.SiLU(), nn.Linear(2 * features, features))

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        a = self.norm1(h)
        h = h + self.attn(a, a, mask)
        return h + self.ff(self.norm2(h))


class SetTransformerEncoder(nn.Module):
    """Permutation-invariant attention summary network for point sets.

    Args:
        point_dim: d, coordinates per point.
        out_features: E.
        hidden_features: attention width (divisible by ``heads``).
        heads: attention heads.
        num_layers: self-attention blocks.
        num_seeds: PMA seed vectors k.
    """

    x_standardization = "none"

    def __init__(
        self,
        point_dim: int,
        out_features: int = 32,
        hidden_features: int = 64,
        heads: int = 4,
        num_layers: int = 2,
        num_seeds: int = 1,
    ):
        super().__init__()
        if hidden_features % heads:
            raise ValueError(f"hidden_features ({hidden_features}) must be divisible by heads ({heads})")
        if point_dim < 1 or out_features < 1 or num_layers < 0 or num_seeds < 1:
            raise ValueError("SetTransformerEncoder needs point_dim >= 1, out_features >= 1, num_layers >= 0, num_seeds >= 1")
        self.name = "set_transformer"
        self.point_dim, self.out_features = point_dim, out_features
        self.config = {
            "point_dim": point_dim,
            "out_features": out_features,
            "hidden_features": hidden_features,
            "heads": heads,
            "num_layers": num_layers,
            "num_seeds": num_seeds,
        }
        self.embed = nn.Linear(point_dim, hidden_features)
        self.blocks = nn.ModuleList(_SAB(hidden_features, heads) for _ in range(num_layers))
        self.norm = nn.LayerNorm(hidden_features)
        self.seeds = nn.Parameter(torch.randn(num_seeds, hidden_features) / hidden_features**0.5)
        self.pool = _MHA(hidden_features, heads)
        self.rho = MLP(num_seeds * hidden_features, out_features, (hidden_features,))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x ``(*B, N, d + 1)`` (mask last column) or ``(*B, N, d)`` with ``mask (*B, N)`` -> ``(*B, E)``."""
        pts, m = points_and_mask(x, mask, self.point_dim)
        batch, n = pts.shape[:-2], pts.shape[-2]
        pts, m = pts.reshape(-1, n, self.point_dim), m.reshape(-1, n)
        h = self.embed(pts)
        for block in self.blocks:
            h = block(h, m)
        seeds = self.seeds.expand(h.shape[0], -1, -1)
        z = self.pool(seeds, self.norm(h), m)
        return self.rho(z.flatten(1)).reshape(*batch, self.out_features)
