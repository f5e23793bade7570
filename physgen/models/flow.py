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

from collections.abc import Sequence

import torch
import zuko
from torch import Tensor, nn

__all__ = ["Flow"]


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
            self.flow = zuko.flows.NSF(dim, bins=bins, **common)
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
