"""Validation figures: posterior vs reference, SBC ranks, expected coverage, TARP, training curves.

Every function builds a :class:`matplotlib.figure.Figure` through the object-oriented API with an Agg
canvas attached, so nothing here touches pyplot's global state or the process-wide backend;
:func:`to_png` turns a figure into PNG bytes (what :class:`physgen.diagnostics.report.Report` embeds).

The SBC panel plots the ECDF of the normalised ranks minus the uniform CDF (Säilynoja, Bürkner & Vehtari
2022), with a simultaneous 95% band of constant width: the 95% quantile of the largest deviation over the
rank grid among Monte Carlo replicas of uniform ranks (fixed seed, so the band is deterministic), i.e. the
curves of a calibrated posterior stay inside the band at every rank at once with probability 0.95 (per
parameter).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "to_png",
    "pair_plot",
    "sbc_rank_plot",
    "coverage_plot",
    "tarp_plot",
    "training_plot",
    "sbc_band",
]

_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]


def _figure(width: float, height: float):
    """A Figure with an Agg canvas (no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _np(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=float)


def to_png(fig, *, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (``fig`` from any function of this module)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def pair_plot(
    samples: Mapping[str, Any],
    names: Sequence[str] | None = None,
    *,
    truth: Any = None,
    title: str = "",
    unit: str = "",
):
    """Corner plot of several sample sets: marginal histograms on the diagonal, scatter below.

    Args:
        samples: ``{label: (n, D)}`` (Tensor or array); the axes zoom on the last set (pass the reference last).
        names: the D parameter names (default theta_0, ...).
        truth: the true θ ``(D,)`` when known (a black line / cross).
        title: the figure title.
        unit: the parameters' unit, appended to the axis labels (e.g. ``"[Mpc]"``); empty: none.

    Returns:
        a matplotlib Figure.
    """
    sets = {k: _np(v) for k, v in samples.items()}
    if not sets:
        raise ValueError("pair_plot: give at least one sample set")
    d = next(iter(sets.values())).shape[-1]
    names = list(names or [f"theta_{i}" for i in range(d)])
    fig = _figure(2.4 * d + 1.2, 2.4 * d + 1.0)
    axes = np.asarray(fig.subplots(d, d, squeeze=False))
    ref = list(sets.values())[-1]
    lo, hi = np.quantile(ref, 0.001, axis=0), np.quantile(ref, 0.999, axis=0)
    pad = 0.15 * np.maximum(hi - lo, 1e-12)
    lo, hi = lo - pad, hi + pad
    for rank, ((label, s), color) in enumerate(zip(sets.items(), _COLORS * 4)):
        for i in range(d):
            for j in range(d):
                ax = axes[i, j]
                if j > i:
                    ax.axis("off")
                elif i == j:
                    ax.hist(
                        s[:, i],
                        bins=np.linspace(lo[i], hi[i], 51),
                        histtype="step",
                        density=True,
                        color=color,
                        label=label,
                    )
                else:
                    ax.scatter(
                        s[:, j], s[:, i], s=1, alpha=0.2, color=color, rasterized=True, zorder=len(sets) - rank
                    )  # the first set (the posterior) on top
    suffix = f" {unit}" if unit else ""
    for i in range(d):
        for j in range(i + 1):
            axes[i, j].set_xlim(lo[j], hi[j])
            if j < i:
                axes[i, j].set_ylim(lo[i], hi[i])
        axes[i, i].set_ylabel("density" if i == 0 else "")
        axes[d - 1, i].set_xlabel(names[i] + suffix)
        if i > 0:
            axes[i, 0].set_ylabel(names[i] + suffix)
    if truth is not None:
        t = _np(truth).reshape(-1)
        for i in range(d):
            axes[i, i].axvline(t[i], color="k", lw=0.8, label="true θ" if i == 0 else None)
            for j in range(i):
                axes[i, j].plot(t[j], t[i], "k+", ms=10)
    axes[0, 0].legend(loc="upper left", fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _rank_grid(num_posterior_samples: int, grid: int) -> np.ndarray:
    """Rank values j (0..L-1) at whose upper edge z = (j + 1) / (L + 1) the ECDF is evaluated (at most ``grid``)."""
    L = int(num_posterior_samples)
    return np.unique(np.linspace(0, L - 1, min(grid, L)).round().astype(int)) if L > 0 else np.zeros(1, int)


def sbc_band(
    num_ranks: int,
    num_posterior_samples: int,
    *,
    grid: int = 200,
    level: float = 0.95,
    replicas: int = 2000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Simultaneous band of the ECDF difference of uniform SBC ranks (Säilynoja, Bürkner & Vehtari 2022).

    The ECDF of N ranks r in 0..L is evaluated at z_j = (j + 1) / (L + 1), where a uniform rank has CDF z_j
    and the ECDF has standard deviation s_j = sqrt(z_j (1 - z_j) / N). The band is ``± c s_j``: narrow near
    the ends, where the ECDF cannot stray, widest in the middle; c is the ``level`` quantile of
    ``max_j |ECDF(z_j) - z_j| / s_j`` over Monte Carlo replicas of N uniform ranks.

    Args:
        num_ranks: N, the number of test pairs (ranks per parameter).
        num_posterior_samples: L; a rank takes the values 0..L.
        grid: at most this many points z_j.
        level: the simultaneous coverage of the band.
        replicas: Monte Carlo replicas of N uniform ranks.
        seed: the replicas' seed.

    Returns:
        (z ``(G,)``, half-width ``(G,)``): under uniform ranks, ``|ECDF(z_j) - z_j| <= half_j`` for every j at
        once with probability ``level``.
    """
    L, n = int(num_posterior_samples), int(num_ranks)
    js = _rank_grid(L, grid)
    z = (js + 1) / (L + 1)
    sd = np.sqrt(np.maximum(z * (1.0 - z), 0.0) / n)
    scale = np.where(sd > 0, sd, np.inf)  # z = 1: the ECDF is exactly 1 there
    rng = np.random.default_rng(seed)
    r = rng.integers(0, L + 1, size=(replicas, n))
    counts = np.bincount((r + (L + 1) * np.arange(replicas)[:, None]).ravel(), minlength=replicas * (L + 1))
    ecdf = np.cumsum(counts.reshape(replicas, L + 1), axis=1)[:, js] / n
    dev = (np.abs(ecdf - z) / scale).max(axis=1)
    return z, float(np.quantile(dev, level)) * sd


def sbc_rank_plot(ranks: Any, num_posterior_samples: int, names: Sequence[str] | None = None, *, level: float = 0.95):
    """ECDF of the normalised SBC ranks minus the uniform CDF, one line per parameter, with the simultaneous band.

    Args:
        ranks: ``(N, D)`` integer ranks in 0..L of the true θ among L posterior draws.
        num_posterior_samples: L.
        names: the D parameter names.
        level: the band's simultaneous coverage.

    Returns:
        a matplotlib Figure.
    """
    r = _np(ranks)
    if r.ndim != 2:
        raise ValueError(f"sbc_rank_plot: ranks must be (N, D); got shape {r.shape}")
    n, d = r.shape
    names = list(names or [f"theta_{i}" for i in range(d)])
    z, half = sbc_band(n, num_posterior_samples, level=level)
    js = _rank_grid(num_posterior_samples, 200)
    fig = _figure(6.0, 4.0)
    ax = fig.add_subplot()
    ax.fill_between(z, -half, half, color="0.85", label=f"{level:.0%} simultaneous band (uniform ranks)")
    for k in range(d):
        ecdf = np.searchsorted(np.sort(r[:, k]), js, side="right") / n  # share of ranks <= j
        ax.plot(z, ecdf - z, color=_COLORS[k % len(_COLORS)], lw=1.4, label=names[k])
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set_xlabel("normalised rank of the true θ among posterior draws")
    ax.set_ylabel("ECDF − uniform CDF")
    ax.set_title(f"SBC ranks ({n} test pairs × {num_posterior_samples} draws)")
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def coverage_plot(levels: Any, coverage: Any, lower: Any = None, upper: Any = None):
    """Expected coverage of the highest-posterior-density regions against their credibility level.

    Args:
        levels: ``(M,)`` credibility levels in [0, 1].
        coverage: ``(M,)`` the fraction of test θ inside the region of that level.
        lower, upper: ``(M,)`` the band of the coverage (e.g. a binomial 95% interval); None: no band.

    Returns:
        a matplotlib Figure; a calibrated posterior follows the diagonal, an over-confident one lies below it.
    """
    lv, cv = _np(levels), _np(coverage)
    fig = _figure(4.6, 4.4)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls="--", label="calibrated")
    if lower is not None and upper is not None:
        ax.fill_between(lv, _np(lower), _np(upper), color="tab:blue", alpha=0.2, label="95% band")
    ax.plot(lv, cv, color="tab:blue", lw=1.6, label="posterior")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("credibility level 1 − α")
    ax.set_ylabel("empirical coverage")
    ax.set_title("Expected coverage (HPD regions)")
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    fig.tight_layout()
    return fig


def tarp_plot(alpha: Any, ecp: Any, atc: float | None = None, ks_pvalue: float | None = None):
    """TARP: expected coverage probability of random-reference balls against the credibility level.

    Args:
        alpha: ``(M,)`` credibility levels in [0, 1].
        ecp: ``(M,)`` the expected coverage probability at each level.
        atc, ks_pvalue: the area to the curve and the KS p-value, shown in the title when given.

    Returns:
        a matplotlib Figure.
    """
    a, e = _np(alpha), _np(ecp)
    fig = _figure(4.6, 4.4)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls="--", label="calibrated")
    ax.plot(a, e, color="tab:orange", lw=1.6, label="posterior")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("credibility level 1 − α")
    ax.set_ylabel("expected coverage probability")
    extra = []
    if atc is not None:
        extra.append(f"ATC {atc:.3f}")
    if ks_pvalue is not None:
        extra.append(f"KS p {ks_pvalue:.3f}")
    ax.set_title("TARP" + (f" ({', '.join(extra)})" if extra else ""))
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    fig.tight_layout()
    return fig


def training_plot(history: Sequence[Mapping[str, Any]]):
    """Training and validation loss per epoch, and the learning rate on a second axis.

    Args:
        history: one dict per epoch with ``epoch``, ``train_loss``, ``val_loss`` and optionally ``lr``
            (``FitResult.history``).

    Returns:
        a matplotlib Figure.
    """
    if not history:
        raise ValueError("training_plot: the history is empty")
    ep = np.array([h["epoch"] for h in history], dtype=float)
    fig = _figure(6.0, 3.8)
    ax = fig.add_subplot()
    for key, color, label in (
        ("train_loss", "tab:blue", "training loss"),
        ("val_loss", "tab:orange", "validation loss"),
    ):
        if key in history[0]:
            ax.plot(ep, [h.get(key, np.nan) for h in history], color=color, lw=1.4, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (the model family's objective)")
    lines, labels = ax.get_legend_handles_labels()
    if all("lr" in h for h in history):
        ax2 = ax.twinx()
        ax2.plot(ep, [h["lr"] for h in history], color="0.5", lw=1.0, ls=":", label="learning rate")
        ax2.set_ylabel("learning rate")
        ax2.set_yscale("log")
        l2, lb2 = ax2.get_legend_handles_labels()
        lines, labels = lines + l2, labels + lb2
    ax.legend(lines, labels, fontsize=8, frameon=False)
    ax.set_title("Training curves")
    fig.tight_layout()
    return fig
