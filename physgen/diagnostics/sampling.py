"""Batched posterior draws and log densities shared by the calibration diagnostics.

Every calibration check (SBC, expected coverage, TARP, z-scores) needs ``S`` posterior draws for each of
``N`` held-out observations. :func:`posterior_draws` takes them with one ``posterior.sample`` call per chunk
of ``batch_size`` observations (one call in total by default), on the posterior's device, from one explicit
generator, so the same seed gives the same draws; :func:`draw_log_probs` evaluates ``log q`` at the draws
and at the true parameters in one ``log_prob`` call per chunk.

The posterior contract (a physgen :class:`~physgen.inference.posterior.Posterior`, or any object with):

- ``sample(n, x, *, generator=None) -> (n, B, D)`` for ``x (B, *x_shape)``;
- ``log_prob(theta (*B, D), x (*B, *x_shape)) -> (*B,)`` with broadcasting (needed by coverage only).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["posterior_device", "prior_device", "posterior_draws", "draw_log_probs", "check_pairs", "check_samples"]


_LOG_PROB_ROWS = 65_536


@runtime_checkable
class PosteriorSampler(Protocol):
    """What :func:`posterior_draws` draws from: ``sample(n, x (B, *x_shape), *, generator) -> (n, B, D)``."""

    def sample(self, n: int, x: Tensor, /, *, generator: torch.Generator | None = None) -> Tensor: ...


@runtime_checkable
class PosteriorDensity(Protocol):
    """What :func:`draw_log_probs` evaluates: ``log_prob(theta (*B, D), x (*B, *x_shape)) -> (*B,)``."""

    def log_prob(self, theta: Tensor, x: Tensor, /) -> Tensor: ...


def posterior_device(posterior: object, fallback: torch.device) -> torch.device:
    """The device the posterior computes on: that of its parameters/buffers (an ``nn.Module``), else ``fallback``."""
    if isinstance(posterior, torch.nn.Module):
        for t in posterior.parameters():
            return t.device
        for b in posterior.buffers():
            return b.device
    dev = getattr(posterior, "device", None)
    return torch.device(dev) if isinstance(dev, (str, torch.device)) else fallback


def prior_device(prior: object, fallback: torch.device) -> torch.device:
    """The device of a prior's tensors (``low``/``loc`` of it or of its base distribution), else ``fallback``."""
    for obj in (prior, getattr(prior, "base_dist", None)):
        for name in ("low", "loc"):
            v = getattr(obj, name, None)
            if isinstance(v, Tensor):
                return v.device
    parts = getattr(prior, "parts", None)
    if parts:
        return prior_device(parts[0], fallback)
    return fallback


def check_pairs(theta: Tensor, x: Tensor, where: str) -> tuple[Tensor, Tensor]:
    """Check held-out pairs: theta ``(N, D)`` and x ``(N, *x_shape)`` with the same N, finite values."""
    if not isinstance(theta, Tensor) or not isinstance(x, Tensor):
        raise TypeError(
            f"{where}: theta and x must be torch tensors; got {type(theta).__name__} and {type(x).__name__}"
        )
    if theta.dim() != 2:
        raise ValueError(
            f"{where}: theta must have shape (N, D), one row per held-out pair; got {tuple(theta.shape)}. "
            "For a single pair use theta[None] and x[None]."
        )
    if x.dim() < 2 or x.shape[0] != theta.shape[0]:
        raise ValueError(
            f"{where}: x must have shape (N, *x_shape) with the N={theta.shape[0]} of theta; got "
            f"{tuple(x.shape)}. Pass the observations simulated from theta, one row per row of theta."
        )
    if theta.shape[0] < 2:
        raise ValueError(
            f"{where}: needs at least 2 held-out pairs (hundreds for a meaningful test); got {theta.shape[0]}"
        )
    if not bool(torch.isfinite(theta).all()):
        raise ValueError(f"{where}: theta has NaN or inf entries; drop those rows (and the matching x) first")
    return theta, x


def check_samples(samples: Tensor, theta: Tensor, where: str) -> None:
    """Check posterior draws ``(S, N, D)`` against the true parameters ``(N, D)``."""
    if theta.dim() != 2:
        raise ValueError(f"{where}: theta must have shape (N, D); got {tuple(theta.shape)}")
    if samples.dim() != 3 or tuple(samples.shape[1:]) != tuple(theta.shape):
        raise ValueError(
            f"{where}: posterior samples must have shape (S, N, D) = (S, {theta.shape[0]}, {theta.shape[1]}) "
            f"to match theta {tuple(theta.shape)}; got {tuple(samples.shape)}. posterior.sample(S, x) with x "
            "(N, *x_shape) returns this layout."
        )
    if samples.shape[0] < 1:
        raise ValueError(f"{where}: need at least one posterior sample per observation")


