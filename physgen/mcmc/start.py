"""Where MCMC chains start: inside the prior's support, ranked by the posterior (shared by the emcee and the
batched references)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from physgen.mcmc.density import simulator_name
from physgen.priors import sample_prior

__all__ = ["prior_like", "start"]


def prior_like(prior) -> Tensor:
    """A tensor with the prior's dtype and device (one prior draw)."""
    return sample_prior(prior, (1,), generator=torch.Generator().manual_seed(0))


def start(simulator, x_obs: Tensor, logp, W: int, D: int, initial, generator: torch.Generator, like: Tensor) -> Tensor:
    """(W, D) walker positions with finite log posterior."""
    name = simulator_name(simulator)
    if initial is None:
        m = max(2000, 20 * W)
        gen = torch.Generator(device=like.device).manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
        cand = sample_prior(simulator.prior, (m,), generator=gen)
        lp = logp(cand)
        order = torch.argsort(torch.nan_to_num(lp, nan=-math.inf), descending=True)[:W]
        if not bool(torch.isfinite(lp[order]).all()):
            raise ValueError(
                f"reference_posterior: fewer than {W} of {m} prior draws have a finite log posterior for {name}; "
                "x_obs may be impossible under the prior. Pass initial= (a Posterior or points (n, D))"
            )
        return cand[order]
    if torch.is_tensor(initial):
        cand = initial.detach().to(like.device, like.dtype)
        if cand.dim() != 2 or cand.shape[-1] != D:
            raise ValueError(f"reference_posterior: initial points must have shape (n, {D}); got {tuple(cand.shape)}")
    elif callable(getattr(initial, "sample", None)):
        seed = int(torch.randint(2**62, (1,), generator=generator))
        cand = initial.sample(2 * W, x_obs, seed=seed).detach().to(like.device, like.dtype)
        if cand.dim() != 2 or cand.shape[-1] != D:
            raise ValueError(
                f"reference_posterior: initial.sample(n, x_obs) returned shape {tuple(cand.shape)}, not (n, {D})"
            )
    else:
        raise ValueError(
            f"reference_posterior: initial must be None, a physgen Posterior or a tensor (n, {D}); got {type(initial).__name__}"
        )
    cand = cand[torch.isfinite(logp(cand))]
    if cand.shape[0] < W:
        raise ValueError(
            f"reference_posterior: only {cand.shape[0]} initial points have a finite log posterior, fewer than the "
            f"{W} walkers; pass more points inside the prior's support, or lower num_walkers"
        )
    pick = torch.randperm(cand.shape[0], generator=generator)[:W].to(cand.device)
    return cand[pick]
