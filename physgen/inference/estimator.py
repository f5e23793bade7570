"""One conditional estimator q(target | context): the core that posteriors and emulators share.

For a target ``(*B, *target_shape)`` and a context ``(*B, *context_shape)``:

    u = T⁻¹(target)            T: an optional bijection onto the target's support (a posterior's prior map)
    z = (u - μ) / σ            standardisation: per element ("feature"), per channel of a field ("channel"),
                               one scalar ("global") or none
    c = encoder((context - μ_c) / σ_c)   the context standardised as the encoder asks (``x_standardization``)

and ``log q(target | context) = log q_model(z | c) - Σ log σ - log |det ∂T/∂u|``. The model is any
:class:`physgen.core.ConditionalModel`; sampling runs in blocks of the model's ``sample_block`` rows on
the CPU (whole batches on a GPU). :class:`physgen.inference.Posterior` (θ | x) and
:class:`physgen.inference.Emulator` (x | θ) are thin roles on this class.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor, nn
from torch.distributions import Transform

from physgen.core import ConditionalModel
from physgen.io import save_file
from physgen.shapes import batch_shape_of

if TYPE_CHECKING:
    from physgen.train import FitResult

__all__ = ["ConditionalEstimator", "Flatten", "build_encoder_from", "STANDARDIZATIONS", "default_standardization"]

FORMAT = 2  # the estimator file format this version writes (history: physgen.inference.persist)
SAMPLE_BLOCK = 16_384  # rows per model.sample call on CPU for a model without its own ``sample_block``
STANDARDIZATIONS = ("feature", "channel", "global", "none")
ENCODER_STAT_ROWS = 20_000  # raw x rows an encoder's standardize_from sees (a summary of each costs time)


class Flatten(nn.Module):
    """Identity encoder: ``(*B, *x_shape) -> (*B, prod(x_shape))``."""

    name = "flatten"
    x_standardization = "feature"

    def __init__(self, x_shape: tuple[int, ...]):
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.out_features = math.prod(self.x_shape)
        self.config = {"x_shape": list(self.x_shape)}

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return x.reshape(*x.shape[: x.dim() - len(self.x_shape)], self.out_features)


def build_encoder_from(name: str, config: dict) -> nn.Module:
    """Rebuild an encoder saved as ``{"name", "config"}``."""
    if name == "flatten":
        return Flatten(tuple(config["x_shape"]))
    from physgen.nn import build_encoder

    return build_encoder(name, **config)


def default_standardization(shape: tuple[int, ...]) -> str:
    """ "feature" for vectors, "channel" for fields and other multi-dimensional targets."""
    return "feature" if len(shape) == 1 else "channel"


def _stat_shape(shape: tuple[int, ...], mode: str) -> tuple[int, ...]:
    if mode == "feature":
        return tuple(shape)
    if mode == "channel":
        return (shape[0], *([1] * (len(shape) - 1)))
    return ()


def _fill_stats(shift: Tensor, scale: Tensor, values: Tensor, shape: tuple[int, ...], mode: str) -> None:
    """Set shift/scale from rows ``values (n, *shape)`` in the given mode (no-op for "none")."""
    if mode == "none":
        return
    if mode == "feature":
        sd = values.std(0)
        shift.copy_(values.mean(0))
        scale.copy_(torch.where(sd > 1e-8, sd, torch.ones_like(sd)))
    elif mode == "global":
        shift.fill_(float(values.mean()))
        scale.fill_(max(float(values.std()), 1e-8))
    else:  # channel: statistics over rows and all but the first event dimension
        dims = [0, *range(2, values.dim())]
        shift.copy_(values.mean(dims).reshape(shift.shape))
        scale.copy_(values.std(dims).clamp_min(1e-8).reshape(scale.shape))


class ConditionalEstimator(nn.Module):
    """q(target | context) = conditional model + context encoder + standardisation + optional target bijection.

    Args:
        model: a :class:`physgen.core.ConditionalModel` with ``event_shape == target_shape`` and
            ``context_dim == encoder.out_features``.
        encoder: a context encoder (:class:`physgen.core.Encoder`), e.g. :class:`Flatten`.
        target_shape, context_shape: event shapes.
        target_standardization: "feature", "channel", "global" or "none" (default: "feature" for vectors,
            "channel" for fields).
    """

    fit_result: FitResult  # set by fit_posterior / fit_emulator: the training history
    model: nn.Module
    encoder: nn.Module
    target_shift: Tensor  # buffers: the standardisation of the target (μ, σ) and of the context (μ_c, σ_c)
    target_scale: Tensor
    context_shift: Tensor
    context_scale: Tensor

    def __init__(
        self,
        model: nn.Module,
        encoder: nn.Module,
        target_shape: tuple[int, ...],
        context_shape: tuple[int, ...],
        *,
        target_standardization: str | None = None,
    ):
        super().__init__()
        self.model, self.encoder = model, encoder
        self.target_shape, self.context_shape = tuple(target_shape), tuple(context_shape)
        mode = target_standardization or default_standardization(self.target_shape)
        if mode not in STANDARDIZATIONS:
            raise ValueError(f"target_standardization must be one of {STANDARDIZATIONS}; got {mode!r}")
        self.target_standardization = mode
        self.context_standardization = getattr(encoder, "x_standardization", "feature")
        model_shape = tuple(getattr(model, "event_shape", self.target_shape))
        if model_shape != self.target_shape:
            raise ValueError(f"the model's event shape {model_shape} differs from the target's {self.target_shape}")
        if getattr(model, "context_dim", encoder.out_features) != encoder.out_features:
            raise ValueError(
                f"the model takes {model.context_dim} context features, the encoder gives {encoder.out_features}"
            )
        self.register_buffer("target_shift", torch.zeros(_stat_shape(self.target_shape, mode)))
        self.register_buffer("target_scale", torch.ones(_stat_shape(self.target_shape, mode)))
        cshape = self.context_shape if self.context_standardization == "feature" else ()
        self.register_buffer("context_shift", torch.zeros(cshape))
        self.register_buffer("context_scale", torch.ones(cshape))

    @property
    def _family(self) -> ConditionalModel:
        """The model through its ConditionalModel methods (nn.Module's attribute lookup types them Tensor | Module)."""
        return cast(ConditionalModel, self.model)

    # ------------------------------------------------------------------ maps
    @property
    def target_transform(self) -> Transform | None:
        """T: model space -> target space (None = identity). Roles override it."""
        return None

    def _to_u(self, target: Tensor) -> Tensor:
        T = self.target_transform
        return T.inv(target) if T is not None else target

    def _standardize(self, u: Tensor) -> Tensor:
        return (u - self.target_shift) / self.target_scale

    def _unstandardize(self, z: Tensor) -> Tensor:
        u = z * self.target_scale + self.target_shift
        T = self.target_transform
        return T(u) if T is not None else u

    def _log_scale(self) -> Tensor:
        """Σ log σ over the target's elements (the standardisation's log-Jacobian)."""
        return self.target_scale.log().expand(self.target_shape).sum()

    @torch.no_grad()
    def standardize(self, target: Tensor, context: Tensor) -> None:
        """Set the standardisation from training rows: target ``(n, *target_shape)``, context ``(n, *context_shape)``.

        An encoder with a ``standardize_from(x)`` method gets the raw context rows too (physics summaries set
        their own scales there; :class:`physgen.nn.ConcatEncoder` standardises each part).
        """
        ref = self.target_shift
        _fill_stats(
            self.target_shift,
            self.target_scale,
            self._to_u(target.to(ref)),
            self.target_shape,
            self.target_standardization,
        )
        if self.context_standardization in ("feature", "global"):
            _fill_stats(
                self.context_shift,
                self.context_scale,
                context.to(ref),
                self.context_shape,
                self.context_standardization,
            )
        hook = getattr(self.encoder, "standardize_from", None)  # data-dependent encoder state (summaries)
        if hook is not None:
            hook(context[:ENCODER_STAT_ROWS].to(ref))

    def _conform_points(self, context: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """A point set of another length than the training ``N_max`` -> (context, its event shape).

        Only for set encoders (``accepts == ("points",)``, no context standardisation), which read the mask: a
        shorter set is padded with empty rows; a longer one is cut to ``N_max`` rows when its extra rows are all
        padding, and otherwise goes whole to the encoder (which trims each batch to its largest real count),
        with a warning that the posterior extrapolates beyond the training sets' sizes. Anything else is
        returned unchanged for the shape check.
        """
        shape = self.context_shape
        if (
            tuple(getattr(self.encoder, "accepts", ())) != ("points",)
            or self.context_standardization != "none"
            or len(shape) != 2
            or context.dim() < 2
            or context.shape[-1] != shape[-1]
            or context.shape[-2] == shape[0]
        ):
            return context, shape
        n, n_max = context.shape[-2], shape[0]
        if n < n_max:
            pad = context.new_zeros(*context.shape[:-2], n_max - n, shape[-1])
            return torch.cat([context, pad], dim=-2), shape
        if not bool((context[..., n_max:, -1] > 0.5).any()):
            return context[..., :n_max, :], shape
        real = int((context[..., -1] > 0.5).sum(-1).max())
        warnings.warn(
            f"{self._context_name} holds a set of {real} points, more than N_max = {n_max} of the training "
            f"sets: the set encoder takes it through the mask, but the estimate extrapolates beyond the "
            f"training sets' sizes (simulate with n_max >= {real} to cover it)",
            RuntimeWarning,
            stacklevel=4,
        )
        return context, (n, shape[-1])

    def encode(self, context: Tensor) -> Tensor:
        """Encode contexts ``(*B, *context_shape) -> (*B, E)`` (point sets: any length, see ``_conform_points``)."""
        context, shape = self._conform_points(context)
        return self._encode_conformed(context, shape)

    def _encode_conformed(self, context: Tensor, shape: tuple[int, ...]) -> Tensor:
        batch_shape_of(context, shape, self._context_name)
        if self.context_standardization != "none":
            context = (context - self.context_shift) / self.context_scale
        return self.encoder(context)

    _context_name = "context"

    # ------------------------------------------------------------------ training
    def _model_loss(self, target: Tensor, context: Tensor, generator: torch.Generator | None) -> Tensor:
        dtype = self.target_shift.dtype
        z = self._standardize(self._to_u(target.to(dtype)))
        c = self.encode(context.to(dtype))
        if generator is None:
            return self._family.loss(z, c)
        return self._family.loss(z, c, generator=generator)

    @torch.no_grad()
    def _model_warm_start(self, target: Tensor, context: Tensor) -> None:
        warm_start = getattr(self.model, "warm_start", None)  # an optional hook (physgen.core.ConditionalModel)
        if warm_start is not None:
            dtype = self.target_shift.dtype
            warm_start(self._standardize(self._to_u(target.to(dtype))), self.encode(context.to(dtype)))

    # ------------------------------------------------------------------ inference
    def _draw(
        self,
        n: int,
        c: Tensor,
        generator: torch.Generator | None,
        options: dict,
        progress: Callable[[int], None] | None = None,
    ) -> Tensor:
        """n model samples per encoded context ``c (*Bc, E)`` -> ``(n, *Bc, *target_shape)`` in target space;
        ``progress(drawn)`` after each block (the samples per context drawn so far)."""
        rows = max(1, math.prod(c.shape[:-1]))
        block = getattr(self.model, "sample_block", SAMPLE_BLOCK)
        step = max(1, block // rows) if c.device.type == "cpu" else n
        parts = []
        for i in range(0, max(n, 1), step):
            parts.append(self._family.sample((min(step, n - i),), c, generator=generator, **options))
            if progress is not None:
                progress(min(i + step, n))
        z = torch.cat(parts) if len(parts) > 1 else parts[0]
        return self._unstandardize(z)

    def _model_log_prob(self, u: Tensor, c: Tensor, **options) -> Tensor:
        """log q of targets already mapped to model space u ``(*B, *target_shape)`` (before T's Jacobian)."""
        return self._family.log_prob(self._standardize(u), c, **options) - self._log_scale()

    def _encoded_observations(self, context: Tensor, what: str) -> tuple[Tensor, tuple[int, ...]]:
        """One context ``context_shape`` or a batch ``(B, *context_shape)`` -> (encoded ``(*Bc, E)``, Bc)."""
        context, shape = self._conform_points(torch.as_tensor(context))
        bshape = batch_shape_of(context, shape, what)
        if len(bshape) > 1:
            raise ValueError(
                f"{what} must be one {what} {self.context_shape} or a batch (B, *{self.context_shape}); got {tuple(context.shape)}"
            )
        ref = self.target_shift
        return self._encode_conformed(context.to(ref.device, ref.dtype), shape), tuple(bshape)

    # ------------------------------------------------------------------ persistence
    kind = "estimator"  # the role's file kind ("posterior", "emulator")

    def save_config(self) -> dict:
        """The JSON part of a saved estimator; roles add their keys."""
        return self._core_config()

    def save(self, path) -> Path:
        """Save to one safetensors file (weights and buffers) with a JSON header (architecture, format version);
        atomic, never pickled. :func:`physgen.load` reads it back.

        Raises:
            ValueError: the model's network is not registered (a saved file could not rebuild it).
        """
        config = getattr(self.model, "config", {})
        if "network" in config and config["network"] is None:
            raise ValueError(
                f"the model's network ({type(self.model.net).__name__}) is not registered in physgen.models.NETWORKS, "
                "so a saved file could not rebuild it: use a ResidualMLP or a UNet, or save the state_dict yourself"
            )
        return save_file(path, self.state_dict(), kind=self.kind, config={"format": FORMAT, **self.save_config()})

    def _core_config(self) -> dict:
        return {
            "target_shape": list(self.target_shape),
            "context_shape": list(self.context_shape),
            "target_standardization": self.target_standardization,
            "model": {"name": self.model.name, "config": self.model.config},
            "encoder": {"name": self.encoder.name, "config": self.encoder.config},
        }
