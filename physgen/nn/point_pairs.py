r"""Pair geometry of padded point sets in a periodic box: trimming, minimum-image neighbour counts, pair counts.

Point sets follow :mod:`physgen.shapes`: points ``(B, N, d)`` and a boolean mask ``(B, N)``. Distances
are minimum-image distances on the torus of side L (``box_size``):

    Δ = x_i - x_j - L round((x_i - x_j) / L),   r_ij = |Δ|,

exact for r <= L/2. Padding is excluded everywhere. Everything here is computed without gradients
(counts are piecewise constant in the coordinates) in blocks of sets, so memory stays at about
``block * N^2`` floats whatever the batch. :class:`RowCache` memoises per-set results (neighbour counts, pair counts) by
the exact bytes of each set's real points, so a training set that comes back every epoch pays for
its O(N^2) pair search once.
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch import Tensor

__all__ = [
    "trim_padding",
    "neighbour_counts",
    "pair_counts",
    "shell_volumes",
    "PAIR_BLOCK",
    "RowCache",
    "encode_in_blocks",
    "EVAL_BLOCK",
]

PAIR_BLOCK = 1 << 22  # pair distances held at once (B_block * N * N), about 16 MiB of float32
EVAL_BLOCK = 256  # sets per block when an encoder runs without gradients on a large batch


def trim_padding(pts: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Drop the padding columns no set in the batch needs: ``(B, N, d), (B, N) -> (B, n, d), (B, n)``.

    n is the largest real count in the batch. Real points first (the physgen convention) is a slice;
    otherwise the real points are moved to the front first (a stable sort of the mask), which keeps
    their order. Exact: only padding is removed.
    """
    if mask.shape[-1] == 0:
        return pts, mask
    n = int(mask.sum(-1).max()) if mask.numel() else 0
    if n == mask.shape[-1]:
        return pts, mask
    if bool(mask[..., n:].any()):
        order = torch.sort((~mask).to(torch.uint8), dim=-1, stable=True).indices
        pts = torch.gather(pts, -2, order.unsqueeze(-1).expand_as(pts))
        mask = torch.gather(mask, -1, order)
    return pts[..., :n, :], mask[..., :n]


def encode_in_blocks(pts: Tensor, mask: Tensor, encode) -> Tensor:
    """``encode(*trim_padding(pts, mask))`` for ``pts (B, N, d)``, ``mask (B, N)`` -> ``(B, E)``.

    With gradients (training batches) in one call. Without (warm starts, validation, sampling) a batch
    larger than ``EVAL_BLOCK`` is encoded in blocks of sets of similar size, each trimmed to its own
    largest count, so memory and time follow the real counts, not the largest set of the batch.
    """
    if torch.is_grad_enabled() or pts.shape[0] <= EVAL_BLOCK:
        return encode(*trim_padding(pts, mask))
    order = torch.argsort(mask.sum(-1))
    outs = [encode(*trim_padding(pts[idx], mask[idx])) for idx in order.split(EVAL_BLOCK)]
    out = torch.empty(pts.shape[0], *outs[0].shape[1:], dtype=outs[0].dtype, device=outs[0].device)
    out[order] = torch.cat(outs)
    return out


