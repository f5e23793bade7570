r"""sbibm's gaussian_linear task: a conjugate Gaussian with a closed-form posterior.

θ ~ N(0, v_p·I_D), x | θ ~ N(θ, v_n·I_D); sbibm: D = 10, v_p = v_n = 0.1. (sbibm's ``prior_scale``
and ``simulator_scale`` are *variances*: it sets ``precision_matrix = inverse(0.1·I)``.)
Posterior (conjugate): N(x·v_p/(v_p + v_n), (1/v_p + 1/v_n)⁻¹·I), which is N(x/2, 0.05·I) for
sbibm's values; ``reference_posterior`` samples it exactly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from physgen.priors import MultivariateNormal
from simulators.sbibm._task import LOG_2PI, Task, randn, resolve_device

__all__ = ["GaussianLinear"]


class GaussianNoise(Task):
    """x = θ + N(0, v_n·I): the simulator and likelihood shared by the two Gaussian linear tasks."""

    noise_variance: float

    def simulate(self, theta: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """theta ``(*B, D)`` -> x ``(*B, D)``."""
        self._check(theta)
        return theta + math.sqrt(self.noise_variance) * randn(theta.shape, theta, generator)

    def log_likelihood(self, theta: Tensor, x: Tensor) -> Tensor:
        """log N(x; θ, v_n·I): θ ``(*B, D)``, x ``(*B, D)`` (broadcast) -> ``(*B,)``."""
        self._check(theta, x)
        v = self.noise_variance
        return -0.5 * ((x - theta) ** 2).sum(-1) / v - 0.5 * self.dim * (LOG_2PI + math.log(v))


class GaussianLinear(GaussianNoise):
    """θ ~ N(0, prior_variance·I_D), x | θ ~ N(θ, noise_variance·I_D); sbibm: D = 10, both 0.1.

    Args:
        dim: D (parameters and data).
        prior_variance, noise_variance: variances (sbibm's ``prior_scale``/``simulator_scale``).
        device: device of the prior's tensors (``"auto"`` picks cuda if available).
    """

    name = "gaussian_linear"

    def __init__(self, dim: int = 10, prior_variance: float = 0.1, noise_variance: float = 0.1, device=None):
        dev = resolve_device(device)
        self.dim, self.prior_variance, self.noise_variance = int(dim), float(prior_variance), float(noise_variance)
        self.x_shape = (self.dim,)
        self.config = {"dim": self.dim, "prior_variance": self.prior_variance, "noise_variance": self.noise_variance}
        self.prior = MultivariateNormal(
            torch.zeros(self.dim, device=dev), covariance_matrix=self.prior_variance * torch.eye(self.dim, device=dev)
        )

    def posterior(self, x_obs: Tensor) -> MultivariateNormal:
        """The closed-form posterior p(θ | x_obs), x_obs ``(D,)``."""
        x_obs = self._check_obs(x_obs, 1)
        vp, vn = self.prior_variance, self.noise_variance
        var = 1.0 / (1.0 / vp + 1.0 / vn)
        eye = torch.eye(self.dim, dtype=x_obs.dtype, device=x_obs.device)
        return MultivariateNormal(x_obs * (vp / (vp + vn)), covariance_matrix=var * eye)

    def reference_posterior(self, x_obs: Tensor, n: int, *, seed: int = 0) -> Tensor:
        """Exact samples ``(n, D)`` from the closed-form posterior."""
        post = self.posterior(x_obs)
        g = torch.Generator(device=post.loc.device).manual_seed(seed)
        eps = torch.randn((int(n), self.dim), generator=g, device=post.loc.device, dtype=post.loc.dtype)
        return post.loc + eps @ post.scale_tril.T
