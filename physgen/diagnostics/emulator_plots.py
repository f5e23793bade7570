"""Figures of an emulator comparison, drawn from the metrics of :func:`physgen.diagnostics.emulator.compare_fields`
and :func:`~physgen.diagnostics.emulator_points.compare_point_sets` (so a report can redraw them from its metrics.json).

Each function returns a matplotlib Figure (Agg canvas, no pyplot state); :func:`field_figures` and
:func:`point_set_figures` return ``name -> PNG bytes`` for :class:`physgen.diagnostics.report.Report`.
"""

from __future__ import annotations

import numpy as np

from physgen.diagnostics.plots import _figure, to_png

__all__ = [
    "power_spectrum_plot",
    "field_statistics_plot",
    "minkowski_plot",
    "correlation_plot",
    "pair_correlation_plot",
    "bispectrum_plot",
    "field_figures",
    "point_set_figures",
]


def _band(ax, x, mean, err, label, color, *, step: bool = False) -> None:
    x, mean, err = np.asarray(x), np.asarray(mean), np.asarray(err)
    ax.plot(x, mean, color=color, label=label, drawstyle="steps-mid" if step else "default")
    ax.fill_between(x, mean - err, mean + err, color=color, alpha=0.3, step="mid" if step else None)


def power_spectrum_plot(metrics: dict, *, title: str = ""):
    """Mean P(k) of both sets with standard errors (top), their ratio with its error and ±3% (bottom)."""
    from matplotlib.ticker import NullFormatter

    fig = _figure(5.5, 5.5)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    k, pk = np.asarray(metrics["k"]), metrics["power_spectrum"]
    _band(top, k, pk["mean_sim"], pk["err_sim"], "simulator", "black")
    _band(top, k, pk["mean_emu"], pk["err_emu"], "emulator", "tab:blue")
    top.set(xscale="log", yscale="log", ylabel="P(k)", title=title or f"P(k): χ²/dof = {pk['chi2_dof']:.2f}")
    top.legend()
    ratio, err = np.asarray(pk["ratio"]), np.asarray(pk["ratio_err"])
    bottom.errorbar(k, ratio, err, fmt="o", ms=3, color="tab:blue")
    bottom.axhline(1, color="black", lw=0.8)
    bottom.axhspan(0.97, 1.03, color="gray", alpha=0.2, label="±3%")
    sel = np.asarray(metrics["in_range"], dtype=bool)
    if not sel.all():
        bottom.axvspan(k[sel].min(), k[sel].max(), color="tab:green", alpha=0.08, label="k range")
    bottom.set(xlabel="k [h/Mpc]", ylabel="emu / sim")
    bottom.xaxis.set_minor_formatter(NullFormatter())  # the log axis's minor labels overlap over one decade
    bottom.legend(fontsize=7)
    return fig


def field_statistics_plot(metrics: dict):
    """One-point PDF, peak counts and the per-bin P(k) variance ratio."""
    from matplotlib.ticker import NullFormatter

    fig = _figure(13, 3.8)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    pdf = metrics["pdf"]
    edges = np.asarray(pdf["edges"])
    c = 0.5 * (edges[1:] + edges[:-1])
    _band(ax1, c, pdf["mean_sim"], pdf["err_sim"], "simulator", "black", step=True)
    _band(ax1, c, pdf["mean_emu"], pdf["err_emu"], "emulator", "tab:blue", step=True)
    ax1.set(
        yscale="log", xlabel="pixel value", ylabel="density", title=f"one-point PDF: χ²/dof = {pdf['chi2_dof']:.2f}"
    )
    ax1.legend()
    pk = metrics["peaks"]
    t = np.asarray(pk["thresholds"])
    ax2.errorbar(t - 0.05, pk["mean_sim"], pk["err_sim"], fmt="o", color="black", label="simulator")
    ax2.errorbar(t + 0.05, pk["mean_emu"], pk["err_emu"], fmt="s", color="tab:blue", label="emulator")
    ax2.set(
        yscale="log",
        xlabel="ν (height / σ_sim)",
        ylabel="peaks per field above ν",
        title=f"peak counts: χ²/dof = {pk['chi2_dof']:.2f}",
    )
    ax2.legend()
    v = metrics["variance"]
    ax3.errorbar(metrics["k"], v["ratio"], v["err"], fmt="o", ms=3)
    ax3.axhline(1, color="black", lw=0.8)
    ax3.axhspan(0.85, 1.15, color="gray", alpha=0.2, label="±15%")
    pull = f" (RMS pull {v['rms_pull']:.2f})" if "rms_pull" in v else ""
    ax3.set(xscale="log", xlabel="k [h/Mpc]", ylabel="Var P_emu / Var P_sim", title=f"P(k) variance ratio{pull}")
    ax3.xaxis.set_minor_formatter(NullFormatter())  # the log axis's minor labels overlap over one decade
    ax3.legend()
    fig.tight_layout()
    return fig


