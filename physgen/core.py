"""Protocols and the shape convention shared by every part of physgen.

Shapes follow torch: ``(*batch, *event)``.

* θ (parameters) has event shape ``(D,)``.
* x (an observation) has the simulator's ``x_shape``: a vector ``(F,)``, a field
  ``(C, H, W)`` / ``(H, W)`` / ``(H, W, L)``, or a point set.
* Point sets of variable size are stored as one padded tensor of shape
  ``(N_max, d + 1)``: the first ``d`` columns are coordinates, the last column is the
  mask (1.0 = a real point, 0.0 = padding; padded coordinates are 0). Use
  :func:`split_points` / :func:`join_points` to convert. One tensor per observation keeps
  simulation, storage and batching identical for every simulator.

Randomness is explicit: a keyword-only ``generator: torch.Generator | None`` (or a ``seed``
at the API edge). Same seed, same device => the same numbers.

This module holds protocols only: no implementation, no torch global state.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor
from torch.distributions import Distribution

__all__ = [
    "Simulator",
    "ConditionalModel",
    "Encoder",
    "LogDensity",
    "split_points",
    "join_points",
    "batch_shape_of",
]


@runtime_checkable
class Simulator(Protocol):
    """A batched stochastic simulator with a prior.

    Attributes:
        prior: a torch ``Distribution`` over θ with event shape ``(D,)`` and a ``.support``.
        x_shape: the event shape of one observation.
        name: a short identifier stored in simulation metadata.

    Optional:
        ``log_likelihood(theta, x) -> (*batch,)`` where the likelihood is tractable; it
        enables the MCMC baseline.
        ``config`` (a JSON-serialisable dict) recorded in simulation metadata.
    """

    prior: Distribution
    x_shape: tuple[int, ...]
    name: str

    def simulate(self, theta: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Simulate one observation per parameter set.

        Args:
            theta: ``(*B, D)``.
            generator: source of randomness (on theta's device).

        Returns:
            x: ``(*B, *x_shape)``.
        """
        ...


@runtime_checkable
class ConditionalModel(Protocol):
    """A conditional generative family q(target | context) with its training loss.

    The same class serves θ|x (posterior) and x|θ (emulator). Models see already
    standardised, unconstrained tensors; standardisation lives in ``physgen.inference``.

    Constructor convention: ``Family(dim, context_dim, **hyperparameters)`` and a
    ``config`` dict attribute such that ``Family(**config)`` rebuilds it (used by save/load).
    """

    config: dict

    def loss(self, target: Tensor, context: Tensor) -> Tensor:
        """Training loss. target ``(B, D)``, context ``(B, C)`` -> scalar."""
        ...

    def sample(
        self, shape: tuple[int, ...], context: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw samples. context ``(*Bc, C)`` -> ``(*shape, *Bc, D)``."""
        ...

    def log_prob(self, target: Tensor, context: Tensor) -> Tensor:
        """log q(target | context); target ``(*B, D)``, context ``(*B, C)`` (broadcast) -> ``(*B,)``."""
        ...


@runtime_checkable
class Encoder(Protocol):
    """A summary network ``(x: (*B, *x_shape), mask: (*B, N) | None) -> (*B, E)``.

    Attribute ``out_features`` is E. Permutation-invariant encoders must be exactly invariant.
    """

    out_features: int

    def __call__(self, x: Tensor, mask: Tensor | None = None) -> Tensor: ...


@runtime_checkable
class LogDensity(Protocol):
    """An unnormalised log density ``θ: (*B, D) -> (*B,)``. Every sampler consumes one."""

    def __call__(self, theta: Tensor) -> Tensor: ...


def split_points(x: Tensor) -> tuple[Tensor, Tensor]:
    """Split a padded point-set tensor ``(*B, N, d + 1)`` into points ``(*B, N, d)`` and a
    boolean mask ``(*B, N)`` (True = real point)."""
    if x.shape[-1] < 2:
        raise ValueError(
            f"a point-set tensor needs shape (*B, N, d + 1) with the mask in the last column; got {tuple(x.shape)}"
        )
    return x[..., :-1], x[..., -1] > 0.5


def join_points(points: Tensor, mask: Tensor) -> Tensor:
    """Inverse of :func:`split_points`: points ``(*B, N, d)``, mask ``(*B, N)`` -> ``(*B, N, d + 1)``.
    Padded coordinates are set to 0."""
    m = mask.to(points.dtype).unsqueeze(-1)
    return torch.cat([points * m, m], dim=-1)


def batch_shape_of(x: Tensor, event_shape: tuple[int, ...], what: str = "x") -> torch.Size:
    """Return the batch shape of ``x`` given its expected event shape, or raise a clear error.

    Raises:
        ValueError: naming the expected and the given shape.
    """
    n = len(event_shape)
    if x.dim() < n or tuple(x.shape[x.dim() - n :]) != tuple(event_shape):
        raise ValueError(
            f"{what} has shape {tuple(x.shape)}, but its trailing dimensions must be the event shape "
            f"{tuple(event_shape)} (expected (*batch, {', '.join(map(str, event_shape))}))"
        )
    return x.shape[: x.dim() - n]
