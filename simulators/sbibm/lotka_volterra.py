r"""sbibm's lotka_volterra task: predator-prey dynamics observed with log-normal noise.

θ = (α, β, γ, δ), each ~ LogNormal(μ, 0.5) with μ = (-0.125, -3, -0.125, -3).
u = (prey, predator), u(0) = (30, 1): prey' = α·prey - β·prey·predator, predator' = -γ·predator + δ·prey·predator.
sbibm solves to t = 20 saving every 0.1 (201 points) and keeps every 21st (``[:, ::21]``): t_k = 2.1·k,
k = 0..9. x = (prey at t₀..t₉, predator at t₀..t₉) ``(20,)``, each x_j ~ LogNormal(log clamp(u_j, 1e-10, 10⁴), 0.1).

Exact likelihood: Σ_j log LogNormal(x_j; log clamp(u_j(θ), 1e-10, 10⁴), 0.1), exact up to the solver's error
(RK4 in log u, sub-steps of at most ``max_step``; with the default 0.025 the log-likelihood is within 0.005 of
``scipy.integrate.solve_ivp``'s at tolerance 1e-11 over 200 prior draws, where 0.05 was 0.16 off at the worst;
tested on 40 draws).

Departures from sbibm (docs/sbibm_tasks.md): sbibm uses Julia's DifferentialEquations (adaptive); here RK4 in
batch in torch, in log u (positive by construction). For extreme θ (rates far in the prior's tails) the fixed
step can overflow; such rows come back as NaN observations, which ``physgen.simulate`` counts and drops, as
sbibm's failed solves give NaN rows; the two sets of failing θ need not coincide.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from physgen.priors import LogNormal
from simulators.sbibm._ode import rk4
from simulators.sbibm._task import LOG_2PI, Task, randn, resolve_device

__all__ = ["LotkaVolterra"]


class LotkaVolterra(Task):
    """sbibm's Lotka-Volterra model (module docstring). θ ``(4,)`` = (α, β, γ, δ) > 0, x ``(20,)`` > 0.

    Args:
        max_step: the largest RK4 sub-step (time units of the ODE).
        device: device of the prior's tensors (``"auto"`` picks cuda if available).
    """

    name = "lotka_volterra"
    definition_version = "sbibm-1.1.0/1"
    U0 = (30.0, 1.0)
    T_SAVE = tuple(round(2.1 * k, 10) for k in range(10))  # sbibm's [::21] of the 0.1 grid
    NOISE, LOW, HIGH = 0.1, 1e-10, 1e4

    def __init__(self, max_step: float = 0.025, device=None):
        dev = resolve_device(device)
        self.dim, self.x_shape = 4, (20,)
        self.max_step = float(max_step)
        self.config = {"max_step": self.max_step}
        self.prior = LogNormal([-0.125, -3.0, -0.125, -3.0], [0.5] * 4, device=dev)

    def log_populations(self, theta: Tensor) -> Tensor:
        """log clamp(u(t_k), 1e-10, 10⁴), prey then predator: θ ``(*B, 4)`` -> ``(*B, 20)``; NaN rows on failure."""
        self._check(theta)
        a, b, c, d = (theta[..., k : k + 1] for k in range(4))

        def f(y: Tensor) -> Tensor:
            u = torch.exp(y)
            return torch.cat([a - b * u[..., 1:2], -c + d * u[..., 0:1]], dim=-1)

        y0 = torch.cat([torch.full_like(a, math.log(self.U0[0])), torch.full_like(a, math.log(self.U0[1]))], dim=-1)
        y = rk4(f, y0, self.T_SAVE, self.max_step)  # (*B, 10, 2)
        bad = ~torch.isfinite(y).all(-1).all(-1, keepdim=True)
        y = y.clamp(math.log(self.LOW), math.log(self.HIGH)).transpose(-1, -2).flatten(-2)  # (*B, 20)
        return torch.where(bad, torch.full_like(y, float("nan")), y)

    def simulate(self, theta: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """theta ``(*B, 4)`` -> x ``(*B, 20)`` (NaN rows where the ODE solve failed)."""
        mu = self.log_populations(theta)
        return torch.exp(mu + self.NOISE * randn(mu.shape, mu, generator))

    def log_likelihood(self, theta: Tensor, x: Tensor) -> Tensor:
        """Σ_j log LogNormal(x_j; μ_j(θ), 0.1): θ ``(*B, 4)``, x ``(*B, 20)`` (broadcast) -> ``(*B,)``."""
        self._check(theta, x)
        mu = self.log_populations(theta)
        lx = torch.log(x)
        z = (lx - mu) / self.NOISE
        return (-0.5 * z**2 - lx - math.log(self.NOISE) - 0.5 * LOG_2PI).sum(-1)
