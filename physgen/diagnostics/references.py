"""Reference posteriors for :func:`physgen.validate`: exact draws or MCMC, their trust, and the comparisons.

A simulator offers a reference through ``exact_posterior(x, num_samples, *, seed) -> (num_samples, D)``
(exact draws, e.g. a grid posterior) or ``log_likelihood`` (MCMC by :func:`physgen.mcmc.reference_posterior`,
trusted only when R-hat and ESS say it converged). Against a trusted reference: C2ST (0.5 =
indistinguishable), MMD and the ratio of posterior to reference standard deviations.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor

from physgen.diagnostics.report import Report

__all__ = ["C2ST_MAX", "reference_kind", "width_metrics", "references"]

C2ST_MAX = 0.6  # a C2ST accuracy above this (vs a trusted reference) is a warning


def reference_kind(simulator: Any, reference: str) -> str:
    """ "exact", "mcmc" or "none": what ``reference`` asks for, checked against what the simulator offers."""
    if reference not in ("auto", "exact", "mcmc", "none"):
        raise ValueError(f"reference must be 'auto', 'exact', 'mcmc' or 'none'; got {reference!r}")
    has_exact, has_lik = hasattr(simulator, "exact_posterior"), hasattr(simulator, "log_likelihood")
    name = type(simulator).__name__
    if reference == "exact" and not has_exact:
        raise ValueError(
            f"reference='exact' needs a simulator with exact_posterior; {name} has none: use "
            "reference='auto', 'mcmc' (with a log_likelihood) or 'none' (calibration only)"
        )
    if reference == "mcmc" and not has_lik:
        raise ValueError(
            f"reference='mcmc' needs a simulator with log_likelihood; {name} has none: use "
            "reference='auto' or 'none' (calibration only)"
        )
    if reference == "auto":
        return "exact" if has_exact else "mcmc" if has_lik else "none"
    return reference


def width_metrics(report: Report, post_draws: Tensor, refs: list[Tensor], obs_metrics: list[dict]) -> None:
    """Posterior standard deviations per observation, their ratio to the reference's, and the means over
    observations (``posterior_std_mean``, ``std_ratio_mean``, ``c2st_mean``) in ``report.metrics``."""
    stds = post_draws.double().std(0)  # (K, D)
    for k, m in enumerate(obs_metrics):
        m["posterior_std"] = stds[k].tolist()
        if k < len(refs) and m["reference"]["converged"]:
            m["reference_std"] = refs[k].double().std(0).tolist()
            m["std_ratio"] = (stds[k] / refs[k].double().std(0)).tolist()
    report.metrics["posterior_std_mean"] = stds.mean(0).tolist()
    ratios = [m["std_ratio"] for m in obs_metrics if "std_ratio" in m]
    if ratios:
        report.metrics["std_ratio_mean"] = torch.tensor(ratios).mean(0).tolist()
    scores = [m["c2st"] for m in obs_metrics if isinstance(m.get("c2st"), float)]
    if scores:
        report.metrics["c2st_mean"] = sum(scores) / len(scores)


def _exact_reference(simulator: Any, x: Tensor, num_samples: int, seed: int, names: list[str]):
    """The simulator's exact posterior draws for one observation, as single-chain InferenceData."""
    from physgen.deps import az

    d = torch.as_tensor(simulator.exact_posterior(x, num_samples, seed=seed)).double().cpu().numpy()
    idata = az.from_dict(posterior={n: d[None, :, i] for i, n in enumerate(names)})
    idata.posterior.attrs.update(
        {
            "converged": 1,
            "rhat_max": 1.0,
            "ess_bulk_min": float(len(d)),
            "ess_tail_min": float(len(d)),
            "sampler": "exact",
        }
    )
    return idata


