"""Protocols shared by every part of physgen, and every hook that the trainer or an estimator looks up.

Shapes follow torch: ``(*batch, *event)``.

* θ (parameters) has event shape ``(D,)``.
* x (an observation) has the simulator's ``x_shape``: a vector ``(F,)``, a field ``(C, H, W)`` /
  ``(H, W)``, or a padded point set ``(N_max, d + 1)`` whose last column is the mask
  (:func:`physgen.shapes.split_points`).
* A conditional model's target has its ``event_shape``: θ for a posterior, x for an emulator.

Randomness is explicit: a keyword-only ``generator: torch.Generator | None`` (or a ``seed`` at the API
edge). Same seed, same device => the same numbers.

Hooks looked up by name, and nothing else is:

* on a :class:`ConditionalModel`: ``fit_defaults``, ``default_transform``, ``sample_block``,
  ``warm_start`` (see the class);
* on an :class:`Encoder`: ``x_standardization``;
* on a module passed to :func:`physgen.fit` (:class:`Trainable`): ``loss``, ``warm_start``,
  ``training_step``.

This module holds protocols only: no implementation, no torch global state.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor
from torch.distributions import Distribution

__all__ = [
    "Simulator",
    "ConditionalModel",
    "Network",
    "Encoder",
    "Trainable",
    "LogDensity",
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
        """Simulate one observation per parameter set: theta ``(*B, D)`` -> x ``(*B, *x_shape)``."""
        ...


@runtime_checkable
class ConditionalModel(Protocol):
    """A conditional generative family q(target | context) with its training loss.

    The same class serves θ|x (posterior) and x|θ (emulator). Models see standardised,
    unconstrained targets; standardisation lives in :mod:`physgen.inference`. The context is
    already a vector ``(*B, C)`` (an encoder's output).

    Attributes:
        name: the family's registry name (:data:`physgen.models.MODELS`).
        event_shape: the target's event shape: ``(D,)``, a field ``(C, H, W)``, ... A family that
            serves only some shapes raises ValueError naming the shapes it supports.
        context_dim: C (0 = unconditional).
        config: JSON-serialisable; ``Family(**config)`` rebuilds the model (networks included).

    Class attributes (optional hooks):
        fit_defaults: training options (:func:`physgen.fit` keywords) that ``fit_posterior`` /
            ``fit_emulator`` apply unless the caller gives them. Default: none.
        default_transform: how a posterior treats a bounded prior when ``transform="auto"``:
            ``"none"`` (work in θ space, reject outside the support) or ``"unconstrained"``
            (work in a space mapped onto the support). Default ``"unconstrained"``.
        sample_block: rows (samples x contexts) per :meth:`sample` call when an estimator samples
            in blocks on the CPU. Default 16,384.

    Optional method:
        ``warm_start(target (n, *event), context (n, C))``: set data-dependent initial values before
        the first epoch (e.g. a linear-Gaussian baseline); called once, not on resume.
    """

    name: str
    event_shape: tuple[int, ...]
    context_dim: int
    config: dict
    fit_defaults: ClassVar[dict]
    default_transform: ClassVar[Literal["none", "unconstrained"]]
    sample_block: ClassVar[int]

    def loss(self, target: Tensor, context: Tensor | None, *, generator: torch.Generator | None = None) -> Tensor:
        """Training loss: target ``(B, *event)``, context ``(B, C)`` -> scalar."""
        ...

    def sample(
        self, shape: tuple[int, ...], context: Tensor | None, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw samples: context ``(*Bc, C)`` -> ``(*shape, *Bc, *event)``."""
        ...

    def log_prob(self, target: Tensor, context: Tensor | None) -> Tensor:
        """log q(target | context): target ``(*B, *event)``, context ``(*B, C)`` (broadcast) -> ``(*B,)``."""
        ...


@runtime_checkable
class Network(Protocol):
    """The network of a vector-field or denoiser family (flow matching, diffusion), passed in.

    :class:`physgen.nn.ResidualMLP` serves vectors ``(D,)``; :class:`physgen.nn.UNet` serves fields
    ``(C, H, W)``. The family calls exactly these two methods:

    * ``embed_context(context (*B, C)) -> (*B, E)``: the time-independent part of the conditioning
      (None when ``context_features == 0``); samplers compute it once and reuse it at every step;
    * ``forward(x (*B, *event), t, context_embedding) -> (*B, *event)``: t a scalar tensor or ``(*B,)``,
      the embedding ``(*B, E)`` or broadcastable to it, or None.

    Attributes:
        name: registry name (:data:`physgen.models.NETWORKS`); ``config``: ``Net(**config)`` rebuilds it.
        event_shape: the shape it maps; context_features: C.
    Networks start with a zero output layer, so an untrained family is its analytic baseline.
    """

    name: str
    config: dict
    event_shape: tuple[int, ...]
    context_features: int

    def embed_context(self, context: Tensor | None) -> Tensor | None: ...

    def forward(self, x: Tensor, t: Tensor, context_embedding: Tensor | None = None) -> Tensor: ...


@runtime_checkable
class Encoder(Protocol):
    """A summary network ``(x: (*B, *x_shape), mask: (*B, N) | None) -> (*B, E)``.

    Attributes:
        out_features: E.
        name, config: ``physgen.nn.build_encoder(name, **config)`` rebuilds it.
        x_standardization: how an estimator standardises x before this encoder: ``"feature"``
            (per-element mean and std), ``"global"`` (one scalar, for fields) or ``"none"`` (point sets
            with a mask column). Default ``"feature"``.
    Permutation-invariant encoders must be exactly invariant.
    """

    out_features: int

    def __call__(self, x: Tensor, mask: Tensor | None = None) -> Tensor: ...


@runtime_checkable
class Trainable(Protocol):
    """What :func:`physgen.fit` trains: an ``nn.Module`` with ``loss(*batch) -> scalar``.

    ``loss`` receives ``generator=`` (the run's explicit torch.Generator) when it accepts that keyword.
    Optional: ``warm_start(*tensors)`` (called once before the first epoch with rows of the training split)
    and ``training_step(batch, optimizers, *, generator) -> float`` (replaces the default backward and
    step; a family with several optimizers, such as an adversarial pair, trains through it).
    """

    def loss(self, *batch: Tensor) -> Tensor: ...


@runtime_checkable
class LogDensity(Protocol):
    """An unnormalised log density ``θ: (*B, D) -> (*B,)``. Every sampler consumes one."""

    def __call__(self, theta: Tensor) -> Tensor: ...