def _chunks(n: int, batch_size: int | None):
    size = n if batch_size is None else int(batch_size)
    if size < 1:
        raise ValueError(f"batch_size must be a positive number of observations per sample call; got {batch_size}")
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


@torch.no_grad()
def posterior_draws(
    posterior: object, x: Tensor, num_samples: int, *, seed: int = 0, batch_size: int | None = None
) -> Tensor:
    """Draw ``num_samples`` posterior samples for each of N observations.

    Args:
        posterior: an object with ``sample(n, x, *, generator=None) -> (n, B, D)`` (module docstring).
        x: observations ``(N, *x_shape)``; moved to the posterior's device.
        num_samples: S, draws per observation.
        seed: seeds one ``torch.Generator`` on the posterior's device, used by every chunk in turn.
        batch_size: observations per ``sample`` call (None: all N in one call); lower it if memory runs out.

    Returns:
        ``(S, N, D)`` draws on the posterior's device.
    """
    if int(num_samples) < 1:
        raise ValueError(f"num_posterior_samples must be >= 1; got {num_samples}")
    if not isinstance(posterior, PosteriorSampler):
        raise TypeError(
            "posterior must have sample(n, x, *, generator) -> (n, B, D) (a physgen Posterior has it); got "
            f"{type(posterior).__name__}"
        )
    device = posterior_device(posterior, x.device)
    x = x.to(device)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    out = []
    for sl in _chunks(x.shape[0], batch_size):
        s = posterior.sample(int(num_samples), x[sl], generator=gen)
        if s.dim() != 3 or s.shape[:2] != (int(num_samples), sl.stop - sl.start):
            raise ValueError(
                f"posterior.sample(n, x) with x of shape {tuple(x[sl].shape)} must return (n, B, D) = "
                f"({num_samples}, {sl.stop - sl.start}, D); got {tuple(s.shape)}"
            )
        out.append(s)
    return torch.cat(out, dim=1)


def _log_prob_fn(posterior: PosteriorDensity) -> Callable[[Tensor, Tensor], Tensor]:
    """posterior.log_prob, with ``normalize=False`` where it exists: a per-observation constant (the mass inside
    a bounded support) changes no rank within one observation, and skipping it saves a Monte Carlo estimate."""
    fn: Callable[..., Tensor] = posterior.log_prob  # its keywords beyond (theta, x) are read from its signature
    try:
        if "normalize" in inspect.signature(fn).parameters:
            return lambda t, x: fn(t, x, normalize=False)
    except (TypeError, ValueError):
        pass
    return fn


@torch.no_grad()
def draw_log_probs(
    posterior: object, samples: Tensor, theta: Tensor, x: Tensor, *, batch_size: int | None = None
) -> tuple[Tensor, Tensor]:
    """log q at the draws and at the true parameters, one broadcast ``log_prob`` call per chunk.

    Args:
        posterior: an object with ``log_prob(theta (*B, D), x (*B, *x_shape)) -> (*B,)``.
        samples: draws ``(S, N, D)``.
        theta: true parameters ``(N, D)``.
        x: observations ``(N, *x_shape)``.
        batch_size: observations per call (None: all N at once on an accelerator; on CPU, blocks of about
            65,536 evaluated points).

    Returns:
        ``(log q(samples) (S, N), log q(theta) (N,))`` on the posterior's device. Only ranks within one
        observation are used, so a physgen Posterior is called with ``normalize=False``.
    """
    check_samples(samples, theta, "log_prob of posterior draws")
    if not isinstance(posterior, PosteriorDensity):
        raise TypeError(
            "posterior must have log_prob(theta, x) -> (*B,) for expected coverage (a physgen Posterior has it); "
            f"got {type(posterior).__name__}"
        )
    device = samples.device
    x, theta = x.to(device), theta.to(device)
    fn = _log_prob_fn(posterior)
    if batch_size is None and device.type == "cpu":  # cache-sized blocks are faster on CPU than one huge batch
        batch_size = max(1, _LOG_PROB_ROWS // (samples.shape[0] + 1))
    lq_s, lq_t = [], []
    for sl in _chunks(x.shape[0], batch_size):
        both = torch.cat([theta[sl].unsqueeze(0), samples[:, sl]], dim=0)  # (S + 1, Nc, D)
        lp = fn(both, x[sl])
        if tuple(lp.shape) != tuple(both.shape[:-1]):
            raise ValueError(
                f"posterior.log_prob(theta (S, N, D), x (N, *x_shape)) must broadcast to (S, N); got "
                f"{tuple(lp.shape)} for theta {tuple(both.shape)} and x {tuple(x[sl].shape)}"
            )
        lq_t.append(lp[0])
        lq_s.append(lp[1:])
    return torch.cat(lq_s, dim=1), torch.cat(lq_t)