def _blocks(b: int, n: int) -> list[slice]:
    step = max(1, PAIR_BLOCK // max(n * n, 1))
    return [slice(s, min(s + step, b)) for s in range(0, b, step)]


def _r2(pts: Tensor, box_size: float) -> Tensor:
    """Squared minimum-image separations ``(B, N, d) -> (B, N, N)``, one coordinate at a time.

    For coordinates in [0, L): |Δ| = min(|x_i - x_j|, L - |x_i - x_j|) (few passes, in place).
    """
    r2 = None
    for a in range(pts.shape[-1]):
        c = pts[..., a]
        diff = (c[:, :, None] - c[:, None, :]).abs_()
        diff = torch.minimum(diff, box_size - diff).square_()
        r2 = diff if r2 is None else r2.add_(diff)
    assert r2 is not None, "points have at least one coordinate (d >= 1)"
    return r2


def _close_pairs(pts: Tensor, mask: Tensor, box_size: float, r_max: float):
    """Yield, block of sets by block, the ordered pairs i != j of real points with r_ij <= r_max as
    (set index, i, r_ij^2), so that memory holds one block's pairs at a time."""
    b, n = mask.shape
    eye = torch.eye(n, dtype=torch.bool, device=pts.device)
    for s in _blocks(b, n):
        r2 = _r2(pts[s], box_size)
        m = mask[s]
        close = (r2 <= r_max * r_max) & m[:, :, None] & m[:, None, :] & ~eye
        k, i, j = close.nonzero(as_tuple=True)
        yield k + s.start, i, r2[k, i, j]


@torch.no_grad()
def neighbour_counts(pts: Tensor, mask: Tensor, box_size: float, radii: Tensor) -> Tensor:
    """Number of other real points within each radius of each point: ``(B, N, d), (B, N), (R,) -> (B, N, R)``.

    Padded rows are 0. ``radii`` (increasing) in the coordinates' unit, each <= L/2.
    """
    b, n = mask.shape
    nr = radii.numel()
    hist = torch.zeros(b * n * (nr + 1), dtype=pts.dtype, device=pts.device)
    for k, i, r2 in _close_pairs(pts, mask, box_size, float(radii.max())):
        shell = torch.bucketize(r2, (radii.to(r2) ** 2).contiguous(), right=False)  # first radius holding the pair
        hist.index_add_(0, (k * n + i) * (nr + 1) + shell, torch.ones_like(r2, dtype=pts.dtype))
    return hist.reshape(b, n, nr + 1)[..., :nr].cumsum(-1)


@torch.no_grad()
def pair_counts(pts: Tensor, mask: Tensor, box_size: float, edges: Tensor) -> Tensor:
    """Ordered pairs i != j of real points per separation bin: ``(B, N, d), (B, N), (R + 1,) -> (B, R)``.

    Bin b is ``edges[b] < r <= edges[b + 1]`` (with r = 0 in the first bin when ``edges[0] == 0``).
    """
    b = mask.shape[0]
    nb = edges.numel() - 1
    hist = torch.zeros(b * (nb + 2), dtype=torch.float64, device=pts.device)
    e2 = (edges.to(torch.float64) ** 2).to(pts.device)
    for k, _, r2 in _close_pairs(pts, mask, box_size, float(edges[-1])):
        idx = torch.bucketize(r2.double(), e2, right=False)  # 0: r <= edges[0]; b + 1: in bin b
        if float(edges[0]) == 0.0:
            idx = idx.clamp_min(1)
        hist.index_add_(0, k * (nb + 2) + idx, torch.ones_like(r2, dtype=torch.float64))
    return hist.reshape(b, nb + 2)[:, 1 : nb + 1]


def shell_volumes(edges: Tensor, dim: int) -> Tensor:
    """Volumes of the separation bins: annuli (d = 2), spherical shells (d = 3), segments (d = 1)."""
    c = {1: 2.0, 2: math.pi, 3: 4 * math.pi / 3}.get(dim)
    if c is None:  # volume of the unit d-ball
        c = math.pi ** (dim / 2) / math.gamma(dim / 2 + 1)
    return c * (edges[1:] ** dim - edges[:-1] ** dim)


class RowCache:
    """Memoised per-set results keyed by a digest of each set's real points' bytes (128-bit BLAKE2b).

    Exact: the cached functions (neighbour counts, pair counts) are deterministic functions of those
    bytes. Holds at most ``max_values`` numbers; when full it is emptied and refills. Not saved with a
    module. ``per_point``: results are ``(B, N, ...)`` and each set keeps its first N_real rows.
    """

    def __init__(self, per_point: bool, max_values: int = 50_000_000):
        self.per_point, self.max_values, self.values = per_point, int(max_values), 0
        self.store: dict[bytes, Tensor] = {}

    def __call__(self, pts: Tensor, mask: Tensor, compute) -> Tensor:
        """``compute(pts, mask) -> (B, ...)`` for trimmed ``pts (B, N, d)``, ``mask (B, N)`` (real points first),
        evaluated only on the sets not seen before."""
        b, n = mask.shape
        counts = mask.sum(-1).tolist()
        host = pts.detach().to("cpu", torch.float32).numpy()
        keys = [
            hashlib.blake2b(host[k, :c].tobytes(), digest_size=16).digest() + str(c).encode()
            for k, c in enumerate(counts)
        ]
        missing = [k for k, key in enumerate(keys) if key not in self.store]
        if missing:
            idx = torch.tensor(missing, device=pts.device)
            fresh = compute(*trim_padding(pts[idx], mask[idx]))
            if self.values + fresh.numel() > self.max_values:
                self.store, self.values = {}, 0
            for j, k in enumerate(missing):
                self.store[keys[k]] = fresh[j, : counts[k]] if self.per_point else fresh[j]
                self.values += self.store[keys[k]].numel()
        first = self.store[keys[0]]
        if not self.per_point:
            return torch.stack([self.store[key] for key in keys]).to(pts.device)
        out = torch.zeros(b, n, *first.shape[1:], dtype=first.dtype, device=pts.device)
        for k, key in enumerate(keys):
            out[k, : counts[k]] = self.store[key]
        return out
