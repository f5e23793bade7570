"""Per-component CDF and inverse CDF of a prior with independent components (``marginal_cdfs``).

Used to sample a prior restricted to a box exactly, by inverse CDF per component (truncated sequential NPE).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, MultivariateNormal, Uniform

from physgen.priors import Joint, LogNormal, LogUniform

__all__ = ["marginal_cdfs"]


def marginal_cdfs(prior: Distribution) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]] | None:
    """Per-component CDF and inverse CDF ``(..., D) -> (..., D)``, in float64, of a prior with independent
    components (BoxUniform, LogUniform, LogNormal, Normal or Uniform in Independent, diagonal
    MultivariateNormal, Joint of those); None for any other prior (e.g. a correlated MultivariateNormal)."""
    if isinstance(prior, Joint):
        found = [marginal_cdfs(p) for p in prior.parts]
        parts = [p for p in found if p is not None]
        if len(parts) < len(found):
            return None
        cuts = list(itertools.accumulate(prior.sizes))[:-1]

        def joined(i: int) -> Callable[[Tensor], Tensor]:
            return lambda t: torch.cat([p[i](c) for p, c in zip(parts, torch.tensor_split(t, cuts, -1))], -1)

        return joined(0), joined(1)
    if isinstance(prior, LogUniform):
        lo, hi = prior._log_low.double(), prior._log_high.double()
        return (lambda t: ((torch.log(t) - lo) / (hi - lo)).clamp(0, 1)), (lambda u: torch.exp(lo + u * (hi - lo)))
    if isinstance(prior, Independent) and isinstance(prior.base_dist, Uniform):  # BoxUniform too
        a, b = prior.base_dist.low.double(), prior.base_dist.high.double()
        return (lambda t: ((t - a) / (b - a)).clamp(0, 1)), (lambda u: a + u * (b - a))
    log = False
    if isinstance(prior, LogNormal):  # a normal in log θ
        m, s, log = prior.loc.double(), prior.scale.double(), True
    elif isinstance(prior, Independent) and isinstance(prior.base_dist, torch.distributions.Normal):
        m, s = prior.base_dist.loc.double(), prior.base_dist.scale.double()
    elif isinstance(prior, MultivariateNormal):
        tril = prior.scale_tril.double()
        if not torch.equal(tril, torch.diag_embed(torch.diagonal(tril))):
            return None
        m, s = prior.loc.double(), torch.diagonal(tril)
    else:
        return None
    f, g = (torch.log, torch.exp) if log else (_identity, _identity)
    return (lambda t: torch.special.ndtr((f(t) - m) / s)), (lambda u: g(m + s * torch.special.ndtri(u)))


def _identity(t: Tensor) -> Tensor:
    return t
