"""Pointwise maps of an emulator's x onto the real line, applied before standardisation (``x_transform``).

A positive or bounded-below simulation output (a density contrast δ > -1, counts, intensities) is often far
from Gaussian: a lognormal field's one-point PDF is skewed and heavy-tailed. Emulating u = ln(x + s) instead
is the usual remedy in cosmology (the log-density field); the emulator then learns u and returns
x = e^u - s, which is always inside the support, and its density is

    log q(x | θ) = log q_u(ln(x + s) | θ) - Σ_elements ln(x + s)

(the Jacobian of x = e^u - s is e^u per element). Names:

    "none"    x itself
    "log"     u = ln x            (x > 0)
    "log1p"   u = ln(1 + x)       (x > -1, e.g. a density contrast δ)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import IndependentTransform, Transform, constraints

__all__ = ["X_TRANSFORMS", "ShiftedLog", "build_x_transform", "check_x_support", "outside_support"]

X_TRANSFORMS = {"none": None, "log": 0.0, "log1p": 1.0}  # name -> the shift s of u = ln(x + s)


class ShiftedLog(Transform):
    """x = e^u - s (model space u -> x); its inverse is u = ln(x + s). Elementwise; shapes are kept."""

    domain = constraints.real
    bijective = True
    sign = +1

    def __init__(self, shift: float, cache_size: int = 0):
        super().__init__(cache_size=cache_size)
        self.shift = float(shift)

    @property
    def codomain(self):
        return constraints.greater_than(-self.shift)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ShiftedLog) and other.shift == self.shift

    def _call(self, u: Tensor) -> Tensor:
        return torch.expm1(u) if self.shift == 1.0 else torch.exp(u) - self.shift

    def _inverse(self, x: Tensor) -> Tensor:
        return torch.log1p(x) if self.shift == 1.0 else torch.log(x + self.shift)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        """ln |dx/du| = u per element (torch's argument names: x is the input u, y the output)."""
        return x


def _check_name(name: str) -> str:
    if name not in X_TRANSFORMS:
        raise ValueError(f"x_transform must be one of {sorted(X_TRANSFORMS)}; got {name!r}")
    return name


def build_x_transform(name: str, x_shape: tuple[int, ...]) -> Transform | None:
    """The map u -> x for x of event shape ``x_shape`` (its log-Jacobian summed over the event), or None."""
    shift = X_TRANSFORMS[_check_name(name)]
    if shift is None:
        return None
    return IndependentTransform(ShiftedLog(shift), reinterpreted_batch_ndims=len(x_shape))


def check_x_support(name: str, x: Tensor, where: str = "training rows") -> None:
    """Raise a ValueError naming the rows of x ``(n, *x_shape)`` outside the support of ``name``'s map
    (``where`` says what the rows are, e.g. "rows of a training batch")."""
    shift = X_TRANSFORMS[_check_name(name)]
    if shift is None or x.numel() == 0:
        return
    bad = outside_support(name, x, x.dim() - 1)
    if bool(bad.any()):
        rows = bad.nonzero().flatten()
        need = "x > 0" if shift == 0.0 else f"x > {-shift:g}"
        raise ValueError(
            f"x_transform={name!r} needs {need} everywhere, but {len(rows)} {where} have values at or below "
            f"{-shift:g} (first row {int(rows[0])}, minimum {float(x.min()):.4g}): use x_transform='none', "
            "or shift x into the support before training"
        )


def outside_support(name: str, x: Tensor, event_dims: int) -> Tensor:
    """Boolean ``(*B,)``: the x ``(*B, *x_shape)`` with some element outside ``name``'s support (log q = -inf)."""
    shift = X_TRANSFORMS[_check_name(name)]
    if shift is None:
        return torch.zeros(x.shape[: x.dim() - event_dims], dtype=torch.bool, device=x.device)
    flat = x.reshape(*x.shape[: x.dim() - event_dims], math.prod(x.shape[x.dim() - event_dims :]))
    return (flat <= -shift).any(-1)