def minkowski_plot(metrics: dict):
    """Area, perimeter and Euler characteristic vs threshold, both sets with standard errors."""
    fig = _figure(13, 3.8)
    mf = metrics["minkowski"]
    t = np.asarray(mf["thresholds"])
    for ax, key, unit in zip(fig.subplots(1, 3), ("area", "perimeter", "euler"), ("", " [1/len]", " [1/len²]")):
        m = mf[key]
        _band(ax, t, m["mean_sim"], m["err_sim"], "simulator", "black")
        _band(ax, t, m["mean_emu"], m["err_emu"], "emulator", "tab:blue")
        ax.set(xlabel="ν", ylabel=key + unit, title=f"{key}: χ²/dof = {m['chi2_dof']:.2f}")
    ax.legend()
    fig.tight_layout()
    return fig


def correlation_plot(metrics: dict):
    """The P(k) correlation matrices (over the k range) and their difference."""
    fig = _figure(12, 3.6)
    cor = metrics["correlation"]
    cs, ce = np.asarray(cor["sim"]), np.asarray(cor["emu"])
    for ax, mat, name in zip(fig.subplots(1, 3), (cs, ce, ce - cs), ("simulator", "emulator", "emulator - simulator")):
        im = ax.imshow(
            mat,
            vmin=-1 if name != "emulator - simulator" else -0.3,
            vmax=1 if name != "emulator - simulator" else 0.3,
            cmap="RdBu_r",
            origin="lower",
        )
        ax.set(title=name, xlabel="k bin", ylabel="k bin")
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(f"P(k) correlation: max |Δρ| off-diagonal = {cor['max_abs_offdiag_diff']:.3f}")
    return fig


def pair_correlation_plot(metrics: dict):
    """ĝ(r) of both sets (and the analytic g) with jackknife errors; the N distributions' summary in the title."""
    fig = _figure(5.5, 4)
    ax = fig.subplots()
    pc, counts = metrics["pair_correlation"], metrics["counts"]
    r = np.asarray(pc["sim"]["r"])
    ax.errorbar(r, pc["sim"]["g"], pc["sim"]["err"], fmt="o", color="black", ms=3, label="simulator")
    ax.errorbar(r, pc["emu"]["g"], pc["emu"]["err"], fmt="s", color="tab:blue", ms=3, label="emulator")
    if "g_true" in pc:
        ax.plot(r, pc["g_true"], color="tab:red", label=f"analytic (emu χ²/dof = {pc['emu_vs_true']['chi2_dof']:.2f})")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="r",
        ylabel="g(r)",
        title=f"N: KS p = {counts['p_value']:.3f}; mean {counts['mean_emu']:.1f} vs {counts['mean_sim']:.1f}",
    )
    ax.legend()
    return fig


def bispectrum_plot(bispectrum: dict):
    """Reduced bispectrum Q per triangle configuration (shells i ≤ j ≤ k, in |k| units of the first shell) of both
    sets with standard errors (top), the pulls of the difference (bottom); ``compare_fields(...)["bispectrum"]``."""
    fig = _figure(max(6.0, 0.18 * len(bispectrum["Q_sim"]) + 2), 5.0)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    x = np.arange(len(bispectrum["Q_sim"]))
    top.errorbar(x - 0.1, bispectrum["Q_sim"], bispectrum["err_sim"], fmt="o", ms=3, color="black", label="simulator")
    top.errorbar(x + 0.1, bispectrum["Q_emu"], bispectrum["err_emu"], fmt="s", ms=3, color="tab:blue", label="emulator")
    top.axhline(0, color="gray", lw=0.6)
    top.set(ylabel="Q", title=f"reduced bispectrum: χ²/dof = {bispectrum['chi2_dof']:.2f} ({bispectrum['covariance']})")
    top.legend(fontsize=8)
    bottom.bar(x, bispectrum["pulls"], color="tab:blue")
    bottom.axhspan(-2, 2, color="gray", alpha=0.2)
    k = np.asarray(bispectrum["k_triangles"]) / bispectrum["k"][0]
    bottom.set_xticks(x, [f"{a:.0f},{b:.0f},{c:.0f}" for a, b, c in k], rotation=90, fontsize=6)
    bottom.set(xlabel="triangle (k1, k2, k3) / k_shell1", ylabel="pull")
    fig.tight_layout()
    return fig


def field_figures(metrics: dict, *, prefix: str = "emulator") -> dict[str, bytes]:
    """``name -> PNG`` of every field figure, for ``Report(figures=...)``."""
    out = {
        f"{prefix}_power_spectrum": to_png(power_spectrum_plot(metrics)),
        f"{prefix}_field_statistics": to_png(field_statistics_plot(metrics)),
        f"{prefix}_minkowski": to_png(minkowski_plot(metrics)),
        f"{prefix}_pk_correlation": to_png(correlation_plot(metrics)),
    }
    if metrics.get("bispectrum"):
        out[f"{prefix}_bispectrum"] = to_png(bispectrum_plot(metrics["bispectrum"]))
    return out


def point_set_figures(metrics: dict, *, prefix: str = "emulator") -> dict[str, bytes]:
    """``name -> PNG`` of the point-set figure, for ``Report(figures=...)``."""
    return {f"{prefix}_pair_correlation": to_png(pair_correlation_plot(metrics))}
