r"""A periodic, translation-equivariant set transformer: the velocity field of the point-cloud emulator.

Points live on the unit torus [0, 1)^d (the emulator divides by the box side). For a set x_1..x_n with
a mask, the wrapped (minimum-image) displacements and distances

    Δ_ij = x_j - x_i - round(x_j - x_i),   r_ij = |Δ_ij|,

are the only geometry the network sees, so it is exactly equivariant to translations on the torus (a
shifted set gives the same velocities) and to permutations of the points, and, since every output vector is
a combination of the Δ_ij with scalar weights, to the rotations and reflections of the box's symmetry
group. Each block is an attention layer whose logits carry a learned bias of the pair geometry:

    φ_ij = (B_1(r_ij), ..., B_R(r_ij), min(r_ij / r_c, 1))   (linear B-spline "hat" features, knots in [0, r_c]),
    a^h_ij = q^h_i · k^h_j / √d_h + w^h · φ_ij,   α^h_ij = softmax_j over real points j (and j = i),
    h_i <- h_i + W_o [Σ_j α^h_ij v^h_j, Σ_j α^h_ij φ_ij]_h,   h_i <- h_i + FF(LN(h_i)),
    D^h_i = Σ_j α^h_ij s(r_ij) Δ_ij                           (a weighted mean displacement per head),

and the velocity is v_i = Σ_{blocks, h} g^h(h_i) D^h_i with scalar gates g. In D the displacement is
damped by s(r) = (1 - r^2 / r_c^2)_+^2, so the field is continuous on the torus (the minimum image jumps
at |Δ_k| = 1/2, where s = 0 since r_c <= 1/2) and its flow is a diffeomorphism of the torus: the density
of the change of variables integrates to one (tested). The features start from the
conditioning (θ, log N, time) alone, the same for every point; only the pair geometry tells points apart.
Cost O(n^2) per block per set (the pair geometry is pairwise by nature); optional ISAB blocks
(:class:`physgen.nn.set_transformer._ISAB`, O(n m)) add global mixing between the geometric blocks.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from physgen.nn.mlp import MLP
from physgen.nn.set_transformer import _ISAB

__all__ = ["PeriodicSetField", "wrap_displacement"]


def wrap_displacement(delta: Tensor) -> Tensor:
    """Minimum-image displacement on the unit torus: ``delta - round(delta)``, in [-1/2, 1/2]."""
    return delta - torch.round(delta)


class _GeoBlock(nn.Module):
    """One attention block with a learned bias of the pair geometry (module docstring)."""

    def __init__(self, features: int, heads: int, pair_features: int):
        super().__init__()
        self.heads, self.dh = heads, features // heads
        self.norm1, self.norm2 = nn.LayerNorm(features), nn.LayerNorm(features)
        self.qkv = nn.Linear(features, 3 * features)
        self.bias = nn.Linear(pair_features, heads, bias=False)  # b^h(φ): linear in the radial basis
        self.out = nn.Linear(features + heads * pair_features, features)
        self.ff = nn.Sequential(nn.Linear(features, 2 * features), nn.SiLU(), nn.Linear(2 * features, features))
        self.gate = nn.Linear(features, heads)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def forward(self, h: Tensor, phi: Tensor, delta: Tensor, blocked: Tensor) -> tuple[Tensor, Tensor]:
        """h ``(B, n, F)``, phi ``(B, n, n, P)``, delta ``(B, n, n, d)``, blocked ``(B, 1, n, n)`` (0 or -inf)
        -> (h ``(B, n, F)``, velocity contribution ``(B, n, d)``)."""
        b, n, f = h.shape
        q, k, v = self.qkv(self.norm1(h)).reshape(b, n, 3, self.heads, self.dh).permute(2, 0, 3, 1, 4)
        logits = torch.baddbmm(
            self.bias(phi).permute(0, 3, 1, 2).reshape(-1, n, n),
            q.reshape(-1, n, self.dh),
            k.reshape(-1, n, self.dh).transpose(-1, -2),
            alpha=1 / math.sqrt(self.dh),
        )
        alpha = torch.softmax(logits.reshape(b, self.heads, n, n) + blocked, dim=-1)  # (B, H, n, n)
        values = (alpha @ v).transpose(1, 2).reshape(b, n, f)
        a_i = alpha.transpose(1, 2).reshape(b * n, self.heads, n)  # per query point: (H, n)
        pair = torch.bmm(a_i, phi.reshape(b * n, n, -1)).reshape(b, n, -1)  # Σ_j α_ij φ_ij
        h = h + self.out(torch.cat([values, pair], -1))
        h = h + self.ff(self.norm2(h))
        disp = torch.bmm(a_i, delta.reshape(b * n, n, -1)).reshape(b, n, self.heads, -1)  # Σ_j α_ij Δ_ij
        return h, (self.gate(h)[..., None] * disp).sum(2)


class PeriodicSetField(nn.Module):
    """Velocity field v(x_t, t | conditioning) of a padded point set on the unit torus.

    Args:
        point_dim: d.
        cond_features: size of the conditioning vector (θ's encoding, log N, time features).
        hidden_features: F (divisible by ``heads``).
        heads: attention heads.
        num_layers: geometric attention blocks.
        num_rbf: R radial features up to ``cutoff`` (a fraction of the box side).
        num_inducing: m > 0 adds an ISAB block (O(n m)) after each geometric block.
    """

    centres: Tensor  # buffer (R,): the radial basis centres

    def __init__(
        self,
        point_dim: int,
        cond_features: int,
        *,
        hidden_features: int = 64,
        heads: int = 4,
        num_layers: int = 3,
        num_rbf: int = 16,
        cutoff: float = 0.25,
        num_inducing: int = 0,
    ):
        super().__init__()
        if hidden_features % heads:
            raise ValueError(f"hidden_features ({hidden_features}) must be divisible by heads ({heads})")
        if not 0 < cutoff <= 0.5 or num_rbf < 1 or num_layers < 1 or num_inducing < 0:
            raise ValueError(
                f"need 0 < cutoff <= 0.5 (box units), num_rbf >= 1, num_layers >= 1, num_inducing >= 0; "
                f"got cutoff={cutoff}, num_rbf={num_rbf}, num_layers={num_layers}, num_inducing={num_inducing}"
            )
        self.point_dim, self.cutoff = int(point_dim), float(cutoff)
        self.register_buffer("centres", torch.linspace(0.0, cutoff, num_rbf), persistent=False)
        self.width = cutoff / max(num_rbf - 1, 1)
        self.cond = MLP(cond_features, hidden_features, (hidden_features,))
        pair = num_rbf + 1
        self.blocks = nn.ModuleList(_GeoBlock(hidden_features, heads, pair) for _ in range(num_layers))
        self.mixers = nn.ModuleList(
            _ISAB(hidden_features, heads, num_inducing) for _ in range(num_layers if num_inducing else 0)
        )

    def pair_geometry(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x ``(B, n, d)`` on the unit torus -> (φ ``(B, n, n, R + 1)``, s(r) Δ ``(B, n, n, d)``)."""
        delta = wrap_displacement(x[:, None, :, :] - x[:, :, None, :])  # Δ_ij = x_j - x_i
        r = delta.square().sum(-1).add_(1e-12).sqrt_()
        rbf = (r[..., None] / self.width - self.centres / self.width).abs_().neg_().add_(1.0).clamp_(min=0.0)
        envelope = (1 - (r / self.cutoff).square()).clamp_(min=0.0).square_()  # C¹, 0 for r >= r_c
        return torch.cat([rbf, (r / self.cutoff).clamp(max=1.0)[..., None]], -1), delta * envelope[..., None]

    def forward(self, x: Tensor, mask: Tensor, cond: Tensor) -> Tensor:
        """x ``(B, n, d)``, mask ``(B, n)`` bool, cond ``(B, cond_features)`` -> velocity ``(B, n, d)``
        (0 on padding)."""
        b, n, _ = x.shape
        phi, delta = self.pair_geometry(x)
        eye = torch.eye(n, dtype=torch.bool, device=x.device)
        allowed = mask[:, None, :] | eye  # real keys, and each point itself (an empty set stays finite)
        blocked = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill(~allowed, float("-inf"))[
            :, None
        ]
        h = self.cond(cond)[:, None, :].expand(b, n, -1)
        v = torch.zeros_like(x)
        keys = mask.clone()
        keys[~mask.any(-1), 0] = True  # an empty set gives ISAB one (padded) key rather than NaN
        for i, block in enumerate(self.blocks):
            h, dv = block(h, phi, delta, blocked)
            v = v + dv
            if self.mixers:
                h = self.mixers[i](h, keys)
        return v * mask[..., None].to(v.dtype)
