r"""Coupling transform with a monotonic rational-quadratic spline, written for few tensor operations.

Same maths and parameters as zuko's ``GeneralCouplingTransform`` with ``MonotonicRQSTransform`` (Durkan et
al. 2019; zuko's bin normalisation and minimum slope), so a module state dict is interchangeable with it.
Coordinates with ``mask = True`` (x_a) pass unchanged and condition, with the context c, a network whose
output sets K-bin splines on the others (x_b):

    widths w = softmax'(ŵ), heights h = softmax'(ĥ), knot slopes d = exp(d̂') (1 at both ends),
    x_k = B (2 Σ_{j<k} w_j - 1),  y_k = B (2 Σ_{j<k} h_j - 1),  k = 0..K,

where ``softmax'`` / ``d̂'`` first squash the raw values into ``|·| < |log slope| / 2`` and ``|log slope|``
(zuko's parametrisation). In bin k, with z = (x - x_k)/(x_{k+1} - x_k) and s = (y_{k+1} - y_k)/(x_{k+1} - x_k),

    y = y_k + (y_{k+1} - y_k) (s z² + d_k z(1-z)) / (s + (d_k + d_{k+1} - 2s) z(1-z)),
    dy/dx = s² (2 s z(1-z) + d_k (1-z)² + d_{k+1} z²) / (s + (d_k + d_{k+1} - 2s) z(1-z))²;

outside [-B, B] the spline is the identity. zuko builds the same function from general pieces (index
split and merge, a dependent transform, per-tensor padding and gathers); this module gathers all knot
quantities of a bin in one operation and merges with one ``cat`` + ``index_select``: a coupling layer's
forward + backward at batch 512 takes 1.5 instead of 1.76 ms on one CPU core, a training step of the default
two-moons flow about 13% less (docs/flows.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Transform, constraints
from zuko.flows.coupling import GeneralCouplingTransform
from zuko.utils import broadcast

__all__ = ["SplineCoupling", "spline_tables"]


def spline_tables(phi: Tensor, bins: int, bound: float, slope: float) -> Tensor:
    """Raw network output ``(*, 3K - 1)`` -> knot table ``(*, K + 1, 3)`` of (x_k, y_k, d_k)."""
    log_slope = math.log(slope)
    wh = phi[..., : 2 * bins].unflatten(-1, (2, bins))
    wh = (wh / (1 + (2 / abs(log_slope)) * wh.abs())).exp()  # |.| < |log slope| / 2: no max-subtraction needed
    wh = wh / wh.sum(-1, keepdim=True)
    knots = bound * (2 * F.pad(torch.cumsum(wh, -1), (1, 0)) - 1)  # (*, 2, K + 1)
    d = phi[..., 2 * bins :]
    d = F.pad((d / (1 + d.abs() / abs(log_slope))).exp(), (1, 1), value=1.0)  # (*, K + 1)
    return torch.cat([knots, d.unsqueeze(-2)], -2).transpose(-1, -2)


def _bin(table: Tensor, value: Tensor, column: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Locate ``value (*,)`` in the knots of ``table[..., column]`` (0: x, 1: y) and gather its bin's ends."""
    bins = table.shape[-2] - 1
    k = (table[..., column] < value.unsqueeze(-1)).sum(-1) - 1
    inside = (k >= 0) & (k < bins)
    k = k.clamp(0, bins - 1)
    idx = torch.stack((k, k + 1), -1).unsqueeze(-1).expand(*k.shape, 2, 3)
    lo, hi = table.gather(-2, idx).unbind(-2)  # (*, 3) each: (x, y, d) at knots k and k + 1
    (x0, y0, d0), (x1, y1, d1) = lo.unbind(-1), hi.unbind(-1)
    return inside, x0, x1, y0, y1, d0, d1


