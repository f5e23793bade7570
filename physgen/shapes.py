"""Shape helpers: batch shapes over any number of trailing event dimensions, and padded point sets.

Shapes follow torch: ``(*batch, *event)``. A point set of variable size is one padded tensor
``(N_max, d + 1)``: the first ``d`` columns are coordinates, the last column is the mask
(1.0 = a real point, 0.0 = padding; padded coordinates are 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "as_event_shape",
    "batch_shape_of",
    "flatten_event",
    "unflatten_event",
    "split_points",
    "join_points",
]


def as_event_shape(shape: int | Sequence[int], what: str = "event_shape") -> tuple[int, ...]:
    """An int D -> ``(D,)``; a sequence of positive ints -> a tuple. Raises ValueError otherwise."""
    if isinstance(shape, bool):
        raise ValueError(f"{what} must be an int or a tuple of positive ints; got {shape!r}")
    if isinstance(shape, int):
        shape = (shape,)
    try:
        out = tuple(int(s) for s in shape)
    except TypeError:
        raise ValueError(f"{what} must be an int or a tuple of positive ints; got {shape!r}") from None
    if not out or any(s < 1 for s in out):
        raise ValueError(f"{what} must be a non-empty tuple of positive ints; got {shape!r}")
    return out


def batch_shape_of(x: Tensor, event_shape: Sequence[int], what: str = "x") -> torch.Size:
    """The batch shape of ``x (*batch, *event_shape)``.

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


def flatten_event(x: Tensor, event_shape: Sequence[int], what: str = "x") -> Tensor:
    """``(*batch, *event_shape) -> (*batch, prod(event_shape))`` (a view where possible)."""
    batch = batch_shape_of(x, event_shape, what)
    return x.reshape(*batch, math.prod(event_shape))


def unflatten_event(x: Tensor, event_shape: Sequence[int]) -> Tensor:
    """``(*batch, prod(event_shape)) -> (*batch, *event_shape)``; the identity for a vector event."""
    if len(event_shape) == 1:
        return x
    return x.reshape(*x.shape[:-1], *event_shape)


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
