r"""sbibm's gaussian_mixture task: a Gaussian mixture with shared mean, a narrow and a wide component.

θ ~ U(-10, 10)², x | θ ~ ½ N(θ, I) + ½ N(θ, 0.01·I). The mixture component is drawn per simulation
(sbibm drew one component per *batch*, a bug fixed in sbibm PR #54).
Reference posterior (exact, as sbibm): ½ N(x, I) + ½ N(x, 0.01·I) truncated to the box by rejection.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from physgen.priors import BoxUniform
from simulators.sbibm._task import LOG_2PI, Task, rand, randn, resolve_device

__all__ = ["GaussianMixture"]


class GaussianMixture(Task):
    """x | θ ~ ½ N(θ, I) + ½ N(θ, 0.01·I), θ ~ U(-10, 10)² (sbibm); θ ``(2,)``, x ``(2,)``.

    Args:
        device: device of the prior's tensors (``"auto"`` picks cuda if available).
    """

    name = "gaussian_mixture"
    _WEIGHTS, _SCALES = (0.5, 0.5), (1.0, 0.1)

    def __init__(self, device=None):
        dev = resolve_device(device)
        self.dim, self.x_shape = 2, (2,)
        self.config: dict = {}
        self.prior = BoxUniform(-10.0 * torch.ones(2), 10.0 * torch.ones(2), device=dev)

    def _draw(self, loc: Tensor, generator) -> Tensor:
        wide = rand(loc.shape[:-1], loc, generator) < self._WEIGHTS[0]
        scale = torch.where(wide, self._SCALES[0], self._SCALES[1]).to(loc.dtype).unsqueeze(-1)
        return loc + scale * randn(loc.shape, loc, generator)

    def simulate(self, theta: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """theta ``(*B, 2)`` -> x ``(*B, 2)``; the mixture component is drawn per row."""
        self._check(theta)
        return self._draw(theta, generator)

    def log_likelihood(self, theta: Tensor, x: Tensor) -> Tensor:
        """log [½ N(x; θ, I) + ½ N(x; θ, 0.01 I)]: ``(*B, 2)``, ``(*B, 2)`` -> ``(*B,)``."""
        self._check(theta, x)
        d2 = ((x - theta) ** 2).sum(-1)
        terms = [math.log(w) - 0.5 * d2 / s**2 - 2 * math.log(s) - LOG_2PI for w, s in zip(self._WEIGHTS, self._SCALES)]
        return torch.logsumexp(torch.stack(terms, dim=-1), dim=-1)

    def reference_posterior(self, x_obs: Tensor, n: int, *, seed: int = 0) -> Tensor:
        """Exact samples ``(n, 2)``: the mixture around x_obs, rejected outside the prior box."""
        x_obs = self._check_obs(x_obs, n)
        g = torch.Generator(device=x_obs.device).manual_seed(seed)

        def propose(k: int):
            theta = self._draw(x_obs.expand(k, 2), g)
            return theta, torch.isfinite(self.prior.log_prob(theta))

        return self._rejection(propose, int(n), max_proposals=200_000_000)
