"""Size buckets for padded point sets: batches of rows with similar real counts, so each batch trims well.

See :mod:`physgen.train.sources` (``bucket_by``) for how the training sources use them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["BUCKET_POOL", "point_counts", "bucket_counts", "bucketed_batches"]

BUCKET_POOL = 16  # batches whose rows are sorted by size together (bucket_by)
_BUCKETS = ("auto", "mask", None)


def point_counts(t: Tensor) -> Tensor | None:
    """Real counts ``(n,)`` when ``t (n, N_max, d + 1)`` holds padded point sets with some padding, else None.

    A point-set tensor: floating point, a last column of 0s and 1s that never rises along N (real points
    first), and at least one row shorter than N_max (otherwise there is nothing to save).
    """
    if not torch.is_tensor(t) or t.dim() != 3 or t.shape[-1] < 2 or t.shape[1] < 2 or not t.is_floating_point():
        return None
    m = t[..., -1]
    if not bool(((m == 0) | (m == 1)).all()) or not bool((m[:, 1:] <= m[:, :-1]).all()):
        return None
    counts = m.sum(-1).long()
    return counts if bool((counts < t.shape[1]).any()) else None


def bucket_counts(tensors: Sequence[Tensor], bucket_by: str | None) -> Tensor | None:
    """The counts to bucket by: those of the first point-set tensor among ``tensors`` (``"auto"``), required
    (``"mask"``: an error naming the fix when none is one), or None (``bucket_by=None``)."""
    if bucket_by not in _BUCKETS:
        raise ValueError(f"bucket_by must be one of {_BUCKETS}; got {bucket_by!r}")
    if bucket_by is None:
        return None
    for t in tensors:
        counts = point_counts(t)
        if counts is not None:
            return counts
    if bucket_by == "mask":
        raise ValueError(
            "bucket_by='mask' needs a tensor of padded point sets (n, N_max, d + 1) with a 0/1 mask in the "
            "last column, real points first; none of the data tensors is one (pass bucket_by=None)"
        )
    return None


def bucketed_batches(order: Tensor, counts: Tensor, batch_size: int, shuffle: torch.Generator) -> list[Tensor]:
    """Cut a row ``order`` into batches of similar ``counts`` (module docstring); every row exactly once."""
    batches = []
    pool = BUCKET_POOL * batch_size
    for a in range(0, len(order), pool):
        rows = order[a : a + pool]
        rows = rows[torch.sort(counts[rows], stable=True).indices]
        batches += [rows[s : s + batch_size] for s in range(0, len(rows), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=shuffle).tolist()]
