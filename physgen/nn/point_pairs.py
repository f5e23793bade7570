r"""Pair geometry of padded point sets in a periodic box: trimming, minimum-image neighbour counts, pair counts.

Point sets follow :mod:`physgen.shapes`: points ``(B, N, d)`` and a boolean mask ``(B, N)``. Distances
are minimum-image distances on the torus of side L (``box_size``):

    Δ = x_i - x_j - L round((x_i - x_j) / L),   r_ij = |Δ|,

exact for r <= L/2. Padding is excluded everywhere. Everything here is computed without gradients
(counts are piecewise constant in the coordinates) in blocks of sets, so memory stays at about
``block * N^2`` floats whatever the batch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["trim_padding", "neighbour_counts", "pair_counts", "shell_volumes", "PAIR_BLOCK"]

PAIR_BLOCK = 1 << 22  # pair distances held at once (B_block * N * N), about 16 MiB of float32


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


def _blocks(b: int, n: int) -> list[slice]:
    step = max(1, PAIR_BLOCK // max(n * n, 1))
    return [slice(s, min(s + step, b)) for s in range(0, b, step)]


def _r2(pts: Tensor, box_size: float) -> Tensor:
    diff = pts[:, :, None, :] - pts[:, None, :, :]
    diff = diff - box_size * torch.round(diff / box_size)
    return (diff * diff).sum(-1)


@torch.no_grad()
def neighbour_counts(pts: Tensor, mask: Tensor, box_size: float, radii: Tensor) -> Tensor:
    """Number of other real points within each radius of each point: ``(B, N, d), (B, N), (R,) -> (B, N, R)``.

    Padded rows are 0. ``radii`` in the coordinates' unit, each <= L/2.
    """
    b, n = mask.shape
    radii = radii.to(pts)
    out = torch.zeros(b, n, radii.numel(), dtype=pts.dtype, device=pts.device)
    eye = torch.eye(n, dtype=torch.bool, device=pts.device)
    for s in _blocks(b, n):
        p, m = pts[s], mask[s]
        r2 = _r2(p, box_size)
        pair = m[:, :, None] & m[:, None, :] & ~eye
        for k, r in enumerate(radii.tolist()):
            out[s, :, k] = ((r2 <= r * r) & pair).sum(-1).to(pts.dtype)
    return out


@torch.no_grad()
def pair_counts(pts: Tensor, mask: Tensor, box_size: float, edges: Tensor) -> Tensor:
    """Ordered pairs i != j of real points per separation bin: ``(B, N, d), (B, N), (R + 1,) -> (B, R)``.

    Bin b is ``edges[b] < r <= edges[b + 1]`` (with r = 0 in the first bin when ``edges[0] == 0``).
    """
    b, n = mask.shape
    e2 = edges.to(torch.float64) ** 2
    nb = edges.numel() - 1
    out = torch.zeros(b, nb, dtype=torch.float64, device=pts.device)
    eye = torch.eye(n, dtype=torch.bool, device=pts.device)
    for s in _blocks(b, n):
        p, m = pts[s], mask[s]
        r2 = _r2(p.double(), box_size)
        pair = m[:, :, None] & m[:, None, :] & ~eye
        idx = torch.bucketize(r2, e2.to(r2.device), right=False)  # 0: r <= edges[0]; b + 1 in bin b
        if float(edges[0]) == 0.0:
            idx = idx.clamp_min(1)
        idx = torch.where(pair, idx, torch.zeros_like(idx))
        hist = torch.zeros(len(p), nb + 2, dtype=torch.float64, device=pts.device)
        hist.scatter_add_(1, idx.reshape(len(p), -1), torch.ones_like(idx, dtype=torch.float64).reshape(len(p), -1))
        out[s] = hist[:, 1:nb + 1]
    return out


def shell_volumes(edges: Tensor, dim: int) -> Tensor:
    """Volumes of the separation bins: annuli (d = 2), spherical shells (d = 3), segments (d = 1)."""
    c = {1: 2.0, 2: math.pi, 3: 4 * math.pi / 3}.get(dim)
    if c is None:  # volume of the unit d-ball
        c = math.pi ** (dim / 2) / math.gamma(dim / 2 + 1)
    return c * (edges[1:] ** dim - edges[:-1] ** dim)
