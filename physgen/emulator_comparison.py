"""Emulator against simulator: the statistics of ``physgen emulate``'s compare stage, per θ and over θ.

:func:`compare_with_simulator` draws ``num_theta`` parameter sets from the prior and, at each, ``num_per_theta``
fresh simulations and as many emulated samples; the statistics depend on the simulator's ``x_kind`` (the
``*_at`` functions of :data:`COMPARISONS`): fields (P(k) ratio and χ², per-bin variance, P(k) correlations,
one-point PDF, peaks, Minkowski functionals), point sets (g(r) and the distribution of N) or vectors (a
classifier two-sample test). Per-θ metrics are listed, and their medians over θ summarise them; the cost per
sample of the simulator and of the emulator are measured on the same draws. :func:`downstream_check` trains a
posterior on emulated and one on simulated data and compares them.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from physgen.diagnostics.report import Report, versions

__all__ = ["compare_with_simulator", "downstream_check", "COMPARISONS"]

# per x_kind: "module:function(simulated (m, *x_shape), emulated (m, *x_shape), *, theta (D,), simulator,
# **statistics) -> (metrics dict, figures dict name -> PNG bytes)"
COMPARISONS = {
    "field": "physgen.emulator_comparison:compare_fields_at",
    "points": "physgen.emulator_comparison:compare_point_sets_at",
    "vector": "physgen.emulator_comparison:compare_vectors_at",
}


def compare_with_simulator(
    emulator: Any,
    simulator: Any,
    *,
    num_theta: int = 20,
    num_per_theta: int = 64,
    seed: int = 0,
    statistics: dict | None = None,
    log: Callable[[str], None] | None = None,
) -> Report:
    """Compare an emulator with its simulator at ``num_theta`` parameter sets drawn from the prior.

    Args:
        emulator: a trained :class:`~physgen.inference.Emulator` (``sample(n, theta) -> (n, B, *x_shape)``).
        simulator: the simulator (``prior``, ``simulate``, ``x_kind``).
        num_theta, num_per_theta: T parameter sets, m simulations and m emulated samples at each (m >= 2).
        seed: seeds θ, the simulations and the emulated samples.
        statistics: keyword options of the comparison for the simulator's ``x_kind``.
        log: called with progress lines (simulated, emulated so far with the time left at that rate, each
            θ scored), at most one emulation line a minute; None is silent.

    Returns:
        a Report: ``metrics["per_theta"]`` (one dict per θ), ``metrics["median"]`` (medians over θ of every
        numeric metric), ``metrics["cost"]`` (seconds per sample, simulator and emulator, their ratio, torch's CPU threads),
        figures of the first parameter set.
    """
    from physgen.priors import sample_prior

    if num_theta < 1 or num_per_theta < 2:
        raise ValueError(f"num_theta must be >= 1 and num_per_theta >= 2; got {num_theta}, {num_per_theta}")
    kind = getattr(simulator, "x_kind", None) or ("vector" if len(tuple(emulator.x_shape)) == 1 else None)
    if kind not in COMPARISONS:
        raise ValueError(
            f"no emulator comparison for {type(simulator).__name__} (x_kind {kind!r}); set the "
            f"simulator's x_kind to one of {sorted(COMPARISONS)}"
        )
    module, fn = COMPARISONS[kind].split(":")
    compare = getattr(importlib.import_module(module), fn)
    g = torch.Generator().manual_seed(seed)
    theta = sample_prior(simulator.prior, (num_theta,), generator=g)
    t0 = time.perf_counter()
    sims = torch.stack([simulator.simulate(t.expand(num_per_theta, -1), generator=g) for t in theta])
    sim_seconds = time.perf_counter() - t0
    say = log or (lambda line: None)
    say(f"simulated {num_per_theta} x {num_theta} θ in {sim_seconds:.1f} s")
    t0 = time.perf_counter()
    emus = emulator.sample(num_per_theta, theta, seed=seed + 1, progress=_eta_lines(num_per_theta, num_theta, say))
    emus = emus.transpose(0, 1).cpu()  # (T, m, *x_shape)
    emu_seconds = time.perf_counter() - t0
    say(f"emulated {num_per_theta} x {num_theta} θ in {emu_seconds:.1f} s")
    report = Report(versions=versions())
    per_theta = []
    for k in range(num_theta):
        metrics, figures = compare(
            sims[k].float(), emus[k].float(), theta=theta[k], simulator=simulator, **(statistics or {})
        )
        per_theta.append({"theta": theta[k].tolist(), **metrics})
        say(f"scored θ {k + 1}/{num_theta}")
        if k == 0:
            report.figures.update(figures)
    n = num_theta * num_per_theta
    report.metrics = {
        "median": _medians(per_theta),
        "per_theta": per_theta,
        "cost": {
            "simulator_seconds_per_sample": sim_seconds / n,
            "emulator_seconds_per_sample": emu_seconds / n,
            "speedup": sim_seconds / max(emu_seconds, 1e-12),
            "torch_threads": torch.get_num_threads(),  # the CPU threads both were timed with
        },
    }
    report.timings.update({"simulate for comparison": sim_seconds, "emulate for comparison": emu_seconds})
    return report


def _eta_lines(per_theta: int, num_theta: int, say: Callable[[str], None], every: float = 60.0):
    """A ``progress(drawn)`` callback for :meth:`Emulator.sample` that says, at most once per ``every``
    seconds, how many samples per θ are drawn and the time left at the rate so far."""
    start = last = time.perf_counter()

    def progress(drawn: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last < every or drawn >= per_theta:
            return
        last = now
        left = (now - start) * (per_theta - drawn) / max(drawn, 1)
        say(f"emulated {drawn}/{per_theta} per θ (x {num_theta} θ) in {now - start:.0f} s, about {left:.0f} s left")

    return progress


def _scalars(metrics: dict, prefix: str = "") -> dict[str, float]:
    """The numeric leaves of nested metrics, keyed by their dotted path (lists are left out)."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update(_scalars(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = float(v)
    return out


def _medians(per_theta: list[dict]) -> dict[str, float]:
    """Medians over θ of every numeric metric (dotted paths), NaN entries left out; for an even count the mean
    of the two middle values (torch's median would return the lower one, flattering every lower-is-better
    metric)."""
    import numpy as np

    rows = [_scalars({k: v for k, v in p.items() if k != "theta"}) for p in per_theta]
    out = {}
    for key in rows[0]:
        values = np.array([r[key] for r in rows if key in r], dtype=np.float64)
        finite = values[~np.isnan(values)]
        out[key] = float(np.median(finite)) if finite.size else float("nan")
    return out


def compare_fields_at(
    simulated: Tensor, emulated: Tensor, *, theta: Tensor, simulator: Any, **options
) -> tuple[dict, dict]:
    """2D fields at one θ: :func:`physgen.diagnostics.emulator.compare_fields` with the simulator's box size.

    ``options`` are compare_fields' keywords (``bins``, ``k_range``, ...); by default the P(k) summaries span
    0.05 < k < k_Nyquist / 2, the range the emulator targets of docs/emulators.md are stated on.
    """
    import math

    from physgen.diagnostics.emulator import compare_fields
    from physgen.diagnostics.emulator_plots import field_figures

    box = float(options.pop("box_size", getattr(simulator, "box_size", 1.0)))
    n = simulated.shape[-1]
    options.setdefault("k_range", (0.05, math.pi * n / box / 2))
    metrics = compare_fields(simulated.numpy(), emulated.numpy(), box_size=box, **options)
    return metrics, field_figures(metrics)


def compare_point_sets_at(
    simulated: Tensor, emulated: Tensor, *, theta: Tensor, simulator: Any, **options
) -> tuple[dict, dict]:
    """Point sets at one θ: g(r) (against the simulator's analytic ``pair_correlation(θ, r)`` when it has
    one) and the distribution of N (:func:`physgen.diagnostics.emulator_points.compare_point_sets`).

    ``options``: ``r_bins`` (default 12 bins up to a tenth of the box), ``box_size``, ``intensity`` (default
    the simulator's ``mean_intensity(θ)`` when it has one: pair counts normalised by the known λ are
    unbiased, by each set's own N low by the integral constraint).
    """
    import numpy as np

    from physgen.diagnostics.emulator_points import compare_point_sets
    from physgen.diagnostics.emulator_plots import point_set_figures

    box = float(options.pop("box_size", getattr(simulator, "box_size", 1.0)))
    r_bins = options.pop("r_bins", list(np.linspace(0.0, box / 10, 13)))
    if "intensity" not in options and hasattr(simulator, "mean_intensity"):
        options["intensity"] = float(simulator.mean_intensity(theta.double()))
    g_true = None
    if hasattr(simulator, "pair_correlation"):

        def g_true(r):
            return simulator.pair_correlation(theta.double(), torch.as_tensor(r, dtype=torch.float64)).numpy()

    metrics = compare_point_sets(
        simulated.numpy(), emulated.numpy(), box_size=box, r_bins=r_bins, g_true=g_true, **options
    )
    return metrics, point_set_figures(metrics)


def compare_vectors_at(
    simulated: Tensor, emulated: Tensor, *, theta: Tensor, simulator: Any, **options
) -> tuple[dict, dict]:
    """Vector x at one θ: a classifier two-sample test (0.5 = indistinguishable), mean and std ratios.

    Args:
        simulated, emulated: ``(m, D)``.
        options: keywords of :func:`physgen.diagnostics.c2st` (e.g. ``seed``).
    """
    from physgen.diagnostics import c2st

    a, b = simulated.reshape(len(simulated), -1), emulated.reshape(len(emulated), -1)
    score = c2st(a, b, **options)
    score = float(getattr(score, "accuracy", score))
    sd = a.std(0).clamp_min(1e-12)
    return {
        "c2st": score,
        "max_mean_shift_in_sd": float(((b.mean(0) - a.mean(0)).abs() / sd).max()),
        "max_abs_log_std_ratio": float((b.std(0) / sd).log().abs().max()),
    }, {}


def downstream_check(
    emulator: Any,
    simulator: Any,
    simulated: Any,
    *,
    num_observations: int = 5,
    num_samples: int = 1000,
    seed: int = 0,
    **posterior_options,
) -> dict:
    """Train one posterior on simulated and one on emulated data; compare them on the same observations.

    The emulated training set has the simulated set's θ (so only x differs), one emulated x per θ. The
    observations are fresh simulations at prior draws.

    Args:
        emulator: the trained emulator.
        simulator: the simulator (its prior and simulate give the observations).
        simulated: the simulated training SimulationSet.
        num_observations: K observations; num_samples: posterior draws per observation and posterior.
        seed: seeds the emulated x, the observations, the training and the draws.
        **posterior_options: keywords of :func:`physgen.fit_posterior` for both (model, encoder, max_epochs...).

    Returns:
        ``{"c2st": [K], "c2st_mean", "num_train"}``: C2ST between the two posteriors' draws per observation
        (0.5 = the emulator changes nothing downstream).
    """
    from physgen.data import SimulationSet
    from physgen.diagnostics import c2st
    from physgen.inference import fit_posterior
    from physgen.priors import sample_prior

    theta = torch.as_tensor(simulated.theta[:]).float()
    x_emu = torch.cat([emulator.sample(1, t, seed=seed + 7 + i)[0].cpu() for i, t in enumerate(theta.split(4096))])
    emulated = SimulationSet(theta, x_emu, meta=dict(getattr(simulated, "meta", {}) or {}))
    options = {"seed": seed, **posterior_options}
    post_sim = fit_posterior(simulated, **options)
    post_emu = fit_posterior(emulated, **options)
    g = torch.Generator().manual_seed(seed + 11)
    theta_obs = sample_prior(simulator.prior, (num_observations,), generator=g)
    x_obs = simulator.simulate(theta_obs, generator=g).float()
    a = post_sim.sample(num_samples, x_obs, seed=seed + 12)  # (S, K, D)
    b = post_emu.sample(num_samples, x_obs, seed=seed + 13)
    scores = [
        float(getattr(r, "accuracy", r)) for r in (c2st(a[:, k], b[:, k], seed=seed) for k in range(num_observations))
    ]
    return {"c2st": scores, "c2st_mean": sum(scores) / len(scores), "num_train": int(len(theta))}
