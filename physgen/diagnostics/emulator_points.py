r"""Is an emulator of point sets statistically faithful to its simulator? Pair correlation and counts.

Every comparison takes a set of simulated and a set of emulated point sets at the same θ (numpy or torch),
padded ``(n, N_max, d + 1)`` with the mask last, in a periodic box of side ``box_size``, and returns JSON-ready
numbers (lists and floats); :func:`physgen.diagnostics.emulator_plots.point_set_figures` draws them. The field
statistics are in :mod:`physgen.diagnostics.emulator`.

* :func:`pair_correlation`: the pooled natural estimator ĝ(r) = Σ DD / Σ RR over sets (periodic minimum image),
  with analytic RR and jackknife errors over sets.
* :func:`pair_correlation_chi2`: diagonal χ² against an analytic g(r) or another estimate.
* :func:`count_ks_test`: two-sample KS test of the counts N.
* :func:`compare_point_sets`: all of the above.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from physgen.diagnostics.two_sample import _list, chi2_summary

__all__ = ["pair_correlation", "pair_correlation_chi2", "count_ks_test", "compare_point_sets"]


def _point_sets(points, what: str) -> list[np.ndarray]:
    if hasattr(points, "detach"):
        points = points.detach().cpu().numpy()
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 3 or p.shape[-1] < 2:
        raise ValueError(f"{what} must be padded point sets (n, N_max, d + 1) with the mask last; got shape {p.shape}")
    return [s[s[:, -1] > 0.5, :-1] for s in p]


def pair_correlation(points, box_size: float, r_bins: Sequence[float], *, intensity: float | None = None) -> dict:
    """Pooled pair correlation ĝ(r) = Σ DD / Σ RR over sets, periodic minimum image, with jackknife errors.

    Args:
        points: padded sets ``(n, N_max, d + 1)``.
        box_size: the box side L; r_bins ``(R + 1,)`` increasing, last <= L/2.
        intensity: a known λ: RR = λ² V V_b per set (unbiased) instead of N (N - 1) V_b / V (biased by the
            integral constraint when N varies).

    Returns: ``{"r" (R,) bin centres, "g" (R,), "err" (R,)}``.
    """
    sets = _point_sets(points, "points")
    edges = np.asarray(r_bins, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or (np.diff(edges) <= 0).any() or edges[0] < 0 or edges[-1] > box_size / 2:
        raise ValueError("r_bins must be increasing separations in [0, box_size/2]")
    d = sets[0].shape[1]
    vol = box_size**d
    shell = (math.pi * np.diff(edges**2)) if d == 2 else (4 * math.pi / 3 * np.diff(edges**3))
    dd, rr = np.zeros((len(sets), edges.size - 1)), np.zeros((len(sets), edges.size - 1))
    for i, x in enumerate(sets):
        m = len(x)
        if m >= 2:
            diff = x[:, None, :] - x[None, :, :]
            diff -= box_size * np.round(diff / box_size)
            r = np.sqrt((diff**2).sum(-1))[~np.eye(m, dtype=bool)]
            dd[i] = np.histogram(r, edges)[0]
        rr[i] = (intensity**2 * vol if intensity is not None else m * (m - 1) / vol) * shell
    DD, RR = dd.sum(0), rr.sum(0)
    g = DD / RR
    n = len(sets)
    jack = (DD - dd) / (RR - rr) if n > 1 else np.zeros_like(dd)
    err = np.sqrt((n - 1) / n * ((jack - jack.mean(0)) ** 2).sum(0)) if n > 1 else np.full(g.shape, np.nan)
    return {"r": _list(0.5 * (edges[1:] + edges[:-1])), "g": _list(g), "err": _list(err)}


def pair_correlation_chi2(
    estimate: dict, reference: dict | Callable[[np.ndarray], np.ndarray] | Sequence[float] | np.ndarray
) -> dict:
    """Diagonal χ²/dof of a :func:`pair_correlation` estimate against an analytic g(r) (a callable of r or its
    values at the bin centres) or against another estimate (both errors added).

    Returns: ``{"chi2", "dof", "chi2_dof", "p_value", "pulls"}``.
    """

    g, err, r = np.asarray(estimate["g"]), np.asarray(estimate["err"]), np.asarray(estimate["r"])
    if isinstance(reference, dict):
        ref, err = np.asarray(reference["g"]), np.sqrt(err**2 + np.asarray(reference["err"]) ** 2)
    else:
        ref = np.asarray(reference(r) if callable(reference) else reference, dtype=np.float64).reshape(-1)
    if ref.shape != g.shape:
        raise ValueError(f"the reference g has {ref.size} values for {g.size} r bins")
    ok = err > 0
    pulls = np.where(ok, (g - ref) / np.where(ok, err, 1.0), 0.0)
    return chi2_summary(float((pulls[ok] ** 2).sum()), int(ok.sum()), pulls)


def count_ks_test(sim, emu) -> dict:
    """Two-sample Kolmogorov-Smirnov test of the point counts N of two padded set batches (conservative for
    integer counts). Returns ``{"statistic", "p_value", "mean_sim", "mean_emu", "std_sim", "std_emu"}``."""
    from scipy.stats import ks_2samp

    ns = np.array([len(x) for x in _point_sets(sim, "sim")], dtype=np.float64)
    ne = np.array([len(x) for x in _point_sets(emu, "emu")], dtype=np.float64)
    res = ks_2samp(ns, ne)
    return {
        "statistic": float(res.statistic),
        "p_value": float(res.pvalue),
        "mean_sim": float(ns.mean()),
        "mean_emu": float(ne.mean()),
        "std_sim": float(ns.std(ddof=1)),
        "std_emu": float(ne.std(ddof=1)),
    }


def compare_point_sets(
    simulated,
    emulated,
    *,
    box_size: float,
    r_bins: Sequence[float],
    g_true: Callable[[np.ndarray], np.ndarray] | Sequence[float] | None = None,
    intensity: float | None = None,
) -> dict:
    """Pair correlation and counts of emulated against simulated point sets at one θ.

    Args:
        simulated, emulated: padded sets ``(n, N_max, d + 1)`` (N_max may differ).
        box_size, r_bins, intensity: as in :func:`pair_correlation`.
        g_true: the analytic g(r) (callable of r, or values at the bin centres), when known.

    Returns: ``{"pair_correlation": {"sim", "emu", "emu_vs_sim" [, "sim_vs_true", "emu_vs_true", "g_true"]},
    "counts": count_ks_test}``.
    """
    gs = pair_correlation(simulated, box_size, r_bins, intensity=intensity)
    ge = pair_correlation(emulated, box_size, r_bins, intensity=intensity)
    pc: dict = {"sim": gs, "emu": ge, "emu_vs_sim": pair_correlation_chi2(ge, gs)}
    if g_true is not None:
        r = np.asarray(gs["r"])
        ref = np.asarray(g_true(r) if callable(g_true) else g_true, dtype=np.float64).reshape(-1)
        pc.update(
            g_true=_list(ref), sim_vs_true=pair_correlation_chi2(gs, ref), emu_vs_true=pair_correlation_chi2(ge, ref)
        )
    return {"pair_correlation": pc, "counts": count_ks_test(simulated, emulated)}
