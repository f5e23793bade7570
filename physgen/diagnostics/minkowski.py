r"""The three Minkowski functionals of the excursion sets of periodic 2D fields, and their Gaussian expectation.

For a field u on an n x n periodic grid of pixel size a and a threshold ν (in units of a reference σ
around a reference mean, ``u > mean + ν σ``), per unit area A = (n a)^2:

* **area** V0: the fraction of pixels above the threshold;
* **perimeter** L/A: the length of the level set u = threshold per unit area, by marching squares on the
  bilinear interpolant (straight segments between the edge crossings; a saddle cell is split by the value
  at its centre), periodic;
* **Euler characteristic** χ/A: vertices - edges + faces of the excursion set's cubical complex on the
  pixel centres (pixels above, pairs of 4-neighbours above, 2 x 2 blocks above), periodic.

Gaussian expectation (Tomita 1986; Adler 1981), u of variance σ0² and gradient variance
σ1² = ⟨|∇u|²⟩ (both components together), ν = threshold / σ0:

    V0 = erfc(ν / √2) / 2,     L/A = σ1 / (2√2 σ0) e^{-ν²/2},
    χ/A = σ1² / (2 σ0²) ν e^{-ν²/2} / (2π)^{3/2}.

The pixel estimators converge to these for fields resolved by the grid (a correlation length of a few
pixels); at the pixel scale they differ from the continuum values, so compare an emulator with the
simulator through the same estimator (:func:`physgen.diagnostics.emulator.compare_fields`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["minkowski_functionals", "gaussian_minkowski"]


def _fields(fields) -> np.ndarray:
    if hasattr(fields, "detach"):
        fields = fields.detach().cpu().numpy()
    f = np.asarray(fields, dtype=np.float64)
    if f.ndim == 4 and f.shape[1] == 1:
        f = f[:, 0]
    if f.ndim == 2:
        f = f[None]
    if f.ndim != 3 or f.shape[1] != f.shape[2] or f.shape[1] < 2:
        raise ValueError(f"fields must be square 2D fields (n, H, H), (n, 1, H, H) or one (H, H); got shape {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError("fields contain NaN or inf values; drop those fields before computing statistics")
    return f


def _corners(u: np.ndarray) -> tuple[np.ndarray, ...]:
    """Cell corners of periodic fields (n, H, H): top-left a, top-right b, bottom-right c, bottom-left d."""
    b, d = np.roll(u, -1, axis=2), np.roll(u, -1, axis=1)
    return u, b, np.roll(b, -1, axis=1), d


def _perimeter(corners: tuple[np.ndarray, ...], level: float) -> np.ndarray:
    """Level-set length in pixel units per field (marching squares on the crossed cells) -> (n,)."""
    above = [v > level for v in corners]
    sa, sb, sc, sd = above
    crossed_any = (sa != sb) | (sa != sd) | (sb != sc)
    cells = np.nonzero(crossed_any)
    a, b, c, d = (v[cells] for v in corners)
    sa, sb, sc, sd = (s[cells] for s in above)

    def cross(v1, v2):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (level - v1) / (v2 - v1)
        return np.clip(np.nan_to_num(t, nan=0.5), 0.0, 1.0)

    # crossing points (x, y) in the cell frame, x to the right, y down
    pts = {"T": (cross(a, b), 0.0), "R": (1.0, cross(b, c)), "B": (cross(d, c), 1.0), "L": (0.0, cross(a, d))}
    crossed = {"T": sa != sb, "R": sb != sc, "B": sd != sc, "L": sa != sd}

    def dist(e1, e2):
        (x1, y1), (x2, y2) = pts[e1], pts[e2]
        return np.hypot(x1 - x2, y1 - y2)

    count = sum(crossed[e].astype(np.int8) for e in "TRBL")
    two = count == 2
    length = np.zeros(a.shape)
    for e1, e2 in [("T", "R"), ("T", "B"), ("T", "L"), ("R", "B"), ("R", "L"), ("B", "L")]:
        both = two & crossed[e1] & crossed[e2]
        length[both] = dist(e1, e2)[both] if np.ndim(dist(e1, e2)) else dist(e1, e2)
    four = count == 4
    if four.any():
        centre_above = (a + b + c + d) / 4 > level
        joined = centre_above == sa  # a and c connected through the centre: cut off b (T, R) and d (B, L)
        saddle = np.where(joined, dist("T", "R") + dist("B", "L"), dist("T", "L") + dist("R", "B"))
        length[four] = saddle[four]
    return np.bincount(cells[0], weights=length, minlength=corners[0].shape[0])


def _euler(above: np.ndarray) -> np.ndarray:
    """V - E + F of the periodic cubical complex of the pixels above: (n, H, H) bool -> (n,)."""
    right, down = np.roll(above, -1, axis=2), np.roll(above, -1, axis=1)
    diag = np.roll(right, -1, axis=1)
    v = above.sum(axis=(1, 2))
    e = (above & right).sum(axis=(1, 2)) + (above & down).sum(axis=(1, 2))
    f = (above & right & down & diag).sum(axis=(1, 2))
    return (v - e + f).astype(np.float64)


def minkowski_functionals(
    fields, thresholds: Sequence[float], *, mean: float | None = None, std: float | None = None, pixel_size: float = 1.0
) -> dict[str, np.ndarray]:
    """Area fraction, perimeter and Euler characteristic per unit area of each field's excursion sets.

    Args:
        fields: ``(n, H, H)`` (or ``(n, 1, H, H)``) periodic fields, numpy or torch.
        thresholds: ν values ``(T,)``; the excursion set is ``u > mean + ν std``.
        mean, std: the reference mean and σ (default: of these fields, pooled). Pass the simulator's to
            compare an emulator with it on the same thresholds.
        pixel_size: the pixel side a (the box size / H), in the unit of the perimeter and area.

    Returns:
        ``{"thresholds": (T,), "area": (n, T), "perimeter": (n, T), "euler": (n, T)}``; perimeter in
        1/unit, Euler characteristic in 1/unit².
    """
    f = _fields(fields)
    nu = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    mean = float(f.mean()) if mean is None else float(mean)
    std = float(f.std()) if std is None else float(std)
    if not (std > 0 and math.isfinite(std)) or pixel_size <= 0:
        raise ValueError(f"std and pixel_size must be positive; got std={std}, pixel_size={pixel_size}")
    n, h = f.shape[0], f.shape[1]
    area_px = h * h
    out = {
        "thresholds": nu,
        "area": np.empty((n, nu.size)),
        "perimeter": np.empty((n, nu.size)),
        "euler": np.empty((n, nu.size)),
    }
    corners = _corners(f)
    for i, v in enumerate(nu):
        level = mean + v * std
        above = f > level
        out["area"][:, i] = above.sum(axis=(1, 2)) / area_px
        out["perimeter"][:, i] = _perimeter(corners, level) / (area_px * pixel_size)
        out["euler"][:, i] = _euler(above) / (area_px * pixel_size**2)
    return out


def gaussian_minkowski(thresholds: Sequence[float], sigma0: float, sigma1: float) -> dict[str, np.ndarray]:
    """The Gaussian-field expectation of :func:`minkowski_functionals` (module docstring).

    Args:
        thresholds: ν ``(T,)`` in units of σ0.
        sigma0: the field's standard deviation; sigma1: the root mean square of |∇u| (per unit length).

    Returns:
        ``{"thresholds", "area", "perimeter", "euler"}``, each ``(T,)``.
    """
    nu = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    from scipy.special import erfc

    g = np.exp(-0.5 * nu**2)
    return {
        "thresholds": nu,
        "area": 0.5 * erfc(nu / math.sqrt(2.0)),
        "perimeter": sigma1 / (2.0 * math.sqrt(2.0) * sigma0) * g,
        "euler": sigma1**2 / (2.0 * sigma0**2) * nu * g / (2.0 * math.pi) ** 1.5,
    }
