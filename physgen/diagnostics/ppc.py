r"""Posterior predictive check.

Math:
    For an observation x_o, draw θ^(s) ~ q(θ | x_o) and x^(s) ~ p(x | θ^(s)), s = 1..S, and compare a summary
    statistic t (vector-valued, K components) of the replicates with t(x_o). The posterior predictive
    p-value of component k is p_k = #{s : t_k(x^(s)) ≥ t_k(x_o)} / S (one-sided, upper tail); the two-sided
    value is 2·min(p_k, 1 - p_k). Values near 0 (or 1) say the fitted model cannot reproduce that feature of
    the data. ``passed`` holds when every two-sided value exceeds ``alpha`` / (number of tests)
    (Bonferroni). PPC p-values are conservative (x_o informed θ); a failure is informative, a pass is weak.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from physgen.diagnostics.sampling import posterior_device, posterior_draws

__all__ = ["PPCResult", "posterior_predictive_check"]


@runtime_checkable
class _Simulates(Protocol):
    """What the check simulates replicates with (every physgen Simulator has it)."""

    def simulate(self, theta: Tensor, /, *, generator: torch.Generator | None = None) -> Tensor: ...


@dataclass
class PPCResult:
    """Attributes:
    p_values: ``(B, K)`` one-sided upper-tail posterior predictive p-values.
    two_sided: ``(B, K)`` 2·min(p, 1 - p).
    statistic_obs: ``(B, K)`` t(x_o).
    statistic_rep: ``(S, B, K)`` t of the replicates.
    alpha: family-wise level; passed: every two-sided p-value > alpha / (B·K).
    """

    p_values: Tensor
    two_sided: Tensor
    statistic_obs: Tensor
    statistic_rep: Tensor
    alpha: float
    passed: bool

    def as_dict(self) -> dict:
        """JSON-ready summary."""
        return {
            "p_values": self.p_values.tolist(),
            "two_sided": self.two_sided.tolist(),
            "min_two_sided": float(self.two_sided.min()),
            "num_samples": int(self.statistic_rep.shape[0]),
            "alpha": self.alpha,
            "passed": self.passed,
        }


@torch.no_grad()
def posterior_predictive_check(
    posterior: object,
    simulator: object,
    x_obs: Tensor,
    *,
    num_samples: int = 200,
    statistic: Callable[[Tensor], Tensor] | None = None,
    seed: int = 0,
    alpha: float = 0.01,
) -> PPCResult:
    """Posterior predictive p-values of observations.

    Args:
        posterior: a physgen Posterior or any object with ``sample(n, x, *, generator) -> (n, B, D)``.
        simulator: an object with ``simulate(theta (*B, D), *, generator) -> (*B, *x_shape)`` and ``x_shape``.
        x_obs: one observation ``x_shape`` or a batch ``(B, *x_shape)``.
        num_samples: S replicates per observation.
        statistic: ``t(x (*B, *x_shape)) -> (*B, K)``; default: the components of x flattened.
        seed: seeds the posterior draws and the simulations (one generator on the posterior's device).
        alpha: family-wise level of ``passed``.

    Returns:
        A :class:`PPCResult` (B = 1 for a single observation).
    """
    if not isinstance(simulator, _Simulates):
        raise TypeError(
            "simulator must have simulate(theta, *, generator) -> x (a physgen Simulator has it); got "
            f"{type(simulator).__name__}"
        )
    x_shape = tuple(getattr(simulator, "x_shape", x_obs.shape[1:]))
    if tuple(x_obs.shape) == x_shape:
        x_obs = x_obs.unsqueeze(0)
    if tuple(x_obs.shape[1:]) != x_shape:
        raise ValueError(
            f"posterior_predictive_check: x_obs must have shape {x_shape} or (B, *{x_shape}); got {tuple(x_obs.shape)}"
        )
    device = posterior_device(posterior, x_obs.device)
    x_obs = x_obs.to(device)
    theta = posterior_draws(posterior, x_obs, num_samples, seed=seed)  # (S, B, D)
    gen = torch.Generator(device=theta.device).manual_seed(int(seed) + 1)
    x_rep = simulator.simulate(theta, generator=gen).to(x_obs)
    t = statistic if statistic is not None else (lambda v: v.reshape(*v.shape[: v.dim() - len(x_shape)], -1))
    t_obs, t_rep = t(x_obs), t(x_rep)
    if t_obs.dim() != 2 or tuple(t_rep.shape) != (theta.shape[0], *t_obs.shape):
        raise ValueError(
            f"posterior_predictive_check: statistic must map (*B, *x_shape) to (*B, K); got {tuple(t_obs.shape)} "
            f"for x_obs and {tuple(t_rep.shape)} for the replicates"
        )
    p = (t_rep >= t_obs.unsqueeze(0)).double().mean(0)
    two = (2.0 * torch.minimum(p, 1.0 - p)).clamp_max(1.0)
    passed = bool((two > alpha / two.numel()).all())
    return PPCResult(p, two, t_obs, t_rep, float(alpha), passed)
