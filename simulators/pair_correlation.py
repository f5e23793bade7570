r"""The pair correlation ĝ(r) of point sets in a periodic box: the natural estimator with analytic RR
(minimum image, r <= L/2),

    ĝ(r_b) = DD_b / RR_b,  DD_b = #ordered pairs i ≠ j with |x_i - x_j| in bin b,
    RR_b = N (N - 1) V_b / V,  V_b = shell (3D) / annulus (2D) volume of the bin.

For a process with random N, E[N(N-1)] = (λV)^2 (1 + c) (Thomas: c = 1/(κV), the integral
constraint), so E[ĝ] ≈ g / (1 + c) to first order; pass ``intensity=λ`` to use
RR_b = λ^2 V V_b instead, which is unbiased: E[DD_b] = λ^2 V ∫_b g dV.
Point sets follow the physgen convention (:mod:`physgen.shapes`, :mod:`simulators.galaxies`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from physgen.shapes import split_points

__all__ = ["pair_correlation", "shell_volumes"]


def shell_volumes(edges: Tensor, dim: int) -> Tensor:
    """Volumes of the annuli (2D) or spherical shells (3D) between consecutive ``edges``."""
    c = math.pi if dim == 2 else 4 * math.pi / 3
    return c * (edges[1:] ** dim - edges[:-1] ** dim)


def pair_correlation(
    points: Tensor,
    box_size: float,
    r_bins: Tensor,
    *,
    mask: Tensor | None = None,
    intensity: float | Tensor | None = None,
    chunk: int = 512,
) -> Tensor:
    """Pair correlation ĝ in a periodic box (natural estimator, analytic RR; module docstring).

    Args:
        points: padded point sets ``(*B, N, d + 1)`` (mask last), or ``(*B, N, d)`` with ``mask``.
        box_size: side L (same unit as the coordinates).
        r_bins: ``(R + 1,)`` increasing separations, r_bins[-1] <= L/2.
        mask: ``(*B, N)`` bool when ``points`` carries no mask column.
        intensity: known λ (scalar or ``(*B,)``): RR = λ^2 V V_b (unbiased) instead of N(N-1) V_b / V.
        chunk: rows per block of the pair computation (memory).

    Returns:
        ``(*B, R)`` float64; NaN for samples with fewer than 2 points.
    """
    if mask is None:
        pts, mask = split_points(points)
    else:
        pts = points
    d = pts.shape[-1]
    edges = torch.as_tensor(r_bins, dtype=torch.float64, device=pts.device)
    if edges.dim() != 1 or edges.numel() < 2 or not bool((edges[1:] > edges[:-1]).all()) or float(edges[0]) < 0:
        raise ValueError("r_bins must be a 1-d increasing tensor of >= 2 non-negative separations")
    if float(edges[-1]) > box_size / 2 * (1 + 1e-12):
        raise ValueError(
            f"r_bins[-1] = {float(edges[-1]):g} > box_size/2 = {box_size / 2:g}: the minimum-image "
            "estimator needs r <= L/2"
        )
    batch = pts.shape[:-2]
    P, M = pts.reshape(-1, *pts.shape[-2:]).double(), mask.reshape(-1, mask.shape[-1])
    R, V = edges.numel() - 1, box_size**d
    vol = shell_volumes(edges, d)
    lam = (
        None
        if intensity is None
        else torch.as_tensor(intensity, dtype=torch.float64, device=pts.device).expand(batch).reshape(-1)
    )
    out = torch.full((P.shape[0], R), float("nan"), dtype=torch.float64, device=pts.device)
    edges2 = edges**2
    for b in range(P.shape[0]):
        x = P[b][M[b]]
        N = x.shape[0]
        dd = torch.zeros(R + 2, dtype=torch.float64, device=pts.device)
        for i in range(0, N, chunk):
            # ordered pairs: the diagonal block (i, i) in full, later blocks once and counted twice
            for other, factor in ((x[i : i + chunk], 1.0), (x[i + chunk :], 2.0)):
                if other.shape[0] == 0:
                    continue
                diff = x[i : i + chunk, None, :] - other[None, :, :]
                diff = diff - box_size * torch.round(diff / box_size)
                r2 = (diff * diff).sum(-1)
                # bucketize(right=True): 0 below edges[0], b + 1 inside bin b, R + 1 beyond the last edge
                hist = torch.bincount(torch.bucketize(r2.flatten(), edges2, right=True), minlength=R + 2)
                dd += factor * hist.double()
        dd = dd[1 : R + 1]
        if float(edges[0]) == 0.0:
            dd[0] -= N  # the N self-pairs (r = 0)
        if lam is None:
            if N < 2:
                continue
            rr = N * (N - 1) * vol / V
        else:
            rr = lam[b] ** 2 * V * vol
        out[b] = dd / rr
    return out.reshape(*batch, R)
