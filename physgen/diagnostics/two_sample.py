"""Two-sample comparison of a statistic: the χ² of the difference of two sets' means in units of the
simulator's covariance of that difference (Hartlap-corrected), shared by the field and bispectrum comparisons.

Rows are ``(n, p)``: n realisations (fields, maps) of a p-bin statistic (P(k) bins, histogram bins, bispectrum
triangles), numpy or torch.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mean_difference_chi2", "chi2_summary"]


def _rows(a, what: str) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(f"{what} must be rows (n >= 2, p); got shape {a.shape}")
    return a


def _list(a) -> list:
    return np.asarray(a, dtype=np.float64).tolist()


def mean_difference_chi2(sim, emu, *, covariance: str = "full") -> dict:
    """χ² of mean(emu) - mean(sim) in units of the simulator's covariance of that difference (module docstring).

    Args:
        sim, emu: rows ``(n_sim, p)``, ``(n_emu, p)`` of a statistic (P(k) bins, histogram bins, counts).
        covariance: "full" (Hartlap-corrected inverse; needs n_sim > p + 2) or "diagonal" (bins with zero
            simulated variance are left out, and counted out of the dof).

    Returns:
        ``{"chi2", "dof", "chi2_dof", "p_value", "pulls" (p,), "covariance"}``; pulls = difference / its standard error.
    """
    s, e = _rows(sim, "sim"), _rows(emu, "emu")
    if s.shape[1] != e.shape[1]:
        raise ValueError(f"sim and emu have {s.shape[1]} and {e.shape[1]} columns; compute both on the same bins")
    n_s, p = s.shape
    diff = e.mean(0) - s.mean(0)
    factor = 1.0 / n_s + 1.0 / len(e)
    var = s.var(0, ddof=1) * factor
    ok = var > 0
    pulls = np.where(ok, diff / np.sqrt(np.where(ok, var, 1.0)), 0.0)
    if covariance == "full":
        if n_s <= p + 2:
            raise ValueError(
                f"a full covariance of {p} bins needs more than {p + 2} simulated rows; got {n_s} "
                "(simulate more, or covariance='diagonal')"
            )
        cov = np.cov(s, rowvar=False) * factor
        chi2 = float(diff @ np.linalg.solve(cov, diff)) * (n_s - p - 2) / (n_s - 1)
        dof = p
    elif covariance == "diagonal":
        chi2, dof = float((pulls[ok] ** 2).sum()), int(ok.sum())
    else:
        raise ValueError(f"covariance must be 'full' or 'diagonal'; got {covariance!r}")
    return {**chi2_summary(chi2, dof, pulls), "covariance": covariance}


def chi2_summary(chi2: float, dof: int, pulls) -> dict:
    """``{"chi2", "dof", "chi2_dof", "p_value", "pulls"}`` of a χ² with ``dof`` degrees of freedom (at least 1 in
    the ratio and the p-value) and its per-bin pulls ``(p,)``."""
    from scipy.stats import chi2 as chi2_dist

    return {
        "chi2": chi2,
        "dof": dof,
        "chi2_dof": chi2 / max(dof, 1),
        "p_value": float(chi2_dist.sf(chi2, max(dof, 1))),
        "pulls": _list(pulls),
    }
