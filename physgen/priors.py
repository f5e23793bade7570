"""Priors over θ (event shape ``(D,)``) and their bijection to unconstrained space.

All priors are ``torch.distributions.Distribution`` objects with ``.support``. Their
``log_prob`` returns ``-inf`` (never raises) for θ outside the support.

``to_unconstrained(prior)`` returns a ``torch.distributions.Transform`` T with
``θ = T(u)``, u in R^D, ``T.log_abs_det_jacobian(u, θ)`` of shape ``(*B,)``. Sampling a
model in u-space and mapping through T can never leave the support, so bounded priors
never make sampling hang.

Example:
    >>> prior = Joint([BoxUniform([-1.0], [1.0]), LogUniform([0.1], [10.0])])
    >>> theta = prior.sample((5,))          # (5, 2)
    >>> T = to_unconstrained(prior)
    >>> u = T.inv(theta)                     # (5, 2), in R^2
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.distributions import (
    Distribution,
    Independent,
    MultivariateNormal,
    Transform,
    Uniform,
    biject_to,
    constraints,
)
from torch.distributions.transforms import CatTransform, IndependentTransform

__all__ = [
    "BoxUniform",
    "LogUniform",
    "LogNormal",
    "Joint",
    "MultivariateNormal",
    "to_unconstrained",
    "is_bounded",
    "prior_bounds",
    "sample_prior",
    "prior_to_dict",
    "prior_from_dict",
    "prior_spec",
]

# the priors physgen can record, save and map to unconstrained space (named in its error messages)
SUPPORTED_PRIORS = "BoxUniform, LogUniform, LogNormal, MultivariateNormal or Joint"


def _as_tensor(v, device=None) -> Tensor:
    t = torch.as_tensor(v, dtype=torch.get_default_dtype(), device=device)
    return t.reshape(1) if t.dim() == 0 else t


def _check_bounds(low: Tensor, high: Tensor, name: str) -> None:
    if low.shape != high.shape or low.dim() != 1:
        raise ValueError(
            f"{name}: low and high must be 1-d of equal length; got {tuple(low.shape)} and {tuple(high.shape)}"
        )
    if not bool(torch.all(high > low)):
        raise ValueError(f"{name}: every high must exceed its low; got low={low.tolist()}, high={high.tolist()}")


class BoxUniform(Independent):
    """Uniform on the box ``[low, high]`` (event shape ``(D,)``; closed, like ``support.check``).

    Args:
        low, high: ``(D,)`` bounds (lists or tensors).
        device: device of the distribution's tensors.
    """

    def __init__(self, low, high, device: str | torch.device | None = None):
        low, high = _as_tensor(low, device), _as_tensor(high, device)
        _check_bounds(low, high, "BoxUniform")
        super().__init__(Uniform(low, high, validate_args=False), 1, validate_args=False)

    @property
    def low(self) -> Tensor:
        return self.base_dist.low

    @property
    def high(self) -> Tensor:
        return self.base_dist.high

    def log_prob(self, value: Tensor) -> Tensor:
        inside = ((value >= self.low) & (value <= self.high)).all(-1)
        lp = -torch.log(self.high - self.low).sum()
        return torch.where(inside, lp, torch.full_like(inside, -math.inf, dtype=value.dtype))

    def __repr__(self) -> str:
        return f"BoxUniform(low={self.low.tolist()}, high={self.high.tolist()})"


class LogUniform(Distribution):
    """Independent log-uniform components: ``log θ_i ~ U(log low_i, log high_i)``, ``0 < low < high``.

    Args:
        low, high: ``(D,)`` positive bounds.
    """

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(self, low, high, device: str | torch.device | None = None):
        low, high = _as_tensor(low, device), _as_tensor(high, device)
        _check_bounds(low, high, "LogUniform")
        if not bool(torch.all(low > 0)):
            raise ValueError(f"LogUniform needs low > 0; got low={low.tolist()}")
        self.low, self.high = low, high
        self._log_low, self._log_high = low.log(), high.log()
        super().__init__(batch_shape=torch.Size(), event_shape=low.shape, validate_args=False)

    @property
    def support(self):
        return constraints.independent(constraints.interval(self.low, self.high), 1)

    def rsample(self, sample_shape=torch.Size()) -> Tensor:
        shape = torch.Size(sample_shape) + self.event_shape
        u = torch.rand(shape, dtype=self.low.dtype, device=self.low.device)
        return torch.exp(self._log_low + u * (self._log_high - self._log_low))

    def log_prob(self, value: Tensor) -> Tensor:
        inside = ((value >= self.low) & (value <= self.high)).all(-1)
        safe = torch.where(inside.unsqueeze(-1), value, self.low)
        lp = -(safe.log() + (self._log_high - self._log_low).log()).sum(-1)
        return torch.where(inside, lp, torch.full_like(lp, -math.inf))

    @property
    def mean(self) -> Tensor:
        return (self.high - self.low) / (self._log_high - self._log_low)

    def __repr__(self) -> str:
        return f"LogUniform(low={self.low.tolist()}, high={self.high.tolist()})"


class LogNormal(Independent):
    """θ_d ~ LogNormal(loc_d, scale_d) independently: log θ is normal. Event shape ``(D,)``, support θ > 0.

    ``log_prob`` is -inf (never an error, never NaN) for θ with an entry <= 0 or not finite; the bijection to
    unconstrained space is ``exp`` (the posterior's flow works in log θ).

    Args:
        loc, scale: ``(D,)`` mean and standard deviation of log θ (scale > 0).
        device: device of the tensors.

    Raises:
        ValueError: loc and scale of different shapes, or a scale that is not positive.
    """

    def __init__(self, loc, scale, device: str | torch.device | None = None):
        loc_t, scale_t = _as_tensor(loc, device), _as_tensor(scale, device)
        if loc_t.shape != scale_t.shape or loc_t.dim() != 1:
            raise ValueError(
                f"LogNormal needs loc and scale of one shape (D,); got {tuple(loc_t.shape)} and {tuple(scale_t.shape)}"
            )
        if not bool((scale_t > 0).all()):
            raise ValueError(f"LogNormal needs scale > 0; got scale={scale_t.tolist()}")
        super().__init__(torch.distributions.LogNormal(loc_t, scale_t, validate_args=False), 1, validate_args=False)

    @property
    def loc(self) -> Tensor:
        """``(D,)`` mean of log θ."""
        return self.base_dist.loc

    @property
    def scale(self) -> Tensor:
        """``(D,)`` standard deviation of log θ."""
        return self.base_dist.scale

    def log_prob(self, value: Tensor) -> Tensor:
        """``(*B, D) -> (*B,)``; -inf where any entry is <= 0 or not finite."""
        inside = (value > 0).all(-1) & torch.isfinite(value).all(-1)
        safe = torch.where(inside.unsqueeze(-1), value, torch.ones_like(value))
        lp = super().log_prob(safe)
        return torch.where(inside, lp, torch.full_like(lp, float("-inf")))

    def __repr__(self) -> str:
        return f"LogNormal(loc={self.loc.tolist()}, scale={self.scale.tolist()})"


def support_of(prior: Distribution) -> constraints.Constraint:
    """The prior's support (torch types ``Distribution.support`` as optional; every physgen prior has one).

    Raises:
        ValueError: a distribution without a support; use one of :data:`SUPPORTED_PRIORS`.
    """
    s = prior.support
    if s is None:
        raise ValueError(f"{type(prior).__name__} has no support; use {SUPPORTED_PRIORS}")
    return s


def _base_constraint(prior: Distribution):
    """The per-component constraint of a prior with event shape (D,)."""
    s = prior.support
    while isinstance(s, constraints.independent):
        s = s.base_constraint
    return s


class Joint(Distribution):
    """Independent parts concatenated along the last axis: θ = [θ_1, θ_2, ...].

    Args:
        parts: distributions with event shape ``(D_i,)`` and empty batch shape.
    """

    arg_constraints: dict = {}

    def __init__(self, parts: Sequence[Distribution]):
        if not parts:
            raise ValueError("Joint needs at least one part")
        for p in parts:
            if len(p.event_shape) != 1 or len(p.batch_shape) != 0:
                raise ValueError(
                    f"each Joint part needs event shape (D,) and no batch shape; got event {tuple(p.event_shape)}, "
                    f"batch {tuple(p.batch_shape)} for {p!r}. Wrap scalar distributions with Independent(dist.expand([1]), 1)."
                )
        self.parts = list(parts)
        self.sizes = [int(p.event_shape[0]) for p in parts]
        super().__init__(batch_shape=torch.Size(), event_shape=torch.Size([sum(self.sizes)]), validate_args=False)

    @property
    def support(self):
        return constraints.independent(
            constraints.cat([_base_constraint(p) for p in self.parts], dim=-1, lengths=self.sizes), 1
        )

    def sample(self, sample_shape=torch.Size()) -> Tensor:
        return torch.cat([p.sample(sample_shape) for p in self.parts], dim=-1)

    def log_prob(self, value: Tensor) -> Tensor:
        chunks = value.split(self.sizes, dim=-1)
        lps = [p.log_prob(c) for p, c in zip(self.parts, chunks)]
        return sum(lps[1:], lps[0])  # Joint has at least one part

    @property
    def mean(self) -> Tensor:
        return torch.cat([p.mean for p in self.parts], dim=-1)

    def __repr__(self) -> str:
        return f"Joint({self.parts!r})"


def to_unconstrained(prior: Distribution) -> Transform:
    """Bijection T: R^D -> support(prior), θ = T(u); ``log_abs_det_jacobian`` is ``(*B,)``."""
    base = _base_constraint(prior)
    if isinstance(base, constraints._Cat):
        parts = [biject_to(c) for c in base.cseq]
        t = CatTransform(parts, dim=-1, lengths=base.lengths)
    else:
        t = biject_to(base)
    return IndependentTransform(t, 1) if t.domain.event_dim == 0 else t


def is_bounded(prior: Distribution) -> bool:
    """Whether the prior's support is smaller than R^D (a box, a half-line, a joint with such parts)."""
    return not isinstance(_base_constraint(prior), constraints._Real)


def prior_bounds(prior: Distribution) -> tuple[Tensor, Tensor] | None:
    """(low, high) ``(D,)`` for a prior whose support is a box, else None."""
    base = _base_constraint(prior)
    if isinstance(base, (constraints._Interval, constraints._HalfOpenInterval)):
        d = prior.event_shape[0]
        return base.lower_bound.expand(d), base.upper_bound.expand(d)
    return None


def sample_prior(prior: Distribution, shape: tuple[int, ...], *, generator: torch.Generator | None = None) -> Tensor:
    """Draw ``(*shape, D)`` samples from ``prior`` using an explicit generator.

    torch distributions draw from the global RNG; this function reproduces their sampling
    with ``generator`` for BoxUniform, LogUniform, LogNormal, MultivariateNormal, Normal/Uniform wrapped
    in Independent, and Joint of those. Other distributions are sampled under a forked global
    RNG seeded from ``generator`` (reproducible, leaves the caller's RNG untouched).
    """
    shape = tuple(shape)
    if generator is None:
        return prior.sample(shape)
    if isinstance(prior, Joint):
        return torch.cat([sample_prior(p, shape, generator=generator) for p in prior.parts], dim=-1)
    if isinstance(prior, BoxUniform):
        u = torch.rand(
            (*shape, *prior.event_shape), generator=generator, dtype=prior.low.dtype, device=prior.low.device
        )
        return prior.low + u * (prior.high - prior.low)
    if isinstance(prior, LogUniform):
        u = torch.rand(
            (*shape, *prior.event_shape), generator=generator, dtype=prior.low.dtype, device=prior.low.device
        )
        return torch.exp(prior._log_low + u * (prior._log_high - prior._log_low))
    if isinstance(prior, LogNormal):
        eps = torch.randn(
            (*shape, *prior.event_shape), generator=generator, dtype=prior.loc.dtype, device=prior.loc.device
        )
        return torch.exp(prior.loc + prior.scale * eps)
    if isinstance(prior, MultivariateNormal):
        eps = torch.randn(
            (*shape, *prior.batch_shape, *prior.event_shape),
            generator=generator,
            dtype=prior.loc.dtype,
            device=prior.loc.device,
        )
        return prior.loc + (prior.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)
    if isinstance(prior, Independent) and isinstance(prior.base_dist, (torch.distributions.Normal, Uniform)):
        base = prior.base_dist
        full = (*shape, *prior.batch_shape, *prior.event_shape)
        if isinstance(base, Uniform):
            u = torch.rand(full, generator=generator, dtype=base.low.dtype, device=base.low.device)
            return base.low + u * (base.high - base.low)
        eps = torch.randn(full, generator=generator, dtype=base.loc.dtype, device=base.loc.device)
        return base.loc + base.scale * eps
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return prior.sample(shape)


def prior_to_dict(prior: Distribution) -> dict | None:
    """A JSON description of BoxUniform, LogUniform, LogNormal, MultivariateNormal and Joint priors (None otherwise)."""
    if isinstance(prior, BoxUniform):
        return {"type": "BoxUniform", "low": prior.low.tolist(), "high": prior.high.tolist()}
    if isinstance(prior, LogUniform):
        return {"type": "LogUniform", "low": prior.low.tolist(), "high": prior.high.tolist()}
    if isinstance(prior, LogNormal):
        return {"type": "LogNormal", "loc": prior.loc.tolist(), "scale": prior.scale.tolist()}
    if isinstance(prior, MultivariateNormal) and len(prior.batch_shape) == 0:
        return {"type": "MultivariateNormal", "loc": prior.loc.tolist(), "covariance": prior.covariance_matrix.tolist()}
    if isinstance(prior, Joint):
        parts = [prior_to_dict(p) for p in prior.parts]
        return None if any(p is None for p in parts) else {"type": "Joint", "parts": parts}
    return None


def prior_spec(prior: Distribution | None) -> dict | None:
    """:func:`prior_to_dict` of a prior an estimator keeps (None for None).

    Raises:
        ValueError: a prior physgen cannot record (not one of :data:`SUPPORTED_PRIORS`).
    """
    if prior is None:
        return None
    spec = prior_to_dict(prior)
    if spec is None:
        raise ValueError(f"unsupported prior {prior!r}: use {SUPPORTED_PRIORS}")
    return spec


def prior_from_dict(spec: dict, device: str | torch.device | None = None) -> Distribution:
    """Inverse of :func:`prior_to_dict`, with the prior's tensors on ``device``."""
    kind = spec.get("type")
    if kind == "BoxUniform":
        return BoxUniform(spec["low"], spec["high"], device=device)
    if kind == "LogUniform":
        return LogUniform(spec["low"], spec["high"], device=device)
    if kind == "LogNormal":
        return LogNormal(spec["loc"], spec["scale"], device=device)
    if kind == "MultivariateNormal":
        return MultivariateNormal(
            torch.tensor(spec["loc"], device=device), covariance_matrix=torch.tensor(spec["covariance"], device=device)
        )
    if kind == "Joint":
        return Joint([prior_from_dict(p, device) for p in spec["parts"]])
    raise ValueError(
        f"unknown prior type {kind!r}; known: BoxUniform, LogUniform, LogNormal, MultivariateNormal, Joint"
    )
