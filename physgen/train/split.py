"""How ``fit`` holds out validation rows: one seeded split of n rows into validation and training indices."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["VALIDATION_SPLITS", "split_rows"]

VALIDATION_SPLITS = ("random", "stable")


def split_rows(n: int, validation_fraction: float, seed: int, how: str = "random") -> tuple[Tensor, Tensor]:
    """(validation indices, training indices) of n rows, at least one each side.

    ``"random"``: a seeded permutation, exactly round(fraction · n) rows held out. ``"stable"``: row i is held
    out when a seeded hash of (seed, i) falls below the fraction, so a row's side does not depend on n: data
    grown by appending rows (sequential rounds) keeps every earlier row on its side.
    """
    if n < 2:
        raise ValueError(f"fit needs at least 2 rows (one for validation); got {n}")
    if how == "stable":
        h = (torch.arange(n, dtype=torch.int64) * 0x9E3779B1 + (int(seed) & 0xFFFFFFFF) * 0x85EBCA77) & 0xFFFFFFFF
        for mult in (0x7FEB352D, 0x846CA68B):  # an integer hash (xor-shift-multiply rounds), 32 bits
            h = ((h ^ (h >> 16)) * mult) & 0xFFFFFFFF
        u = (h ^ (h >> 16)).double() / 2.0**32
        order = torch.argsort(u, stable=True)
        n_val = min(max(1, int((u < validation_fraction).sum())), n - 1)
        val = order[:n_val]
        is_val = torch.zeros(n, dtype=torch.bool)
        is_val[val] = True
        return val, torch.arange(n)[~is_val]
    if how != "random":
        raise ValueError(f"validation_split must be one of {VALIDATION_SPLITS}; got {how!r}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = min(max(1, int(round(validation_fraction * n))), n - 1)
    return perm[:n_val], perm[n_val:]
