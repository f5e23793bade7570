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

Cost. Each batch is first trimmed to its largest real count n (exact,
:func:`physgen.nn.point_pairs.trim_padding`). With ``num_inducing = m > 0`` every self-attention
block is an induced block (ISAB, Lee et al. 2019),

    H = MAB(I, X) = attention of m learned inducing points over the real points,
    ISAB(X) = MAB(X, H),

of cost O(n m) instead of O(n^2); ``num_inducing = 0`` (default, old configs) keeps full SAB.

Periodic inputs (optional): ``fourier_features = K`` embeds each coordinate as
(cos, sin)(2π k x / L), k = 1..K, L = ``box_size``, so dot-product attention can form
translation-invariant kernels of x_i - x_j on the torus; ``neighbour_radii`` appends the
per-point log(1 + neighbour counts) of :class:`physgen.nn.deepsets.DeepSetsEncoder`;
``log_count`` gives ρ log N. ``use_coordinates = False`` drops the raw coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from physgen.nn.deepsets import points_and_mask
from physgen.nn.mlp import MLP
from physgen.nn.point_pairs import RowCache, encode_in_blocks, neighbour_counts

__all__ = ["SetTransformerEncoder"]


class _MHA(nn.Module):
    def __init__(self, features: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(features, features)
        self.kv = nn.Linear(features, 2 * features)
        self.out = nn.Linear(features, features)

    def forward(self, q: Tensor, kv: Tensor, mask: Tensor | None) -> Tensor:
        # q (B, Nq, F), kv (B, N, F), mask (B, N) True = real point (None: all real)
        b, nq, f = q.shape
        h = self.heads
        qh = self.q(q).reshape(b, nq, h, f // h).transpose(1, 2)
        k, v = self.kv(kv).reshape(b, kv.shape[1], 2, h, f // h).permute(2, 0, 3, 1, 4)
        am = None if mask is None else mask[:, None, None, :]
        o = F.scaled_dot_product_attention(qh, k, v, attn_mask=am)
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


class _ISAB(nn.Module):
    """Induced self-attention: m inducing points attend to the set, the set attends to them (O(N m))."""

    def __init__(self, features: int, heads: int, num_inducing: int):
        super().__init__()
        self.inducing = nn.Parameter(torch.randn(num_inducing, features) / features**0.5)
        self.norm0, self.norm1, self.norm2 = nn.LayerNorm(features), nn.LayerNorm(features), nn.LayerNorm(features)
        self.attn_in, self.attn_out = _MHA(features, heads), _MHA(features, heads)
        self.ff = nn.Sequential(nn.Linear(features, 2 * features), nn.SiLU(), nn.Linear(2 * features, features))

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        a = self.norm1(h)
        ind = self.inducing.expand(h.shape[0], -1, -1)
        summary = ind + self.attn_in(self.norm0(ind), a, mask)  # (B, m, F): padding is never a key
        h = h + self.attn_out(a, summary, None)
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
        num_inducing: inducing points m of ISAB blocks (linear cost); 0: full self-attention.
        fourier_features: K periodic frequencies per coordinate (0: none), box side ``box_size``.
        neighbour_radii: radii of per-point log(1 + neighbour counts) in the periodic box.
        box_size: side L of the periodic box.
        use_coordinates: embed the raw coordinates too.
        log_count: append log N to the pooled vector.
    """

    x_standardization = "none"
    accepts = ("points",)
    radii: Tensor  # buffers registered in __init__
    frequencies: Tensor

    def __init__(
        self,
        point_dim: int,
        out_features: int = 32,
        hidden_features: int = 64,
        heads: int = 4,
        num_layers: int = 2,
        num_seeds: int = 1,
        num_inducing: int = 0,
        fourier_features: int = 0,
        neighbour_radii: Sequence[float] = (),
        box_size: float = 1.0,
        use_coordinates: bool = True,
        log_count: bool = False,
    ):
        super().__init__()
        if hidden_features % heads:
            raise ValueError(f"hidden_features ({hidden_features}) must be divisible by heads ({heads})")
        if point_dim < 1 or out_features < 1 or num_layers < 0 or num_seeds < 1:
            raise ValueError(
                "SetTransformerEncoder needs point_dim >= 1, out_features >= 1, num_layers >= 0, num_seeds >= 1"
            )
        radii = [float(r) for r in neighbour_radii]
        if num_inducing < 0 or fourier_features < 0 or not box_size > 0:
            raise ValueError(
                f"num_inducing and fourier_features must be >= 0 and box_size > 0; got {num_inducing}, "
                f"{fourier_features}, {box_size}"
            )
        if any(not 0 < r <= box_size / 2 for r in radii):
            raise ValueError(f"neighbour_radii must lie in (0, box_size/2 = {box_size / 2:g}]; got {radii}")
        in_features = point_dim * (int(use_coordinates) + 2 * fourier_features) + len(radii)
        if in_features == 0:
            raise ValueError(
                "use_coordinates=False needs fourier_features or neighbour_radii: the points would be empty"
            )
        self.name = "set_transformer"
        self.point_dim, self.out_features = point_dim, out_features
        self.box_size, self.use_coordinates, self.log_count = float(box_size), bool(use_coordinates), bool(log_count)
        self.config: dict[str, object] = {
            "point_dim": point_dim,
            "out_features": out_features,
            "hidden_features": hidden_features,
            "heads": heads,
            "num_layers": num_layers,
            "num_seeds": num_seeds,
        }
        extra = {
            "num_inducing": num_inducing,
            "fourier_features": fourier_features,
            "neighbour_radii": radii,
            "box_size": self.box_size,
            "use_coordinates": self.use_coordinates,
            "log_count": self.log_count,
        }
        if num_inducing or fourier_features or radii or not use_coordinates or log_count:  # old configs: old keys
            self.config.update(extra)
        self.register_buffer("radii", torch.tensor(radii), persistent=False)
        self._counts = RowCache(per_point=True)
        self.register_buffer(
            "frequencies", 2 * math.pi / box_size * torch.arange(1, fourier_features + 1.0), persistent=False
        )
        self.embed = nn.Linear(in_features, hidden_features)
        self.blocks = nn.ModuleList(
            _ISAB(hidden_features, heads, num_inducing) if num_inducing else _SAB(hidden_features, heads)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(hidden_features)
        self.seeds = nn.Parameter(torch.randn(num_seeds, hidden_features) / hidden_features**0.5)
        self.pool = _MHA(hidden_features, heads)
        self.rho = MLP(num_seeds * hidden_features + int(log_count), out_features, (hidden_features,))

    def _neighbour_counts(self, pts: Tensor, m: Tensor) -> Tensor:
        return neighbour_counts(pts, m, self.box_size, self.radii)

    def point_features(self, pts: Tensor, m: Tensor) -> Tensor:
        """Per-point input ``(B, N, d), (B, N) -> (B, N, F)``: coordinates, Fourier features, log(1 + counts)."""
        feats = [pts] if self.use_coordinates else []
        if self.frequencies.numel():
            phase = (pts[..., None] * self.frequencies.to(pts)).flatten(-2)
            feats += [torch.cos(phase), torch.sin(phase)]
        if self.radii.numel():
            feats.append(torch.log1p(self._counts(pts, m, self._neighbour_counts)))
        return torch.cat(feats, -1) if len(feats) > 1 else feats[0]

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x ``(*B, N, d + 1)`` (mask last column) or ``(*B, N, d)`` with ``mask (*B, N)`` -> ``(*B, E)``."""
        pts, m = points_and_mask(x, mask, self.point_dim)
        batch, n = pts.shape[:-2], pts.shape[-2]
        out = encode_in_blocks(pts.reshape(-1, n, self.point_dim), m.reshape(-1, n), self._encode)
        return out.reshape(*batch, self.out_features)

    def _encode(self, pts: Tensor, m: Tensor) -> Tensor:
        """Trimmed ``pts (B, n, d)``, ``m (B, n)`` -> ``(B, E)``."""
        h = self.embed(self.point_features(pts, m))
        for block in self.blocks:
            h = block(h, m)
        seeds = self.seeds.expand(h.shape[0], -1, -1)
        z = self.pool(seeds, self.norm(h), m).flatten(1)
        if self.log_count:
            z = torch.cat([z, torch.log(m.sum(-1, keepdim=True).to(z.dtype))], -1)
        return self.rho(z)
