r"""sbibm's sir task: an SIR epidemic observed through binomial samples of the infected fraction.

θ = (β, γ): contact and recovery rates (1/day), β ~ LogNormal(log 0.4, 0.5), γ ~ LogNormal(log 0.125, 0.2).
With s = S/N, i = I/N (N = 10⁶, I₀ = 1, R₀ = 0): s' = -β s i, i' = β s i - γ i, from t = 0 to 160 days.
sbibm saves the solution every day (161 points) and keeps I at days 0, 17, 34, ..., 153 (``[::17]``):
x_k ~ Binomial(1000, clamp(I(t_k)/N, 0, 1)), k = 1..10, so x ``(10,)`` holds counts.

Exact likelihood: Σ_k log Binomial(x_k; 1000, p_k(θ)) with p_k from the ODE solution; exact up to the
solver's error (RK4 in (s, log i), sub-steps of at most ``max_step`` days; with the default 0.5 days the
absolute error of p is below 1e-4 and the log-likelihood within 0.01 of ``scipy.integrate.solve_ivp``'s at
tolerance 1e-11, over 200 prior draws; tested).

Departures from sbibm (docs/sbibm_tasks.md): sbibm solves (S, I, R) with Julia's DifferentialEquations
(adaptive, its default tolerances); here the same ODE is solved in batch in torch by RK4 in log i (the
rates do not grow with I there, so the fixed step stays stable). A row whose solution is not finite
(only for β far outside the prior, ~10² and above) gives a NaN observation, as sbibm's failed solves do.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from physgen.priors import LogNormal
from simulators.sbibm._ode import rk4
from simulators.sbibm._task import Task, resolve_device

__all__ = ["SIR"]


class SIR(Task):
    """sbibm's SIR model (module docstring). θ ``(2,)`` = (β, γ) > 0, x ``(10,)`` binomial counts.

    Args:
        max_step: the largest RK4 sub-step in days (0.5: log-likelihood within 0.01 of a tight solver's).
        device: device of the prior's tensors (``"auto"`` picks cuda if available).
    """

    name = "sir"
    definition_version = "sbibm-1.1.0/1"
    N, I0, R0, TOTAL_COUNT = 1_000_000.0, 1.0, 0.0, 1000
    T_SAVE = tuple(17.0 * k for k in range(10))  # days 0, 17, ..., 153: sbibm's [::17] of a daily grid

    def __init__(self, max_step: float = 0.5, device=None):
        dev = resolve_device(device)
        self.dim, self.x_shape = 2, (10,)
        self.max_step = float(max_step)
        self.config = {"max_step": self.max_step}
        self.prior = LogNormal([math.log(0.4), math.log(0.125)], [0.5, 0.2], device=dev)

    def infected_fraction(self, theta: Tensor) -> Tensor:
        """I(t_k)/N at the ten save times: θ ``(*B, 2)`` -> ``(*B, 10)``; NaN rows where the solve failed."""
        self._check(theta)
        beta, gamma = theta[..., 0:1], theta[..., 1:2]

        def f(y: Tensor) -> Tensor:
            s, i = y[..., 0:1], torch.exp(y[..., 1:2])
            return torch.cat([-beta * s * i, beta * s - gamma], dim=-1)

        s0 = (self.N - self.I0 - self.R0) / self.N
        y0 = torch.cat([torch.full_like(beta, s0), torch.full_like(beta, math.log(self.I0 / self.N))], dim=-1)
        y = rk4(f, y0, self.T_SAVE, self.max_step)  # (*B, 10, 2)
        i = torch.exp(y[..., 1])
        bad = ~torch.isfinite(y).all(-1).all(-1, keepdim=True)
        return torch.where(bad, torch.full_like(i, float("nan")), i)

    def simulate(self, theta: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """theta ``(*B, 2)`` -> x ``(*B, 10)`` binomial counts (NaN rows where the ODE solve failed)."""
        p = self.infected_fraction(theta)
        bad = torch.isnan(p)
        p = torch.where(bad, torch.zeros_like(p), p.clamp(0.0, 1.0))
        count = torch.full_like(p, float(self.TOTAL_COUNT))
        x = torch.binomial(count, p, generator=generator)
        return torch.where(bad, torch.full_like(x, float("nan")), x)

    def log_likelihood(self, theta: Tensor, x: Tensor) -> Tensor:
        """Σ_k log Binomial(x_k; 1000, p_k(θ)): θ ``(*B, 2)``, x ``(*B, 10)`` (broadcast) -> ``(*B,)``."""
        self._check(theta, x)
        p = self.infected_fraction(theta).clamp(0.0, 1.0)
        n = float(self.TOTAL_COUNT)
        log_binom = math.lgamma(n + 1.0) - torch.lgamma(x + 1.0) - torch.lgamma(n - x + 1.0)
        terms = log_binom + torch.special.xlogy(x, p) + torch.special.xlog1py(n - x, -p)
        return terms.sum(-1)
