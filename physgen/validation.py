"""``physgen.validate``: prove an amortized posterior right, three ways, in one call that returns a Report.

1. **Calibration** on ``num_test`` (θ, x) pairs simulated from the prior: one batched ``posterior.sample``
   call gives S draws per pair, shared by SBC (rank uniformity), expected coverage of the HPD regions and
   TARP (:mod:`physgen.diagnostics`).
2. **Reference** per observation, where the simulator has a ``log_likelihood``: an MCMC reference posterior
   (:func:`physgen.mcmc.reference_posterior`) whose convergence (R-hat, bulk and tail ESS) is checked first.
   Only a converged reference is compared with: C2ST (0.5 = indistinguishable) and MMD. An unconverged one
   puts a warning at the top of the report and C2ST/MMD against it are withheld. Without a likelihood the
   report says the posterior was validated by calibration only.
3. **Misspecification** per observation: is the observation inside the training distribution, as the
   posterior's encoder sees it? Encodings ``e = posterior.encode(x)`` of ``M`` training x form a reference
   set R (half of them) and a calibration set C (the other half). The score of a point o is the squared MMD
   between {o} and R with a Gaussian kernel (median-heuristic bandwidth on R):
   ``MMD²({o}, R) = k(o, o) − 2 mean_r k(o, r) + mean_{r, r'} k(r, r')``. Its p-value is conformal:
   ``p = (1 + #{c ∈ C : score(c) ≥ score(o)}) / (1 + |C|)``, exact (super-uniform) when o is drawn like the
   training x. ``p < 0.01`` is a warning: the posterior extrapolates for that observation. With K >= 2
   observations, a permutation MMD test of all K encodings against R (:func:`physgen.diagnostics.mmd_test`)
   adds a joint p-value.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor

from physgen.diagnostics import plots
from physgen.diagnostics.references import reference_kind, references, width_metrics
from physgen.diagnostics.report import Report, draws_to_idata, stack_references, versions

__all__ = ["validate"]

MISSPECIFICATION_P = 0.01  # a misspecification p-value below this is a warning


def validate(
    posterior: Any,
    simulator: Any,
    *,
    num_test: int = 1000,
    num_posterior_samples: int = 1000,
    observations: Tensor | int | None = None,
    reference: str = "auto",
    seed: int = 0,
    training_data: Any = None,
    fit_result: Any = None,
    num_reference_samples: int | None = None,
    reference_options: dict[str, Any] | None = None,
    num_misspecification: int = 2000,
    config: dict[str, Any] | None = None,
) -> Report:
    """Validate an amortized posterior against calibration, an MCMC reference and the training distribution.

    Args:
        posterior: a physgen Posterior (``sample(n, x) -> (n, B, D)``, ``log_prob``, ``encode(x) -> (*B, E)``).
        simulator: the simulator it was trained on (``prior``, ``simulate``; ``log_likelihood`` enables MCMC).
        num_test: held-out (θ, x) pairs simulated from the prior for SBC, coverage and TARP (>= 2).
        num_posterior_samples: S, posterior draws per test pair and per observation.
        observations: the observations to check, ``(K, *x_shape)`` (one ``x_shape`` is K = 1); an int K
            simulates K from the prior; None simulates one.
        reference: "auto" (the simulator's ``exact_posterior(x, n, seed=...)`` when it has one, else MCMC when it
            has ``log_likelihood``, else calibration only), "exact", "mcmc" or "none".
        seed: seeds the test pairs, the simulated observations, the draws and the references.
        training_data: the training SimulationSet (or its x ``(n, *x_shape)``) for the misspecification test;
            None uses the calibration pairs' x (drawn like the training x).
        fit_result: the posterior's FitResult (or ``{"history": [...]}``, or the history list) for the
            training-curve figure; None: ``posterior.fit_result`` when present.
        num_reference_samples: MCMC draws per observation (default: max(S, 2000), so that a converged reference
            can reach the ESS >= 400 its check asks for).
        reference_options: more keyword arguments of :func:`physgen.mcmc.reference_posterior` (its walkers start
            independently of the posterior under test unless ``{"initial": posterior}`` is given).
        num_misspecification: training encodings used by the misspecification test (half R, half C).
        config: shown in the report as the config of the run.

    Returns:
        A :class:`~physgen.diagnostics.report.Report`: metrics, warnings (unconverged references first),
        figures, samples (``posterior_samples``, ``reference_samples``), timings and versions.

    Raises:
        ValueError: ``reference="mcmc"`` ("exact") for a simulator without ``log_likelihood``
            (``exact_posterior``), an unknown ``reference``,
            observations whose shape is not ``x_shape``, or ``num_test < 2``.
    """
    kind = reference_kind(simulator, reference)
    t_start = time.perf_counter()
    report = Report(config=dict(config or {}), versions=versions())
    S = int(num_posterior_samples)
    names = _parameter_names(simulator, int(posterior.theta_dim)) if hasattr(posterior, "theta_dim") else None

    # 1. calibration ---------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    if num_test < 2:
        raise ValueError(f"num_test must be >= 2 (hundreds for a meaningful calibration test); got {num_test}")
    theta_test, x_test = _pairs(simulator, num_test, seed + 1)
    cal_warnings = _calibration(report, posterior, theta_test, x_test, S, seed, names)
    report.timings["calibration"] = time.perf_counter() - t0

    # 2. observations, posterior draws and references ---------------------------------------------------
    x_obs, theta_true = _observations(observations, simulator, posterior, seed + 2)
    obs_metrics: list[dict[str, Any]] = [{"index": k} for k in range(x_obs.shape[0])]
    if theta_true is not None:
        for k, m in enumerate(obs_metrics):
            m["theta_true"] = theta_true[k].tolist()

    # 3. misspecification (before sampling: an observation far outside may defeat the sampler) ---------
    t0 = time.perf_counter()
    train_x = _training_x(training_data, x_test, num_misspecification)
    mis_warnings, joint = _misspecification(posterior, x_obs, train_x, num_misspecification, seed, obs_metrics)
    if joint is not None:
        report.metrics["misspecification"] = joint
    report.timings["misspecification"] = time.perf_counter() - t0

    post_draws, draw_warnings = _observation_draws(posterior, x_obs, S, seed + 3)  # (S, K, D)
    names = names or [f"theta_{i}" for i in range(post_draws.shape[-1])]
    ref_warnings: list[str] = []
    c2st_warnings: list[str] = []
    refs: list[Tensor] = []
    ref_idatas: list = []
    if kind != "none":
        ref_warnings, c2st_warnings, refs, ref_idatas = references(
            report,
            simulator,
            x_obs,
            post_draws,
            obs_metrics,
            num_reference_samples or max(S, 2000),
            seed,
            reference_options or {},
            exact=kind == "exact",
        )
    else:
        why = (
            "the simulator has no log_likelihood or exact_posterior"
            if reference == "auto"
            else "reference = 'none' was asked"
        )
        report.notes.append(
            f"Validated by calibration only ({why}): no reference posterior, so no C2ST or MMD against "
            "one; SBC, expected coverage and TARP below are the evidence."
        )
    width_metrics(report, post_draws, refs, obs_metrics)
    for k in range(x_obs.shape[0]):
        sets = {"posterior": post_draws[:, k]}
        if refs:
            label = "reference (exact)" if kind == "exact" else "reference (MCMC)"
            sets[label if obs_metrics[k]["reference"]["converged"] else "reference (MCMC, unconverged)"] = refs[k]
        truth = theta_true[k] if theta_true is not None else None
        report.figures[f"pair_plot_{k}"] = plots.to_png(
            plots.pair_plot(sets, names, truth=truth, title=f"observation {k}")
        )

    # training curves ---------------------------------------------------------------------------------------
    trained = fit_result if fit_result is not None else getattr(posterior, "fit_result", None)
    history = _history(trained)
    if history:
        report.figures["training_curves"] = plots.to_png(plots.training_plot(history))
        last = history[-1]
        report.metrics["training"] = {
            "epochs": len(history),
            "best_val_loss": min(h["val_loss"] for h in history),
            "last_train_loss": last.get("train_loss"),
            "seconds": sum(h.get("seconds", 0.0) for h in history),
        }
        stopped = _stopped(trained)
        if stopped:
            report.metrics["training"]["stopped"] = stopped
        if stopped == "max_time":
            report.warnings += _unfinished_schedule(history)

    report.metrics["observations"] = obs_metrics
    # the order of importance: what makes other numbers untrustworthy first
    report.warnings = ref_warnings + mis_warnings + draw_warnings + c2st_warnings + cal_warnings + report.warnings
    report.samples["posterior_samples"] = draws_to_idata(post_draws.unsqueeze(0), names, x_obs, theta_true)
    if refs:
        report.samples["reference_samples"] = stack_references(ref_idatas, names, x_obs)
    report.timings["total"] = time.perf_counter() - t_start
    return report


# ----------------------------------------------------------------------------------------------- stages
def _pairs(simulator: Any, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """n (θ, x) pairs from the prior (rows with NaN/inf x dropped, as physgen.simulate does)."""
    from physgen.data import simulate

    data = simulate(simulator, int(n), seed=int(seed))
    x = data.x
    assert isinstance(x, Tensor), "simulate without a path keeps x in memory"
    return data.theta.float(), x.float()


def _calibration(
    report: Report, posterior: Any, theta: Tensor, x: Tensor, S: int, seed: int, names: list[str] | None
) -> list[str]:
    """SBC, coverage and TARP (and z-scores) from one set of draws; their metrics and figures go into ``report``."""
    from physgen.diagnostics import calibration

    try:
        try:
            result = calibration(posterior, theta, x, num_posterior_samples=S, seed=seed)
        except (NotImplementedError, AttributeError) as err:  # a family without log_prob: no expected coverage
            report.notes.append(
                f"Expected coverage skipped: the posterior's log_prob failed ({type(err).__name__}: {err})."
            )
            result = calibration(posterior, theta, x, num_posterior_samples=S, seed=seed, coverage=False)
    except RuntimeError as err:  # e.g. SamplingError: rejection sampling ran out of time
        return [f"Calibration could not run: posterior sampling failed for the {len(theta)} test pairs ({err})."]
    names = names or [f"theta_{i}" for i in range(theta.shape[-1])]
    warnings: list[str] = []
    cal: dict[str, Any] = {"num_test": int(theta.shape[0]), "num_posterior_samples": S, **result.as_dict()}
    s, c, t = result.sbc, result.coverage, result.tarp
    report.figures["sbc_ranks"] = plots.to_png(plots.sbc_rank_plot(s.ranks.cpu(), S, names))
    if not s.passed:
        worst = int(torch.as_tensor(s.p_values).argmin())
        warnings.append(
            f"SBC: the ranks of {names[worst]} are not uniform (p = {float(s.p_values[worst]):.2g} < "
            f"{s.alpha / len(s.p_values):.2g}): the posterior is miscalibrated for it (see the SBC figure)."
        )
    if c is not None:
        report.figures["coverage"] = plots.to_png(plots.coverage_plot(c.levels, c.coverage, c.lower, c.upper))
        if not c.passed:
            gap = (c.coverage - c.levels).abs().argmax()
            warnings.append(
                f"Expected coverage leaves its band: {float(c.coverage[gap]):.3f} at credibility "
                f"{float(c.levels[gap]):.2f} ({'over' if c.coverage[gap] < c.levels[gap] else 'under'}-"
                "confident posterior)."
            )
    report.figures["tarp"] = plots.to_png(plots.tarp_plot(t.alpha, t.ecp, t.atc, t.ks_pvalue))
    if not t.passed:
        warnings.append(
            f"TARP: the coverage of random-reference balls is not uniform (KS p = {t.ks_pvalue:.2g}, "
            f"ATC = {t.atc:.3f})."
        )
    report.metrics["calibration"] = cal
    return warnings


def _observations(observations: Any, simulator: Any, posterior: Any, seed: int) -> tuple[Tensor, Tensor | None]:
    """(x_obs ``(K, *x_shape)``, θ_true ``(K, D)`` or None for given observations)."""
    x_shape = tuple(getattr(posterior, "x_shape", getattr(simulator, "x_shape", ())))
    if observations is None or isinstance(observations, int):
        k = 1 if observations is None else int(observations)
        if k < 1:
            raise ValueError(f"observations: ask for at least one simulated observation; got {k}")
        theta, x = _pairs(simulator, k, seed)
        return x, theta
    x = torch.as_tensor(observations, dtype=torch.float32)
    if x_shape and tuple(x.shape) == x_shape:
        x = x.unsqueeze(0)
    if x_shape and tuple(x.shape[1:]) != x_shape:
        raise ValueError(
            f"observations must have shape (K, *x_shape) = (K, {', '.join(map(str, x_shape))}); got {tuple(x.shape)}"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError("observations contain NaN or inf; drop or fix them first")
    return x, None


def _observation_draws(posterior: Any, x_obs: Tensor, S: int, seed: int) -> tuple[Tensor, list[str]]:
    """S draws per observation ``(S, K, D)`` in one call; when that fails (e.g. rejection sampling for an
    observation far outside the training set), one call per observation, NaN rows for those that fail."""
    from physgen.diagnostics.sampling import posterior_draws

    try:
        return posterior_draws(posterior, x_obs, S, seed=seed).cpu().float(), []
    except RuntimeError:
        if x_obs.shape[0] == 1:
            raise
    parts: list[Tensor | None] = []
    warnings: list[str] = []
    for k in range(x_obs.shape[0]):
        try:
            parts.append(posterior_draws(posterior, x_obs[k : k + 1], S, seed=seed + k).cpu().float())
        except RuntimeError as err:
            parts.append(None)
            warnings.append(f"Observation {k}: posterior sampling failed ({err}); it is left out of the comparisons.")
    d = next((p.shape[-1] for p in parts if p is not None), int(getattr(posterior, "theta_dim", 1)))
    if all(p is None for p in parts):
        raise RuntimeError("posterior sampling failed for every observation: " + " ".join(warnings))
    return torch.cat([p if p is not None else torch.full((S, 1, d), float("nan")) for p in parts], 1), warnings


def _training_x(training_data: Any, fallback: Tensor, m: int) -> Tensor:
    """Up to m training x (the first rows: simulations are independent draws, and a lazy store reads only these)."""
    if training_data is None:
        return fallback
    x = getattr(training_data, "x", training_data)
    return torch.as_tensor(x[: min(len(x), int(m))]).float()


@torch.no_grad()
def _misspecification(
    posterior: Any, x_obs: Tensor, train_x: Tensor, m: int, seed: int, obs_metrics: list[dict]
) -> tuple[list[str], dict | None]:
    """Conformal MMD p-value of each observation's encoding against training encodings (module docstring), and
    for K >= 2 observations a permutation MMD test of all of them against the reference encodings.

    Returns:
        (warnings, the joint test's metrics or None).
    """
    encode = getattr(posterior, "encode", None)
    if encode is None:
        return [], None
    gen = torch.Generator().manual_seed(seed)
    rows = train_x[torch.randperm(len(train_x), generator=gen)[: max(4, min(m, len(train_x)))]]
    ref = next(iter(posterior.parameters())) if hasattr(posterior, "parameters") else None
    to = (lambda t: t.to(ref.device, ref.dtype)) if ref is not None else (lambda t: t)
    e_train = encode(to(rows)).double().cpu()
    e_obs = encode(to(x_obs)).double().cpu()
    half = len(e_train) // 2
    R, C = e_train[:half], e_train[half:]
    d2 = torch.cdist(R, R).square()
    bw2 = float(d2[d2 > 0].median()) if bool((d2 > 0).any()) else 1.0
    const = float(torch.exp(-d2 / (2 * bw2)).mean())

    def score(e: Tensor) -> Tensor:  # MMD²({e}, R) for each row of e: k(e, e) = 1
        return 1.0 - 2.0 * torch.exp(-torch.cdist(e, R).square() / (2 * bw2)).mean(1) + const

    s_cal, s_obs = score(C), score(e_obs)
    warnings, joint = [], None
    for k in range(len(e_obs)):
        p = float((1 + (s_cal >= s_obs[k]).sum()) / (1 + len(s_cal)))
        obs_metrics[k]["misspecification"] = {
            "mmd2": float(s_obs[k]),
            "p_value": p,
            "num_reference": int(len(R)),
            "num_calibration": int(len(s_cal)),
        }
        if p < MISSPECIFICATION_P:
            warnings.append(
                f"Observation {k} lies outside the training distribution as the posterior's encoder sees it "
                f"(misspecification MMD² = {float(s_obs[k]):.3g}, p = {p:.3g} < {MISSPECIFICATION_P}): "
                "the posterior extrapolates; check the simulator and noise model against the data."
            )
    if len(e_obs) >= 2:  # all observations together: a permutation MMD test against the reference encodings
        from physgen.diagnostics import mmd_test

        result = mmd_test(e_obs, R, seed=seed)
        joint = {
            "mmd2": result.mmd,
            "p_value": result.p_value,
            "num_observations": int(len(e_obs)),
            "num_reference": int(len(R)),
        }
        if result.p_value < MISSPECIFICATION_P:
            warnings.append(
                f"The {len(e_obs)} observations together differ from the training distribution as the "
                f"encoder sees it (MMD² = {result.mmd:.3g}, permutation p = {result.p_value:.3g} < "
                f"{MISSPECIFICATION_P})."
            )
    return warnings, joint


# ---------------------------------------------------------------------------------------------- helpers
def _parameter_names(simulator: Any, D: int) -> list[str]:
    """The simulator's ``param_names`` when it has D of them, else theta_0 .. theta_{D-1}."""
    names = getattr(simulator, "param_names", None)
    if names is not None and len(names) == D and all(isinstance(n, str) for n in names):
        return list(names)
    return [f"theta_{i}" for i in range(D)]


def _stopped(fit_result: Any) -> str:
    """Why training stopped (``FitResult.stopped``, or the key of the run folder's history dict); "" if unknown."""
    stopped = fit_result.get("stopped") if isinstance(fit_result, dict) else getattr(fit_result, "stopped", "")
    return stopped if isinstance(stopped, str) else ""


def _unfinished_schedule(history: list[dict]) -> list[str]:
    """A warning for a run stopped by max_time while its decaying rate was above 10% of its peak, else none."""
    lrs = [h["lr"] for h in history if isinstance(h.get("lr"), (int, float))]
    if not lrs or not 0.1 * max(lrs) < lrs[-1] < lrs[0]:
        return []
    return [
        f"Training stopped at its time budget (max_time) after {len(history)} epochs while its decaying "
        f"learning rate was still {lrs[-1] / max(lrs):.0%} of its peak: the schedule did not finish. Raise "
        "[train] max_time, or lower max_epochs to the epochs the budget buys."
    ]


def _history(fit_result: Any) -> list[dict]:
    if fit_result is None:
        return []
    if isinstance(fit_result, dict):
        return list(fit_result.get("history", []))
    if isinstance(fit_result, list):
        return fit_result
    return list(getattr(fit_result, "history", []) or [])