class _CouplingRQS(Transform):
    """The transform of one context: x -> y with y_a = x_a, y_b = spline(x_b | x_a, c)."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, owner: SplineCoupling, context: Tensor | None) -> None:
        super().__init__()
        self.owner, self.context = owner, context

    def _table(self, x_a: Tensor) -> Tensor:
        o = self.owner
        h = x_a if self.context is None else torch.cat(broadcast(x_a, self.context, ignore=1), -1)
        phi = o.hyper(h).unflatten(-1, (-1, o.total))  # (*, D_b, 3K - 1)
        return spline_tables(phi, o.bins, o.bound, o.slope)

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x.index_select(-1, self.owner.idx_a), x.index_select(-1, self.owner.idx_b)

    def _merge(self, a: Tensor, b: Tensor) -> Tensor:
        a, b = broadcast(a, b, ignore=1)
        return torch.cat((a, b), -1).index_select(-1, self.owner.order)

    def call_and_ladj(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x_a, x_b = self._split(x)
        inside, x0, x1, y0, y1, d0, d1 = _bin(self._table(x_a), x_b, 0)
        dx, dy = x1 - x0, y1 - y0
        s = dy / dx
        z = inside * (x_b - x0) / dx
        zz = z * (1 - z)
        den = s + (d0 + d1 - 2 * s) * zz
        y = y0 + dy * (s * z * z + d0 * zz) / den
        jac = s * s * (2 * s * zz + d0 * (1 - z) ** 2 + d1 * z * z) / (den * den)
        ladj = (inside * jac.log()).sum(-1)
        return self._merge(x_a, torch.where(inside, y, x_b)), ladj

    def _call(self, x: Tensor) -> Tensor:
        return self.call_and_ladj(x)[0]

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        return self.call_and_ladj(x)[1]

    def _inverse(self, y: Tensor) -> Tensor:
        y_a, y_b = self._split(y)
        inside, x0, x1, y0, y1, d0, d1 = _bin(self._table(y_a), y_b, 1)
        dx, dy = x1 - x0, y1 - y0
        s = dy / dx
        r = inside * (y_b - y0)
        a = dy * (s - d0) + r * (d0 + d1 - 2 * s)
        b = dy * d0 - r * (d0 + d1 - 2 * s)
        c = -s * r
        z = 2 * c / (-b - (b * b - 4 * a * c).sqrt())
        return self._merge(y_a, torch.where(inside, x0 + z * dx, y_b))


class SplineCoupling(GeneralCouplingTransform):
    """Coupling rational-quadratic spline transform (lazy: call with a context to get the transform).

    Args:
        features: D >= 2.
        context: context features C.
        mask: ``(D,)`` bool, True = passed through and conditioning (x_a).
        bins: K spline bins on [-bound, bound].
        bound: B, the spline's (co)domain half-width (identity outside).
        slope: minimum slope of the spline (zuko's default 1e-3).
        **kwargs: the conditioner network (zuko MLP: hidden_features, activation...).
    """

    def __init__(
        self,
        features: int,
        context: int,
        mask: Tensor,
        *,
        bins: int = 10,
        bound: float = 5.0,
        slope: float = 1e-3,
        **kwargs,
    ) -> None:
        super().__init__(features, context, mask=mask, shapes=[(bins,), (bins,), (bins - 1,)], **kwargs)
        self.bins, self.bound, self.slope = bins, bound, slope
        idx_a, idx_b = self.mask.nonzero().squeeze(-1), (~self.mask).nonzero().squeeze(-1)
        self.register_buffer("idx_a", idx_a, persistent=False)
        self.register_buffer("idx_b", idx_b, persistent=False)
        self.register_buffer("order", torch.argsort(torch.cat((idx_a, idx_b))), persistent=False)

    def forward(self, c: Tensor | None = None) -> Transform:
        return _CouplingRQS(self, c)

    def extra_repr(self) -> str:
        # zuko's extra_repr builds its univariate transform from random parameters; this layer has none
        return f"(mask): {self.mask.int().tolist()}, bins={self.bins}, bound={self.bound}, slope={self.slope}"
