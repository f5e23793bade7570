"""Emulators q(x | θ): the conditional estimator with the observation x as target and θ as context.

An emulator is a conditional generative model of the simulator's output that is much cheaper than the
simulator. Any family whose event shape fits x serves: flows for vector x, flow matching and diffusion
(with a U-Net) for fields ``(C, H, W)``. θ is standardised per component and flattened into the context.
x is standardised per element for vectors and per channel for fields (``target_standardization``), after an
optional pointwise map onto the real line (``x_transform``, e.g. u = ln(1 + δ) for a density contrast:
:mod:`physgen.inference.x_transforms`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from physgen import checks
from physgen.inference.estimator import ConditionalEstimator
from physgen.inference.x_transforms import build_x_transform, check_x_support, outside_support
from physgen.shapes import batch_shape_of

__all__ = ["Emulator"]


class Emulator(ConditionalEstimator):
    """q(x | θ): target x ``x_shape``, context θ ``(D,)``.

    Build it with :func:`physgen.fit_emulator`; load it with :func:`physgen.load`.

    Args:
        model: a conditional model with event shape ``x_shape`` and context size ``encoder.out_features``.
        encoder: the encoder of θ (default in fit_emulator: :class:`physgen.inference.estimator.Flatten`).
        theta_dim: D.
        x_shape: the event shape of one simulation.
        target_standardization: "feature", "channel", "global" or "none" (default by x's shape).
        x_transform: "none", "log" (x > 0) or "log1p" (x > -1): the model learns u = ln(x + s) and returns
            x = e^u - s (:mod:`physgen.inference.x_transforms`).
    """

    kind = "emulator"
    _context_name = "theta"

    def __init__(
        self,
        model: nn.Module,
        encoder: nn.Module,
        theta_dim: int,
        x_shape: tuple[int, ...],
        *,
        target_standardization: str | None = None,
        x_transform: str = "none",
    ):
        super().__init__(
            model, encoder, tuple(x_shape), (int(theta_dim),), target_standardization=target_standardization
        )
        self.theta_dim, self.x_shape = int(theta_dim), tuple(x_shape)
        self._x_map = build_x_transform(x_transform, self.x_shape)
        self.x_transform = x_transform
        self.theta_range: tuple[list[float], list[float]] | None = None  # the training θ's box, set by standardize_from

    @property
    def target_transform(self):
        """x = T(u): the ``x_transform`` map from model space (None for "none")."""
        return self._x_map

    # ------------------------------------------------------------------ training
    def loss(self, theta: Tensor, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Training loss on a batch in the data's column order: theta ``(B, D)``, x ``(B, *x_shape)`` -> scalar.

        Raises:
            ValueError: x outside the support of ``x_transform`` (rows past the first ones, those the
                standardisation checked), naming the batch rows.
        """
        if self._x_map is not None:
            check_x_support(self.x_transform, x, "rows of a training batch")
        return self._model_loss(x, theta, generator)

    def warm_start(self, theta: Tensor, x: Tensor) -> None:
        """Called by :func:`physgen.fit` before the first epoch: the model's data-dependent initial values."""
        self._model_warm_start(x, theta)

    @torch.no_grad()
    def standardize_from(self, theta: Tensor, x: Tensor) -> None:
        """Set the standardisation from training rows theta ``(n, D)``, x ``(n, *x_shape)``, and record the
        training θ's box (θ outside it is warned about: the emulator would extrapolate).

        Raises:
            ValueError: x outside the support of ``x_transform`` (naming the rows).
        """
        check_x_support(self.x_transform, x)
        self.standardize(x, theta)
        self.theta_range = None
        self.include_theta(theta)

    def include_theta(self, theta: Tensor) -> None:
        """Grow the training θ's box (``theta_range``, that of the extrapolation warning) to hold theta ``(n, D)``."""
        t = torch.as_tensor(theta).detach().double().cpu()
        low, high = t.min(0).values, t.max(0).values
        if self.theta_range is not None:
            low = torch.minimum(low, torch.tensor(self.theta_range[0], dtype=torch.float64))
            high = torch.maximum(high, torch.tensor(self.theta_range[1], dtype=torch.float64))
        self.theta_range = (low.tolist(), high.tolist())

    def check_theta(self, theta: Tensor) -> None:
        """Warn (UserWarning) when θ ``(*B, D)`` lies outside the training θ's box by more than 1% of its width."""
        if self.theta_range is None:
            return
        low, high = (torch.tensor(v, dtype=torch.float64) for v in self.theta_range)
        tol = 0.01 * (high - low)
        t = torch.as_tensor(theta).detach().double().cpu().reshape(-1, self.theta_dim)
        out = ((t < low - tol) | (t > high + tol)).any(-1)
        if bool(out.any()):
            k = int(out.nonzero()[0])
            warnings.warn(
                f"{int(out.sum())} of {len(t)} θ lie outside the training θ range (e.g. θ = {t[k].tolist()}; "
                f"trained on {self.theta_range[0]} .. {self.theta_range[1]}): the emulator extrapolates "
                "there and its output is not checked against the simulator",
                UserWarning,
                stacklevel=3,
            )

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def sample(
        self,
        n: int,
        theta: Tensor,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        progress: Callable[[int], None] | None = None,
        **sample_options,
    ) -> Tensor:
        """Draw n emulated simulations per parameter set.

        Args:
            n: simulations per θ.
            theta: one parameter set ``(D,)`` -> returns ``(n, *x_shape)``; a batch ``(B, D)`` -> ``(n, B, *x_shape)``.
            seed / generator: randomness (a seed makes a generator on the model's device).
            progress: called with the number of simulations per θ drawn so far, after each block the
                sampler draws at once (the draws do not depend on it).
            **sample_options: passed to the model's sample (e.g. ``steps``).

        Returns:
            ``(n, *x_shape)`` or ``(n, B, *x_shape)``; n = 0 gives an empty tensor of that shape.

        Raises:
            TypeError, ValueError: n is not an int >= 0, θ holds NaN/inf (named), or the result would exceed
                :data:`physgen.checks.MAX_SAMPLE_BYTES`.
        """
        n = checks.check_count(n, "n")
        theta = torch.as_tensor(theta)
        checks.check_finite(theta, "theta")
        self.check_theta(theta)
        c, bshape = self._encoded_observations(theta, "theta")
        checks.check_sample_size(n, math.prod(bshape), math.prod(self.x_shape))
        if n == 0:
            return torch.empty(0, *bshape, *self.x_shape, device=c.device, dtype=c.dtype)
        if generator is None and seed is not None:
            generator = torch.Generator(device=c.device).manual_seed(seed)
        return self._draw(n, c, generator, sample_options, progress)

    def log_prob(self, x: Tensor, theta: Tensor, **options) -> Tensor:
        """log q(x | θ): x ``(*B, *x_shape)``, theta ``(*B, D)`` (broadcast) -> ``(*B,)``; -inf for x outside
        the support of ``x_transform``.

        Raises:
            NotImplementedError: the family has no density (e.g. a GAN).
            ValueError: x or θ holds NaN/inf (named).
            RuntimeError: the density is NaN (never returned silently).
        """
        if not hasattr(self.model, "log_prob"):
            raise NotImplementedError(f"the {self.model.name!r} family has no log_prob")
        batch_shape_of(x, self.x_shape, "x")
        checks.check_finite(x, "x")
        checks.check_finite(theta, "theta")
        self.check_theta(theta)
        ref = self.target_shift
        x, theta = x.to(ref.device, ref.dtype), theta.to(ref.device, ref.dtype)
        T = self.target_transform
        if T is None:
            lp = self._model_log_prob(x, self.encode(theta), **options)
        else:  # x = T(u): log q(x) = log q_u(u) - log|det dT/du|; x outside T's range has density 0
            out = outside_support(self.x_transform, x, len(self.x_shape))
            safe = torch.where(out.reshape(*out.shape, *([1] * len(self.x_shape))), torch.zeros_like(x), x)
            u = self._to_u(safe)
            lp = self._model_log_prob(u, self.encode(theta), **options) - T.log_abs_det_jacobian(u, safe)
            lp = torch.where(out, torch.full_like(lp, -math.inf), lp)
        if bool(torch.isnan(lp).any()):
            raise RuntimeError(
                f"log_prob is NaN for {int(torch.isnan(lp).sum())} of {lp.numel()} (x, θ) pairs: the "
                "emulator's weights may hold NaN/inf (train it again) or the inputs are far outside "
                "the training data"
            )
        return lp

    def extra_repr(self) -> str:
        return f"theta_dim={self.theta_dim}, x_shape={self.x_shape}"

    # ------------------------------------------------------------------ persistence
    def save_config(self) -> dict:
        """The JSON part of a saved emulator (:mod:`physgen.inference.persist`)."""
        return {**self._core_config(), "theta_range": self.theta_range, "x_transform": self.x_transform}

    @classmethod
    def from_config(cls, model: nn.Module, encoder: nn.Module, config: dict) -> Emulator:
        emulator = cls(
            model,
            encoder,
            config["context_shape"][0],
            tuple(config["target_shape"]),
            target_standardization=config["target_standardization"],
            x_transform=config.get("x_transform", "none"),  # absent from files written before it existed
        )
        rng = config.get("theta_range")  # absent from files written before it was recorded
        emulator.theta_range = (list(rng[0]), list(rng[1])) if rng else None
        return emulator
