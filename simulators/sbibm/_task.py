"""Shared pieces of the sbibm tasks: device resolution, random draws, checks, the log joint and the
rejection loop of the reference samplers."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

from physgen.shapes import batch_shape_of

LOG_2PI = math.log(2.0 * math.pi)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"`` -> cuda if available, else cpu; None -> cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device("cpu") if device is None else torch.device(device)


def randn(shape, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal draws of ``shape`` on ``like``'s device and dtype."""
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)


def rand(shape, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Uniform [0, 1) draws of ``shape`` on ``like``'s device and dtype."""
    return torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)


class Task(ABC):
    """Shared checks, the unnormalised log posterior and the rejection loop."""

    prior: torch.distributions.Distribution
    x_shape: tuple[int, ...]
    name: str
    dim: int

    @abstractmethod
    def log_likelihood(self, theta: Tensor, x: Tensor) -> Tensor:
        """The task's exact log p(x | θ): θ ``(*B, D)``, x ``(*B, F)`` -> ``(*B,)``."""

    def _check(self, theta: Tensor, x: Tensor | None = None) -> None:
        batch_shape_of(theta, (self.dim,), "theta")
        if x is not None:
            batch_shape_of(x, self.x_shape, "x")

    def _check_obs(self, x_obs: Tensor, n: int) -> Tensor:
        x_obs = torch.as_tensor(x_obs)
        if tuple(x_obs.shape) != self.x_shape:
            raise ValueError(
                f"{self.name}: x_obs must have shape {self.x_shape} (one observation); got {tuple(x_obs.shape)}"
            )
        if not bool(torch.isfinite(x_obs).all()):
            raise ValueError(f"{self.name}: x_obs has NaN or inf entries: {x_obs.tolist()}")
        if int(n) < 1:
            raise ValueError(f"{self.name}: n must be a positive number of samples; got {n}")
        return x_obs if x_obs.is_floating_point() else x_obs.to(torch.get_default_dtype())

    def log_joint(self, theta: Tensor, x: Tensor) -> Tensor:
        """log p(θ) + log p(x | θ), -inf outside the prior: θ ``(*B, D)``, x ``(*B, F)`` -> ``(*B,)``."""
        lp = self.prior.log_prob(theta)
        ll = self.log_likelihood(theta, x)
        lp, ll = torch.broadcast_tensors(lp, ll)
        return torch.where(torch.isfinite(lp), lp + ll, lp)

    def _rejection(self, propose, n: int, max_proposals: int) -> Tensor:
        """Collect ``n`` accepted rows from ``propose(k) -> (samples (k, D), accept (k,))``."""
        out, have, tried, k = [], 0, 0, max(1024, 2 * n)
        while have < n:
            if tried >= max_proposals:
                raise RuntimeError(
                    f"{self.name}: reference sampler accepted {have} of {tried} proposals; x_obs is (almost) "
                    f"impossible under the prior. Check that x_obs was simulated from this task."
                )
            s, ok = propose(k)
            tried += k
            out.append(s[ok])
            have += int(ok.sum())
            rate = max(have / tried, 1e-4)
            k = int(min(max(1024, 1.2 * (n - have) / rate), 2_000_000))
        return torch.cat(out)[:n]
