r"""sbibm's two_moons task: a crescent-shaped, bimodal posterior with an exact likelihood.

θ ~ U(-1, 1)², a ~ U(-π/2, π/2), r ~ N(0.1, 0.01²), p = (r cos a + 0.25, r sin a),
z = ((θ₁ + θ₂)/√2, (-θ₁ + θ₂)/√2), x = p + (-|z₁|, z₂).

Exact density of p = (0.25 + u, v), ρ = √(u² + v²): N(sign(u)·ρ; 0.1, 0.01²) / (π ρ) (polar change of
variables; the u < 0 half is the r < 0 tail, ~e^{-50}). sbibm's ``_likelihood`` omits the Jacobian
1/(πρ) and sets u < 0 to -inf; ``log_likelihood`` here is the density of what ``simulate`` draws.

Reference posterior (sbibm's analytic inverse, exact): z ↦ θ is a rotation and z ↦ (-|z₁|, z₂) is
2-to-1 and measure-preserving, so draw p, set |z₁| = p₁ - x₁ (rejected if negative: no θ can produce
it; sbibm keeps such draws), z₂ = x₂ - p₂, a fair random sign for z₁, rotate back, and reject θ
outside the prior box.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from physgen.priors import BoxUniform
from simulators.sbibm._task import LOG_2PI, Task, rand, randn, resolve_device

__all__ = ["TwoMoons"]


class TwoMoons(Task):
    """sbibm's two moons (module docstring). θ ``(2,)`` in U(-1, 1)², x ``(2,)``.

    Args:
        device: device of the prior's tensors (``"auto"`` picks cuda if available).
    """

    name = "two_moons"
    _A_LOW, _A_HIGH, _OFFSET, _R_LOC, _R_SCALE = -math.pi / 2, math.pi / 2, 0.25, 0.1, 0.01

    def __init__(self, device=None):
        dev = resolve_device(device)
        self.dim, self.x_shape = 2, (2,)
        self.config: dict = {}
        self.prior = BoxUniform(-torch.ones(2), torch.ones(2), device=dev)

    @staticmethod
    def _shift(theta: Tensor) -> Tensor:
        z1 = (theta[..., 0] + theta[..., 1]) / math.sqrt(2.0)
        z2 = (-theta[..., 0] + theta[..., 1]) / math.sqrt(2.0)
        return torch.stack([-z1.abs(), z2], dim=-1)

    def _noise(self, shape, like: Tensor, generator) -> Tensor:
        a = self._A_LOW + (self._A_HIGH - self._A_LOW) * rand(shape, like, generator)
        r = self._R_LOC + self._R_SCALE * randn(shape, like, generator)
        return torch.stack([r * torch.cos(a) + self._OFFSET, r * torch.sin(a)], dim=-1)

    def simulate(self, theta: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """theta ``(*B, 2)`` -> x ``(*B, 2)``."""
        self._check(theta)
        return self._noise(theta.shape[:-1], theta, generator) + self._shift(theta)

    def log_likelihood(self, theta: Tensor, x: Tensor) -> Tensor:
        """Exact log density of x | θ (with the polar Jacobian): ``(*B, 2)``, ``(*B, 2)`` -> ``(*B,)``."""
        self._check(theta, x)
        p = x - self._shift(theta)
        u, v = p[..., 0] - self._OFFSET, p[..., 1]
        rho = torch.sqrt(u * u + v * v).clamp_min(torch.finfo(p.dtype).tiny)
        r = torch.where(u < 0, -rho, rho)
        log_n = -0.5 * ((r - self._R_LOC) / self._R_SCALE) ** 2 - 0.5 * LOG_2PI - math.log(self._R_SCALE)
        return log_n - torch.log(math.pi * rho)

    def reference_posterior(self, x_obs: Tensor, n: int, *, seed: int = 0) -> Tensor:
        """Exact samples ``(n, 2)`` by sbibm's analytic inverse with rejection (module docstring)."""
        x_obs = self._check_obs(x_obs, n)
        g = torch.Generator(device=x_obs.device).manual_seed(seed)
        c = 1.0 / math.sqrt(2.0)

        def propose(k: int):
            p = self._noise((k,), x_obs, g)
            q1 = p[:, 0] - x_obs[0]
            sign = torch.where(rand((k,), x_obs, g) < 0.5, -1.0, 1.0).to(x_obs.dtype)
            z1, z2 = sign * q1, x_obs[1] - p[:, 1]
            theta = torch.stack([c * (z1 - z2), c * (z1 + z2)], dim=-1)
            ok = (q1 >= 0) & torch.isfinite(self.prior.log_prob(theta))
            return theta, ok

        return self._rejection(propose, int(n), max_proposals=200_000_000)