def references(
    report: Report,
    simulator: Any,
    x_obs: Tensor,
    post_draws: Tensor,
    obs_metrics: list[dict],
    num_samples: int,
    seed: int,
    options: dict,
    exact: bool = False,
) -> tuple[list[str], list[str], list[Tensor], list]:
    """Reference posteriors (exact draws, or MCMC and its convergence), and C2ST / MMD against the trusted ones.

    Returns:
        (unconverged-reference warnings, C2ST warnings, draws ``(n, D)`` and InferenceData per observation).
    """
    from physgen.diagnostics import c2st
    from physgen.mcmc import check_convergence, draws, reference_posterior

    warnings, c2st_warnings, refs, idatas = [], [], [], []
    for k in range(x_obs.shape[0]):
        t0 = time.perf_counter()
        # the walkers start from the sampler's own initialisation (prior draws ranked by likelihood), not from
        # the posterior under test: a reference seeded by the posterior could inherit its mistakes (a missed
        # mode); pass reference_options={"initial": posterior} to start there instead
        if exact:
            names = [f"theta_{i}" for i in range(post_draws.shape[-1])]
            idata = _exact_reference(simulator, x_obs[k], num_samples, seed + k, names)
        else:
            idata = reference_posterior(simulator, x_obs[k], num_samples=num_samples, seed=seed + k, **options)
        report.timings[f"reference[{k}]"] = time.perf_counter() - t0
        # the sampler's verdict (its own criteria) when recorded, else arviz's with the default criteria
        attrs = {**dict(getattr(idata, "attrs", {}) or {}), **dict(getattr(idata.posterior, "attrs", {}) or {})}
        if "converged" in attrs:
            converged = bool(int(attrs["converged"]))
            rhat, bulk, tail = (float(attrs.get(a, "nan")) for a in ("rhat_max", "ess_bulk_min", "ess_tail_min"))
            messages = [m for m in str(attrs.get("messages", "")).split("; ") if m]
        else:
            conv = check_convergence(idata)
            converged, rhat, bulk, tail, messages = (
                conv.converged,
                conv.rhat_max,
                conv.ess_bulk_min,
                conv.ess_tail_min,
                conv.messages,
            )
        ref = draws(idata).float()
        refs.append(ref)
        idatas.append(idata)
        obs_metrics[k]["reference"] = {
            "converged": converged,
            "rhat_max": rhat,
            "ess_bulk_min": bulk,
            "ess_tail_min": tail,
            "num_samples": int(ref.shape[0]),
        }
        if not converged:
            why = "; ".join(messages) or "the sampler flagged it"
            warnings.append(
                f"Observation {k}: the MCMC reference did not converge (R-hat {rhat:.4g}, bulk ESS {bulk:.0f}, "
                f"tail ESS {tail:.0f}; R-hat <= 1.01 and ESS >= 400 are needed): C2ST and MMD against it "
                f"are withheld. {why}."
            )
            obs_metrics[k]["c2st"] = "withheld: the reference did not converge"
            continue
        t0 = time.perf_counter()
        p = post_draws[:, k]
        n = min(len(p), len(ref))
        ref_sub = ref[torch.randperm(len(ref), generator=torch.Generator().manual_seed(seed))[:n]]
        score = _value(c2st(p[:n], ref_sub, seed=seed))
        obs_metrics[k]["c2st"] = score
        mmd = _optional("mmd")
        if mmd is not None:
            obs_metrics[k]["mmd"] = _value(mmd(p[:n], ref_sub))
        report.timings[f"c2st[{k}]"] = time.perf_counter() - t0
        if score is not None and score > C2ST_MAX:
            c2st_warnings.append(
                f"Observation {k}: C2ST = {score:.3f} > {C2ST_MAX} against a trusted reference: the "
                "posterior differs from it (see the pair plot); train longer or on more simulations."
            )
    return warnings, c2st_warnings, refs, idatas


def _optional(name: str):
    import physgen.diagnostics as d

    return getattr(d, name, None)


def _value(result: Any) -> Any:
    """A diagnostic's number: a float as is; a result dataclass by its main field or ``as_dict``."""
    if isinstance(result, (int, float)):
        return float(result)
    for attr in ("accuracy", "mmd", "value", "statistic"):
        if hasattr(result, attr):
            return float(getattr(result, attr))
    return result.as_dict() if hasattr(result, "as_dict") else result
