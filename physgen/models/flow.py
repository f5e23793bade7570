"""Conditional normalizing flows on zuko: neural spline flows (NSF) and masked autoregressive flows (MAF).

A flow is a bijection f_c: R^D -> R^D (conditioned on a context c) pushing the target z
to a standard normal: ``log q(z | c) = log N(f_c(z); 0, I) + log |det ∂f_c/∂z|``. Training
minimises the negative log-likelihood ``-E[log q(z | c)]`` (maximum likelihood / forward KL).
Sampling draws ε ~ N(0, I) and returns ``f_c^{-1}(ε)``: for autoregressive transforms the
inverse takes D network passes, which is cheap for the low-dimensional θ of posteriors.

The model sees standardised, unconstrained targets (see :mod:`physgen.inference`), so no
sample can leave a bounded prior and sampling never needs rejection.

References: Durkan et al. 2019 (NSF), Papamakarios et al. 2017 (MAF), zuko (Rozet et al.).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
import zuko
from torch import Tensor, nn
from zuko.transforms import MonotonicRQSTransform

__all__ = ["Flow"]


class _RQS(MonotonicRQSTransform):
    """zuko's monotonic rational-quadratic spline with a faster bin normalisation.

    Identical maths: zuko first squashes the unconstrained widths/heights into
    ``|w| < |log slope| / 2`` (≈ 3.5), so ``exp(w) / Σ exp(w)`` needs no max-subtraction; written
    out it is about 5x faster than ``torch.softmax`` over the short last axis (8-10 bins), which
    dominated sampling time.
    """

    def __init__(self, widths: Tensor, heights: Tensor, derivatives: Tensor, bound: float = 5.0,
                 slope: float = 1e-3, **kwargs) -> None:
        torch.distributions.Transform.__init__(self, **kwargs)
        log_slope = math.log(slope)
        widths = (widths / (1 + abs(2 * widths / log_slope))).exp()
        heights = (heights / (1 + abs(2 * heights / log_slope))).exp()
        derivatives = derivatives / (1 + abs(derivatives / log_slope))
        widths = F.pad(widths / widths.sum(-1, keepdim=True), (1, 0), value=0)
        heights = F.pad(heights / heights.sum(-1, keepdim=True), (1, 0), value=0)
        derivatives = F.pad(derivatives, (1, 1), value=0)
        self.horizontal = bound * (2 * torch.cumsum(widths, dim=-1) - 1)
        self.vertical = bound * (2 * torch.cumsum(heights, dim=-1) - 1)
        self.derivatives = torch.exp(derivatives)


class Flow(nn.Module):
    """Conditional NSF or MAF.

    Args:
        dim: target dimension D (>= 1).
        context_dim: context dimension C (0 = unconditional).
        kind: "nsf" (rational-quadratic splines) or "maf" (affine).
        transforms: number of autoregressive transforms.
        hidden_features: hidden layer widths of each transform's MADE network.
        bins: spline bins (NSF only).
    """

    def __init__(
        self,
        dim: int,
        context_dim: int,
        *,
        kind: str = "nsf",
        transforms: int = 5,
        hidden_features: Sequence[int] = (64, 64),
        bins: int = 8,
    ):
        super().__init__()
        if dim < 1 or context_dim < 0:
            raise ValueError(f"Flow needs dim >= 1 and context_dim >= 0; got dim={dim}, context_dim={context_dim}")
        if kind not in ("nsf", "maf"):
            raise ValueError(f"Flow kind must be 'nsf' or 'maf'; got {kind!r}")
        self.name = kind
        self.dim, self.context_dim = dim, context_dim
        self.config = {
            "dim": dim,
            "context_dim": context_dim,
            "transforms": transforms,
            "hidden_features": list(hidden_features),
            "bins": bins,
        }
        common = dict(context=context_dim, transforms=transforms, hidden_features=tuple(hidden_features))
        if kind == "nsf":
            # zuko's spline flows need D >= 1; with D == 1 the MADE has no conditioner inputs but the context.
            # zuko's NSF is MAF with a spline univariate transform; the same module tree (and state dict)
            self.flow = zuko.flows.MAF(dim, univariate=partial(_RQS, slope=1e-3),
                                       shapes=[(bins,), (bins,), (bins - 1,)], **common)
        else:
            self.flow = zuko.flows.MAF(dim, **common)

    def _dist(self, context: Tensor):
        return self.flow(context if self.context_dim > 0 else None)

    def loss(self, target: Tensor, context: Tensor) -> Tensor:
        """Mean negative log-likelihood. target ``(B, D)``, context ``(B, C)`` -> scalar."""
        return -self._dist(context).log_prob(target).mean()

    def log_prob(self, target: Tensor, context: Tensor) -> Tensor:
        """target ``(*B, D)``, context ``(*B, C)`` (broadcastable) -> ``(*B,)``."""
        if self.context_dim > 0:
            batch = torch.broadcast_shapes(target.shape[:-1], context.shape[:-1])
            target = target.expand(*batch, self.dim)
            context = context.expand(*batch, self.context_dim)
        return self._dist(context).log_prob(target)

    def sample(
        self, shape: tuple[int, ...], context: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """context ``(*Bc, C)`` -> samples ``(*shape, *Bc, D)``."""
        batch = tuple(context.shape[:-1]) if self.context_dim > 0 else ()
        dist = self._dist(context)
        eps = torch.randn(
            (*shape, *batch, self.dim), generator=generator, device=context.device, dtype=context.dtype
        )
        base = dist.base.base_dist  # zuko DiagNormal (standard normal for NSF/MAF)
        return dist.transform.inv(eps * base.scale + base.loc)
