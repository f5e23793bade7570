r"""sbibm's gaussian_linear_uniform task: a Gaussian likelihood under a uniform box prior.

θ ~ U(-1, 1)^D, x | θ ~ N(θ, v_n·I_D); sbibm: D = 10, v_n = 0.1 (sbibm's ``simulator_scale`` is a
*variance*: it sets ``precision_matrix = inverse(0.1·I)``).
Posterior: N(x, v_n·I) truncated to the box; ``reference_posterior`` draws it exactly by rejection, one
coordinate at a time (the truncated Gaussian factorises over coordinates, so each coordinate is redrawn
until it lands in [-1, 1]: the same distribution as sbibm's whole-vector rejection, at a cost that does
not grow with the product of the per-coordinate rejection rates).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from physgen.priors import BoxUniform
from simulators.sbibm._task import randn, resolve_device
from simulators.sbibm.gaussian_linear import GaussianNoise

__all__ = ["GaussianLinearUniform"]


class GaussianLinearUniform(GaussianNoise):
    """θ ~ U(-bound, bound)^D, x | θ ~ N(θ, noise_variance·I_D); sbibm: D = 10, bound 1, variance 0.1.

    Args:
        dim: D (parameters and data).
        prior_bound: the prior box is [-prior_bound, prior_bound]^D.
        noise_variance: the noise variance (sbibm's ``simulator_scale``).
        device: device of the prior's tensors (``"auto"`` picks cuda if available).
    """

    name = "gaussian_linear_uniform"
    definition_version = "sbibm-1.1.0/1"

    def __init__(self, dim: int = 10, prior_bound: float = 1.0, noise_variance: float = 0.1, device=None):
        dev = resolve_device(device)
        self.dim, self.prior_bound, self.noise_variance = int(dim), float(prior_bound), float(noise_variance)
        self.x_shape = (self.dim,)
        self.config = {"dim": self.dim, "prior_bound": self.prior_bound, "noise_variance": self.noise_variance}
        self.prior = BoxUniform(
            -self.prior_bound * torch.ones(self.dim), self.prior_bound * torch.ones(self.dim), device=dev
        )

    def reference_posterior(self, x_obs: Tensor, n: int, *, seed: int = 0) -> Tensor:
        """Exact samples ``(n, D)`` of N(x_obs, v_n·I) truncated to the prior box (module docstring).

        Raises:
            RuntimeError: a coordinate of x_obs so far outside the box that 10⁴ redraws of it stay outside.
        """
        x_obs = self._check_obs(x_obs, n)
        g = torch.Generator(device=x_obs.device).manual_seed(seed)
        sd, b = math.sqrt(self.noise_variance), self.prior_bound
        out = x_obs + sd * randn((int(n), self.dim), x_obs, g)
        for _ in range(10_000):
            bad = out.abs() > b
            if not bool(bad.any()):
                return out
            redraw = x_obs + sd * randn(out.shape, x_obs, g)
            out = torch.where(bad, redraw, out)
        raise RuntimeError(
            f"{self.name}: x_obs has a coordinate so far outside [-{b}, {b}] that the truncated posterior is "
            f"(numerically) empty: {x_obs.tolist()}. Check that x_obs was simulated from this task."
        )
