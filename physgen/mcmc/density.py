r"""The unnormalised log posterior of a simulator with an explicit likelihood.

Math:
    log p(θ | x_obs) = log π(θ) + log p(x_obs | θ) + const, and -inf where π(θ) = 0.

The likelihood is evaluated only at θ inside the prior's support, so simulators whose
``log_likelihood`` rejects out-of-support θ (or returns NaN there) are safe to use with any
sampler: points outside the support simply get -inf.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["log_posterior", "simulator_name"]


def simulator_name(simulator: object) -> str:
    """A simulator's ``name`` attribute, or its class name."""
    return str(getattr(simulator, "name", None) or type(simulator).__name__)


def log_posterior(simulator: object, x_obs: Tensor) -> Callable[[Tensor], Tensor]:
    """Build θ ↦ log π(θ) + log p(x_obs | θ) for one observation.

    Args:
        simulator: a ``physgen.core.Simulator`` with a ``prior`` and a ``log_likelihood(theta, x)``.
        x_obs: one observation of shape ``simulator.x_shape``; it is broadcast against θ's batch.

    Returns:
        A callable ``theta: (*B, D) -> (*B,)``: -inf outside the prior's support (the likelihood is
        not evaluated there). Its dtype is the promotion of the prior's and the likelihood's.

    Raises:
        ValueError: the simulator has no ``log_likelihood`` (the message names it), or no ``prior``.
    """
    name = simulator_name(simulator)
    log_likelihood = getattr(simulator, "log_likelihood", None)
    if not callable(log_likelihood):
        raise ValueError(
            f"simulator {name!r} has no log_likelihood(theta, x), so there is no MCMC reference for it: "
            "validate it by calibration (SBC, coverage, TARP) instead, or give the simulator a "
            "log_likelihood(theta, x) -> (*B,) method"
        )
    prior = getattr(simulator, "prior", None)
    if prior is None or not callable(getattr(prior, "log_prob", None)):
        raise ValueError(f"simulator {name!r} has no prior with log_prob; give it a torch Distribution as .prior")
    x_obs = torch.as_tensor(x_obs)

    def log_density(theta: Tensor) -> Tensor:
        lp = prior.log_prob(theta)
        inside = torch.isfinite(lp)
        x = x_obs.to(theta.device)
        if bool(inside.all()):
            ll = log_likelihood(theta, x)
            return lp + ll
        out = torch.full(lp.shape, float("-inf"), dtype=torch.promote_types(lp.dtype, theta.dtype), device=lp.device)
        if bool(inside.any()):
            vals = lp[inside] + log_likelihood(theta[inside], x)
            out = out.to(torch.promote_types(out.dtype, vals.dtype))
            out[inside] = vals.to(out.dtype)
        return out

    log_density.__doc__ = f"log prior + log likelihood of {name} at x_obs: theta (*B, D) -> (*B,)"
    return log_density
