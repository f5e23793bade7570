r"""DeepSets encoder for variable-size point sets (Zaheer et al. 2017).

    f(X) = ρ( pool_{i : m_i = 1} φ(x_i) ),

with φ, ρ MLPs, m the mask (padding excluded) and pool one of ``"mean"`` (sum / count),
``"sum"`` or ``"max"``. Invariance is exact in floating point, not only in exact arithmetic:
before summing, each feature of φ is sorted over the set's points (padding placed last), so the
summation order, and therefore the rounding, does not depend on the order of the points.

Points follow :mod:`physgen.core`'s convention: one tensor ``(*B, N, d + 1)`` whose last column is
the mask, or ``x (*B, N, d)`` with an explicit boolean ``mask (*B, N)``. A set with no real
point has no summary and raises ``ValueError``. Coordinates are used raw
(``x_standardization = "none"``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from physgen.shapes import split_points
from physgen.nn.mlp import MLP
from physgen.nn.point_pairs import RowCache, encode_in_blocks, neighbour_counts, trim_padding

__all__ = ["DeepSetsEncoder", "points_and_mask", "sorted_masked_sum"]

_POOLS = ("mean", "sum", "max")


def points_and_mask(x: Tensor, mask: Tensor | None, point_dim: int) -> tuple[Tensor, Tensor]:
    """Split/validate a point set: returns points ``(*B, N, d)`` and a boolean mask ``(*B, N)``.

    Raises:
        ValueError: wrong shapes, or a set whose points are all masked.
    """
    if mask is None:
        if x.dim() < 2 or x.shape[-1] != point_dim + 1:
            raise ValueError(
                f"expected a padded point set (*B, N, {point_dim + 1}) with the mask as the last column "
                f"(or x (*B, N, {point_dim}) and mask=...); got {tuple(x.shape)}"
            )
        pts, m = split_points(x)
    else:
        if x.dim() < 2 or x.shape[-1] != point_dim:
            raise ValueError(f"with an explicit mask, x must be (*B, N, {point_dim}); got {tuple(x.shape)}")
        if tuple(mask.shape) != tuple(x.shape[:-1]):
            raise ValueError(
                f"mask must have shape {tuple(x.shape[:-1])} (x without its last dim); got {tuple(mask.shape)}"
            )
        pts, m = x, mask.bool() if mask.dtype == torch.bool else mask > 0.5
    if x.shape[-2] == 0 or bool((~m.any(-1)).any()):
        empty = int((~m.any(-1)).sum()) if x.shape[-2] else "all"
        raise ValueError(
            f"{empty} point set(s) have no real points (all masked or N = 0); a set needs at least one point with mask 1"
        )
    return pts, m


def sorted_masked_sum(h: Tensor, mask: Tensor) -> Tensor:
    """Sum ``h (*B, N, F)`` over the real points (``mask (*B, N)``), order-independent to the last bit.

    Each feature is sorted over N with padding moved to the end, then summed, so any permutation
    of the points gives bit-identical sums.
    """
    inf = torch.finfo(h.dtype).max
    key = torch.where(mask.unsqueeze(-1), h, torch.full_like(h, inf))
    srt, _ = torch.sort(key, dim=-2)
    srt = torch.where(srt == inf, torch.zeros_like(srt), srt)
    return srt.sum(-2)


class DeepSetsEncoder(nn.Module):
    """Permutation-invariant DeepSets summary network.

    Args:
        point_dim: d, coordinates per point.
        out_features: E.
        hidden_features: width of φ and ρ.
        latent_features: size of the pooled representation.
        pool: "mean", "sum" or "max".
        neighbour_radii: radii (coordinate unit, each <= box_size / 2) of the per-point neighbour
            counts given to φ; empty (default): none, φ sees the coordinates only.
        box_size: side of the periodic box of the neighbour counts.
        use_coordinates: give φ the coordinates (needs them or neighbour radii).
        log_count: append log N (real points) to the pooled vector.
    """

    x_standardization = "none"
    accepts = ("points",)
    radii: Tensor  # buffers (registered in __init__; the standardisation ones only when standardizes)
    feature_shift: Tensor
    feature_scale: Tensor
    count_shift: Tensor
    count_scale: Tensor

    def __init__(
        self,
        point_dim: int,
        out_features: int = 32,
        hidden_features: Sequence[int] = (64, 64),
        latent_features: int = 64,
        pool: str = "mean",
        neighbour_radii: Sequence[float] = (),
        box_size: float = 1.0,
        use_coordinates: bool = True,
        log_count: bool = False,
    ):
        super().__init__()
        if pool not in _POOLS:
            raise ValueError(f"pool must be one of {_POOLS}; got {pool!r}")
        if point_dim < 1 or out_features < 1:
            raise ValueError(
                f"DeepSetsEncoder needs point_dim >= 1 and out_features >= 1; got {point_dim}, {out_features}"
            )
        radii = [float(r) for r in neighbour_radii]
        if not box_size > 0:
            raise ValueError(f"box_size must be positive; got {box_size}")
        if any(not 0 < r <= box_size / 2 for r in radii):
            raise ValueError(f"neighbour_radii must lie in (0, box_size/2 = {box_size / 2:g}]; got {radii}")
        if not use_coordinates and not radii:
            raise ValueError("use_coordinates=False needs neighbour_radii: φ would see nothing")
        self.name = "deepsets"
        self.point_dim, self.out_features, self.pool = point_dim, out_features, pool
        self.box_size, self.use_coordinates, self.log_count = float(box_size), bool(use_coordinates), bool(log_count)
        self.config = {
            "point_dim": point_dim,
            "out_features": out_features,
            "hidden_features": list(hidden_features),
            "latent_features": latent_features,
            "pool": pool,
        }
        if radii or not use_coordinates or log_count:  # old configs keep their old keys
            self.config.update(
                neighbour_radii=radii,
                box_size=self.box_size,
                use_coordinates=self.use_coordinates,
                log_count=self.log_count,
            )
        self.register_buffer("radii", torch.tensor(radii), persistent=False)
        self._counts = RowCache(per_point=True)
        phi_in = (point_dim if use_coordinates else 0) + len(radii)
        self.standardizes = bool(radii) or self.log_count  # old configs: no buffers, raw inputs as before
        if self.standardizes:  # set by standardize_from (saved with the posterior)
            self.register_buffer("feature_shift", torch.zeros(phi_in))
            self.register_buffer("feature_scale", torch.ones(phi_in))
            self.register_buffer("count_shift", torch.zeros(()))
            self.register_buffer("count_scale", torch.ones(()))
        self.phi = MLP(phi_in, latent_features, hidden_features)
        self.rho = MLP(latent_features + int(log_count), out_features, hidden_features)

    def _neighbour_counts(self, pts: Tensor, m: Tensor) -> Tensor:
        return neighbour_counts(pts, m, self.box_size, self.radii)

    def point_features(self, pts: Tensor, m: Tensor) -> Tensor:
        """φ's raw input per point: ``(B, N, d), (B, N) -> (B, N, F)`` (coordinates and/or log(1 + counts))."""
        feats = [pts] if self.use_coordinates else []
        if self.radii.numel():
            feats.append(torch.log1p(self._counts(pts, m, self._neighbour_counts)))
        return torch.cat(feats, -1) if len(feats) > 1 else feats[0]

    @torch.no_grad()
    def standardize_from(self, x: Tensor) -> None:
        """With pair features or log N: set their mean/std over the real points of raw training rows
        ``x (n, N_max, d + 1)`` (the first 2,000 rows), so φ and ρ see standardised inputs."""
        if not self.standardizes:
            return
        x = x[:2000].to(self.feature_shift.device)
        pts, m = points_and_mask(x, None, self.point_dim)
        order = torch.argsort(m.sum(-1))
        feats, logn = [], []
        for idx in order.split(256):
            p, mm = trim_padding(pts[idx], m[idx])
            feats.append(self.point_features(p, mm)[mm].double())
            logn.append(torch.log(mm.sum(-1).double()))
        f, c = torch.cat(feats), torch.cat(logn)
        self.feature_shift.copy_(f.mean(0))
        self.feature_scale.copy_(f.std(0).clamp_min(1e-6) if len(f) > 1 else torch.ones_like(f[0]))
        self.count_shift.fill_(float(c.mean()))
        self.count_scale.fill_(max(float(c.std()), 1e-6) if len(c) > 1 else 1.0)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x ``(*B, N, d + 1)`` (mask last column) or ``(*B, N, d)`` with ``mask (*B, N)`` -> ``(*B, E)``."""
        pts, m = points_and_mask(x, mask, self.point_dim)
        batch, n = pts.shape[:-2], pts.shape[-2]
        out = encode_in_blocks(pts.reshape(-1, n, self.point_dim), m.reshape(-1, n), self._encode)
        return out.reshape(*batch, self.out_features)

    def _encode(self, pts: Tensor, m: Tensor) -> Tensor:
        """Trimmed ``pts (B, n, d)``, ``m (B, n)`` -> ``(B, E)``."""
        feats = self.point_features(pts, m)
        if self.standardizes:
            feats = (feats - self.feature_shift.to(feats)) / self.feature_scale.to(feats)
        h = self.phi(feats)
        if self.pool == "max":
            pooled = torch.where(m.unsqueeze(-1), h, torch.full_like(h, -torch.inf)).amax(-2)
        else:
            pooled = sorted_masked_sum(h, m)
            if self.pool == "mean":
                pooled = pooled / m.sum(-1, keepdim=True).to(h.dtype)
        if self.log_count:
            logn = (torch.log(m.sum(-1, keepdim=True).to(h.dtype)) - self.count_shift.to(h)) / self.count_scale.to(h)
            pooled = torch.cat([pooled, logn], -1)
        return self.rho(pooled)
