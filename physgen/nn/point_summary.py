r"""Pair-correlation summary encoder of point sets in a periodic box: binned ĝ(r) and log N -> MLP.

The classical compression of a galaxy catalogue. For each set of N real points in the periodic box
of side L (volume V = L^d), with minimum-image separations,

    ĝ(r_b) = DD_b / RR_b,   DD_b = #ordered pairs i != j with r_ij in bin b,   RR_b = N (N - 1) V_b / V,

V_b the volume of the shell (3D) / annulus (2D) of bin b (the natural estimator with analytic
randoms; exact for r <= L/2). ĝ ≈ 1 for a Poisson process. The summary is

    s = (log(ĝ(r_1) + 1/2), ..., log(ĝ(r_R) + 1/2), log N)     (R + 1 features),

standardised per feature with buffers set once by :meth:`standardize_from` from raw training rows
(saved with the posterior), then an MLP maps it to ``out_features``. Bin edges: ``bins`` edges
log-spaced from ``r_min`` to ``r_max`` (``spacing = "log"``, the default, with a first bin [0, r_min])
or linear from 0 to ``r_max``; r in units of the box side when ``box_size = 1``.

Input: padded point sets ``(*B, N_max, d + 1)`` (mask in the last column, :mod:`physgen.shapes`);
``x_standardization = "none"`` (the summary needs the raw coordinates).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from physgen.nn.deepsets import points_and_mask
from physgen.nn.mlp import MLP
from physgen.nn.point_pairs import RowCache, pair_counts, shell_volumes, trim_padding

__all__ = ["PairCorrelationEncoder", "pair_correlation_edges"]

_SUMMARY_BLOCK = 256  # sets per block in standardize_from


def pair_correlation_edges(bins: int, r_max: float, r_min: float, spacing: str) -> Tensor:
    """The ``(bins + 1,)`` bin edges (float64): 0, then log-spaced r_min..r_max, or linear 0..r_max."""
    if spacing == "log":
        if not 0 < r_min < r_max:
            raise ValueError(f"log spacing needs 0 < r_min < r_max; got r_min={r_min}, r_max={r_max}")
        return torch.cat(
            [
                torch.zeros(1, dtype=torch.float64),
                torch.logspace(math.log10(r_min), math.log10(r_max), bins, dtype=torch.float64),
            ]
        )
    if spacing == "linear":
        return torch.linspace(0.0, r_max, bins + 1, dtype=torch.float64)
    raise ValueError(f"spacing must be 'log' or 'linear'; got {spacing!r}")


class PairCorrelationEncoder(nn.Module):
    """Binned pair correlation ĝ(r) and log N of a point set, standardised, through an MLP.

    Args:
        point_dim: d, coordinates per point.
        out_features: E.
        box_size: side L of the periodic box (coordinates in [0, L)).
        bins: number of separation bins R (>= 2).
        r_max: largest separation (<= L/2); default L/4.
        r_min: first log-spaced edge; default L/200.
        spacing: "log" or "linear".
        hidden_features: widths of the MLP.

    ``forward(x (*B, N_max, d + 1)) -> (*B, E)``; :meth:`summary` gives the unstandardised ``(*B, R + 1)``.
    """

    name = "pair_correlation"
    x_standardization = "none"
    accepts = ("points",)
    edges: Tensor  # buffers registered in __init__
    shell_fraction: Tensor
    shift: Tensor
    scale: Tensor

    def __init__(
        self,
        point_dim: int,
        out_features: int = 32,
        box_size: float = 1.0,
        bins: int = 16,
        r_max: float | None = None,
        r_min: float | None = None,
        spacing: str = "log",
        hidden_features: Sequence[int] = (64, 64),
    ):
        super().__init__()
        if point_dim < 1 or out_features < 1 or bins < 2:
            raise ValueError(
                f"PairCorrelationEncoder needs point_dim >= 1, out_features >= 1 and bins >= 2; got "
                f"{point_dim}, {out_features}, {bins}"
            )
        if not (math.isfinite(box_size) and box_size > 0):
            raise ValueError(f"box_size must be positive; got {box_size}")
        r_max = box_size / 4 if r_max is None else float(r_max)
        r_min = box_size / 200 if r_min is None else float(r_min)
        if not 0 < r_max <= box_size / 2:
            raise ValueError(f"r_max must lie in (0, box_size/2 = {box_size / 2:g}] (minimum image); got {r_max}")
        self.point_dim, self.out_features, self.box_size = int(point_dim), int(out_features), float(box_size)
        self.config = {
            "point_dim": self.point_dim,
            "out_features": self.out_features,
            "box_size": self.box_size,
            "bins": int(bins),
            "r_max": r_max,
            "r_min": r_min,
            "spacing": spacing,
            "hidden_features": list(hidden_features),
        }
        edges = pair_correlation_edges(int(bins), r_max, r_min, spacing)
        self.register_buffer("edges", edges, persistent=False)
        self.register_buffer(
            "shell_fraction", shell_volumes(edges, self.point_dim) / self.box_size**self.point_dim, persistent=False
        )
        self.register_buffer("shift", torch.zeros(int(bins) + 1))
        self.register_buffer("scale", torch.ones(int(bins) + 1))
        self.mlp = MLP(int(bins) + 1, self.out_features, hidden_features)
        self._pairs = RowCache(per_point=False)  # pair counts of sets seen before (exact memo)

    @classmethod
    def from_x_shape(cls, x_shape: tuple[int, ...], **options) -> PairCorrelationEncoder:
        """Build for point sets of event shape ``(N_max, d + 1)``."""
        if len(x_shape) != 2 or x_shape[-1] < 2:
            raise ValueError(f"pair_correlation takes padded point sets (N_max, d + 1); got x shape {tuple(x_shape)}")
        if "point_dim" in options:
            raise ValueError("pair_correlation takes point_dim from the data's x shape; leave it out")
        return cls(point_dim=int(x_shape[-1]) - 1, **options)

    def pair_correlation(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """ĝ per bin ``(*B, R)`` (float64) and the real counts N ``(*B,)`` of padded sets ``x (*B, N_max, d + 1)``.

        Sets with fewer than 2 points have ĝ = 0.
        """
        pts, m = points_and_mask(x, None, self.point_dim)
        batch, n = pts.shape[:-2], pts.shape[-2]
        pts, m = trim_padding(pts.reshape(-1, n, self.point_dim), m.reshape(-1, n))
        dd = self._pairs(pts, m, lambda p, mm: pair_counts(p, mm, self.box_size, self.edges))
        count = m.sum(-1).double()
        rr = (count * (count - 1)).clamp_min(1.0)[:, None] * self.shell_fraction.to(dd)
        return (dd / rr).reshape(*batch, -1), count.reshape(batch)

    def summary(self, x: Tensor) -> Tensor:
        """The unstandardised summary ``(log(ĝ + 1/2), log N)`` ``(*B, R + 1)`` in x's float dtype."""
        g, count = self.pair_correlation(x)
        s = torch.cat([torch.log(g + 0.5), torch.log(count)[..., None]], -1)
        return s.to(x.dtype if x.is_floating_point() else torch.float32)

    @torch.no_grad()
    def standardize_from(self, x: Tensor) -> None:
        """Set the summary's mean and standard deviation from raw training rows ``x (n, N_max, d + 1)``."""
        order = torch.argsort((x[..., -1] > 0.5).sum(-1))  # blocks of similar size: little padding to pair
        s = torch.cat(
            [
                self.summary(x[order[i : i + _SUMMARY_BLOCK]].to(self.shift.device))
                for i in range(0, len(x), _SUMMARY_BLOCK)
            ]
        ).double()
        sd = s.std(0) if len(s) > 1 else torch.ones_like(s[0])
        self.shift.copy_(s.mean(0))
        self.scale.copy_(torch.where(sd > 1e-8, sd, torch.ones_like(sd)))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x ``(*B, N_max, d + 1)`` (mask last column) -> ``(*B, E)``."""
        if mask is not None:
            from physgen.shapes import join_points

            x = join_points(x, mask)
        s = (self.summary(x) - self.shift.to(x.dtype)) / self.scale.to(x.dtype)
        return self.mlp(s)
