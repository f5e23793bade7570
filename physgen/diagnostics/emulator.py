r"""Is an emulator statistically faithful to its simulator? Field and point-set statistics, in units of the
simulator's own scatter.

Every comparison takes a set of simulated and a set of emulated outputs at the same θ (numpy or torch) and
returns JSON-ready numbers (lists and floats); :mod:`physgen.diagnostics.emulator_plots` draws them.

Fields ``(n, H, H)`` in a periodic box of side ``box_size``:

* :func:`power_spectra`: P̂(k) = V |δ_k|² / N_c² per field, in bins of width k_f from k_f/2 (k = 0 left out).
* :func:`power_spectrum_ratio`: mean P_emu / mean P_sim per bin with its standard error.
* :func:`mean_difference_chi2`: χ² of the difference of the means in units of the simulator's covariance of
  the difference, Ĉ_sim (1/n_sim + 1/n_emu), the inverse with Hartlap's factor (n_sim - p - 2)/(n_sim - 1),
  so E[χ²] = p for sets of one distribution; ``covariance="diagonal"`` uses the variances only (for
  histograms and counts, whose bins may be degenerate).
* :func:`variance_ratio`: Var_emu / Var_sim per bin, error from the kurtosis (Var s² = σ⁴ (2/(n - 1) + κ_ex / n)).
* :func:`correlation_comparison`: the P(k) correlation matrices and their largest off-diagonal difference.
* :func:`one_point_pdf`: per-field histograms on quantile bins of the simulated pixels; mean and error from
  the field-to-field scatter (pixels of one field are correlated), diagonal χ².
* :func:`peak_counts`: local maxima (8 periodic neighbours) above ν σ_sim (σ and mean of the simulated
  pixels for both sets, so an amplitude change shows), per field; diagonal χ².
* :func:`minkowski_comparison`: area, perimeter, Euler characteristic vs threshold, diagonal χ² each.
* :func:`compare_fields`: all of the above, and the reduced bispectrum Q up to k_Nyquist / 4
  (:func:`physgen.diagnostics.bispectrum.compare_bispectra`; ``bispectrum=False`` leaves it out).

Point sets: :mod:`physgen.diagnostics.emulator_points`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from physgen.diagnostics.minkowski import _fields, minkowski_functionals
from physgen.diagnostics.two_sample import _list, _rows, mean_difference_chi2

__all__ = [
    "power_spectra",
    "power_spectrum_ratio",
    "mean_difference_chi2",
    "variance_ratio",
    "correlation_comparison",
    "one_point_pdf",
    "peak_counts",
    "minkowski_comparison",
    "compare_fields",
]


def power_spectra(fields, box_size: float, *, bins: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binned power spectra of periodic 2D fields.

    Args:
        fields: ``(n, H, H)`` (or ``(n, 1, H, H)``).
        box_size: the box side L (Mpc/h); k in h/Mpc, P in (Mpc/h)².
        bins: None (H // 2 bins of width k_f = 2π/L from k_f/2), or that many linear bins over the same range.

    Returns:
        k ``(nb,)`` (mode-averaged |k|), P ``(n, nb)``, modes per bin ``(nb,)``.
    """
    f = _fields(fields)
    h = f.shape[1]
    if not box_size > 0:
        raise ValueError(f"box_size must be positive; got {box_size}")
    kf = 2 * math.pi / box_size
    kx = kf * np.fft.fftfreq(h, 1.0 / h)
    ky = kf * np.fft.rfftfreq(h, 1.0 / h)
    kmag = np.sqrt(kx[:, None] ** 2 + ky[None, :] ** 2)
    weight = np.full(ky.size, 2.0)
    weight[0] = 1.0
    if h % 2 == 0:
        weight[-1] = 1.0
    weight = np.broadcast_to(weight, kmag.shape)
    nb = h // 2 if bins is None else int(bins)
    edges = np.linspace(0.5 * kf, (h // 2 + 0.5) * kf, nb + 1)
    idx = np.digitize(kmag, edges) - 1
    ok = (idx >= 0) & (idx < nb) & (kmag > 0)
    onehot = np.zeros((kmag.size, nb))
    onehot[np.flatnonzero(ok), idx[ok]] = weight[ok]
    modes = onehot.sum(0)
    if (modes == 0).any():
        raise ValueError(f"{int((modes == 0).sum())} of the {nb} k bins hold no grid mode; use fewer bins")
    dk = np.fft.rfft2(f)
    p = (dk.real**2 + dk.imag**2) * (box_size**2 / h**4)
    P = p.reshape(len(f), -1) @ onehot / modes
    k = (kmag.reshape(-1) @ onehot) / modes
    return k, P, modes


def power_spectrum_ratio(sim, emu) -> dict:
    """mean P_emu / mean P_sim per bin and its standard error (both sets' scatter): rows ``(n, nb)`` each."""
    s, e = _rows(sim, "sim"), _rows(emu, "emu")
    ms, me = s.mean(0), e.mean(0)
    ratio = me / ms
    err = np.abs(ratio) * np.sqrt(s.var(0, ddof=1) / (len(s) * ms**2) + e.var(0, ddof=1) / (len(e) * me**2))
    return {
        "mean_sim": _list(ms),
        "mean_emu": _list(me),
        "err_sim": _list(s.std(0, ddof=1) / math.sqrt(len(s))),
        "err_emu": _list(e.std(0, ddof=1) / math.sqrt(len(e))),
        "ratio": _list(ratio),
        "ratio_err": _list(err),
    }


def variance_ratio(sim, emu) -> dict:
    """Var_emu / Var_sim per column with its standard error (module docstring): rows ``(n, p)`` each."""
    s, e = _rows(sim, "sim"), _rows(emu, "emu")

    def rel_var(a):  # relative variance of the sample variance
        n = len(a)
        c = a - a.mean(0)
        m2 = (c**2).mean(0)
        kurt = np.where(m2 > 0, (c**4).mean(0) / np.where(m2 > 0, m2, 1) ** 2 - 3.0, 0.0)
        return 2.0 / (n - 1) + np.maximum(kurt, -2.0) / n

    ratio = e.var(0, ddof=1) / s.var(0, ddof=1)
    err = ratio * np.sqrt(np.maximum(rel_var(s) + rel_var(e), 0.0))
    return {"ratio": _list(ratio), "err": _list(err)}


def correlation_comparison(sim, emu) -> dict:
    """Correlation matrices of the columns of sim and emu ``(n, p)``; off-diagonal differences.

    Returns: ``{"sim", "emu"}`` (p x p lists), ``max_abs_offdiag_diff``, ``mean_abs_offdiag_diff`` and
    ``typical_err``, the median standard error (1 - ρ²)/√n of the difference of two estimates, and ``rms_pull``,
    the root-mean-square of difference / its error (about 1 when the two agree within what n rows resolve).
    """
    s, e = _rows(sim, "sim"), _rows(emu, "emu")
    cs, ce = np.corrcoef(s, rowvar=False), np.corrcoef(e, rowvar=False)
    off = ~np.eye(len(cs), dtype=bool)
    d = np.abs(ce - cs)[off]
    err = (1 - cs[off] ** 2) * np.sqrt(1.0 / len(s) + 1.0 / len(e))
    return {
        "sim": cs.tolist(),
        "emu": ce.tolist(),
        "max_abs_offdiag_diff": float(d.max()) if d.size else 0.0,
        "mean_abs_offdiag_diff": float(d.mean()) if d.size else 0.0,
        "typical_err": float(np.median(err)) if err.size else 0.0,
        "rms_pull": float(np.sqrt(np.mean((d / np.maximum(err, 1e-12)) ** 2))) if d.size else 0.0,
    }


def one_point_pdf(sim, emu, *, bins: int = 20, tail: float = 0.005) -> dict:
    """One-point PDF of the pixel values: per-field histograms on the simulated pixels' quantiles.

    Args:
        sim, emu: fields ``(n, H, H)``.
        bins: histogram bins between the ``tail`` and ``1 - tail`` quantiles of the simulated pixels.

    Returns:
        ``{"edges" (bins+1,), "mean_sim", "err_sim", "mean_emu", "err_emu" (bins,)}`` (densities) and the
        diagonal χ² of :func:`mean_difference_chi2`.
    """
    s, e = _fields(sim), _fields(emu)
    edges = np.quantile(s, np.linspace(tail, 1 - tail, bins + 1))
    edges = np.unique(edges)
    if edges.size < 3:
        raise ValueError("the simulated pixels take fewer than 3 distinct values; no PDF to compare")
    width = np.diff(edges)

    def hist(f):
        idx = np.searchsorted(edges, f.reshape(len(f), -1), side="right") - 1
        ok = (idx >= 0) & (idx < width.size)
        rows = np.broadcast_to(np.arange(len(f))[:, None], idx.shape)
        counts = np.bincount(rows[ok] * width.size + idx[ok], minlength=len(f) * width.size)
        return counts.reshape(len(f), width.size) / (f[0].size * width)

    hs, he = hist(s), hist(e)
    return {
        "edges": _list(edges),
        "mean_sim": _list(hs.mean(0)),
        "err_sim": _list(hs.std(0, ddof=1) / math.sqrt(len(hs))),
        "mean_emu": _list(he.mean(0)),
        "err_emu": _list(he.std(0, ddof=1) / math.sqrt(len(he))),
        **mean_difference_chi2(hs, he, covariance="diagonal"),
    }


def _peaks_above(f: np.ndarray, mean: float, std: float, thresholds: np.ndarray) -> np.ndarray:
    peak = np.ones(f.shape, dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dx or dy:
                peak &= f > np.roll(f, (dy, dx), axis=(1, 2))
    heights = (f - mean) / std
    return np.stack([(peak & (heights > t)).sum(axis=(1, 2)) for t in thresholds], axis=1).astype(np.float64)


def peak_counts(sim, emu, *, thresholds: Sequence[float] = (-1.0, 0.0, 1.0, 2.0, 3.0)) -> dict:
    """Local maxima per field above ν σ (σ, mean of the simulated pixels for both sets).

    Returns: ``{"thresholds", "mean_sim", "err_sim", "mean_emu", "err_emu"}`` (peaks per field) and the
    diagonal χ² of :func:`mean_difference_chi2`.
    """
    s, e = _fields(sim), _fields(emu)
    nu = np.asarray(thresholds, dtype=np.float64)
    mean, std = float(s.mean()), float(s.std())
    cs, ce = _peaks_above(s, mean, std, nu), _peaks_above(e, mean, std, nu)
    return {
        "thresholds": _list(nu),
        "mean_sim": _list(cs.mean(0)),
        "err_sim": _list(cs.std(0, ddof=1) / math.sqrt(len(cs))),
        "mean_emu": _list(ce.mean(0)),
        "err_emu": _list(ce.std(0, ddof=1) / math.sqrt(len(ce))),
        **mean_difference_chi2(cs, ce, covariance="diagonal"),
    }


def minkowski_comparison(
    sim, emu, *, box_size: float, thresholds: Sequence[float] = tuple(np.linspace(-2.5, 2.5, 11))
) -> dict:
    """Minkowski functionals of both sets on thresholds ν σ_sim around the simulated mean.

    Returns: ``{"thresholds", "area" | "perimeter" | "euler": {"mean_sim", "err_sim", "mean_emu", "err_emu",
    + the diagonal χ²}}``.
    """
    s, e = _fields(sim), _fields(emu)
    mean, std, a = float(s.mean()), float(s.std()), box_size / s.shape[1]
    ms = minkowski_functionals(s, thresholds, mean=mean, std=std, pixel_size=a)
    me = minkowski_functionals(e, thresholds, mean=mean, std=std, pixel_size=a)
    out: dict = {"thresholds": _list(ms["thresholds"])}
    for key in ("area", "perimeter", "euler"):
        rs, re = ms[key], me[key]
        out[key] = {
            "mean_sim": _list(rs.mean(0)),
            "err_sim": _list(rs.std(0, ddof=1) / math.sqrt(len(rs))),
            "mean_emu": _list(re.mean(0)),
            "err_emu": _list(re.std(0, ddof=1) / math.sqrt(len(re))),
            **mean_difference_chi2(rs, re, covariance="diagonal"),
        }
    return out


def compare_fields(
    simulated,
    emulated,
    *,
    box_size: float,
    bins: int | None = None,
    k_range: tuple[float | None, float | None] | None = None,
    pdf_bins: int = 20,
    peak_thresholds: Sequence[float] = (-1.0, 0.0, 1.0, 2.0, 3.0),
    mf_thresholds: Sequence[float] = tuple(np.linspace(-2.5, 2.5, 11)),
    bispectrum: bool = True,
) -> dict:
    """Every field statistic of emulated against simulated fields at one θ.

    Args:
        simulated, emulated: fields ``(n_sim, H, H)``, ``(n_emu, H, H)`` (same H).
        box_size: the box side (Mpc/h).
        bins: P(k) bins (:func:`power_spectra`).
        k_range: (k_min, k_max) of the P(k) summaries (None ends: no bound); e.g. (0.05, k_Nyquist / 2).

    Returns:
        JSON-ready ``{"n_sim", "n_emu", "k", "in_range", "power_spectrum" (ratio, errors, χ² over the range: full
        covariance when n_sim > bins + 2, ``max_abs_ratio_dev``, ``median_abs_ratio_dev``), "variance" (ratio, err,
        ``max_abs_dev``, ``median_err`` and ``rms_pull`` = RMS of |ratio - 1| / err over the range),
        "correlation", "pdf", "peaks", "minkowski", "bispectrum"}``; "bispectrum" (Q per triangle of shells of
        width k_f up to k_Nyquist/4, χ² full when n_sim > T + 2) is None for ``bispectrum=False`` or H < 16.
    """
    s, e = _fields(simulated), _fields(emulated)
    if s.shape[1:] != e.shape[1:]:
        raise ValueError(f"simulated fields are {s.shape[1:]}, emulated {e.shape[1:]}; compare fields of one size")
    k, Ps, _ = power_spectra(s, box_size, bins=bins)
    _, Pe, _ = power_spectra(e, box_size, bins=bins)
    lo, hi = k_range if k_range is not None else (None, None)
    sel = np.ones(k.size, dtype=bool)
    if lo is not None:
        sel &= k > lo
    if hi is not None:
        sel &= k < hi
    if not sel.any():
        raise ValueError(f"no k bin lies in k_range={k_range}; the bins span {k[0]:.3g} to {k[-1]:.3g} h/Mpc")
    pk = power_spectrum_ratio(Ps, Pe)
    dev = np.abs(np.asarray(pk["ratio"]) - 1)[sel]
    chi = mean_difference_chi2(Ps[:, sel], Pe[:, sel], covariance="full" if len(s) > sel.sum() + 2 else "diagonal")
    var = variance_ratio(Ps, Pe)
    vdev = np.abs(np.asarray(var["ratio"]) - 1)[sel]
    vpull = vdev / np.maximum(np.asarray(var["err"])[sel], 1e-12)
    return {
        "n_sim": len(s),
        "n_emu": len(e),
        "k": _list(k),
        "in_range": sel.tolist(),
        "power_spectrum": {
            **pk,
            **chi,
            "max_abs_ratio_dev": float(dev.max()),
            "median_abs_ratio_dev": float(np.median(dev)),
        },
        "variance": {
            **var,
            "max_abs_dev": float(vdev.max()),
            "median_err": float(np.median(np.asarray(var["err"])[sel])),
            "rms_pull": float(np.sqrt(np.mean(vpull**2))),
        },
        "correlation": correlation_comparison(Ps[:, sel], Pe[:, sel]),
        "pdf": one_point_pdf(s, e, bins=pdf_bins),
        "peaks": peak_counts(s, e, thresholds=peak_thresholds),
        "minkowski": minkowski_comparison(s, e, box_size=box_size, thresholds=mf_thresholds),
        "bispectrum": _bispectrum(s, e, box_size) if bispectrum and s.shape[1] >= 16 else None,
    }


def _bispectrum(s: np.ndarray, e: np.ndarray, box_size: float) -> dict:
    from physgen.diagnostics.bispectrum import compare_bispectra

    return compare_bispectra(s, e, box_size=box_size, dim=2, covariance="auto")
