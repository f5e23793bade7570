r"""A trusted reference posterior for one observation: emcee's ensemble sampler, checked by arviz.

Algorithm (per run r = 0 .. num_runs-1, each with its own seed from ``numpy.random.SeedSequence(seed)``):

1. Start W walkers inside the support: the W prior draws (out of max(2000, 20·W)) with the
   highest log posterior, or W points drawn at random from ``initial`` (a physgen ``Posterior``,
   sampled at x_obs, or a tensor ``(n, D)``), keeping those with a finite log posterior.
2. Run emcee's ``EnsembleSampler`` with its differential-evolution move ``DEMove`` (a shorter
   autocorrelation time per step than the default stretch move on the sbibm tasks, docs/mcmc.md; emcee's
   ``DESnookerMove`` is not used: on a 10-d Gaussian it gives draws of the wrong variance). The
   log density is vectorised over walkers and evaluated in torch, float64 numpy in and out. The
   chain runs in chunks, re-estimating the integrated
   autocorrelation time τ (``get_autocorr_time(tol=0)`` on the chain after its first quarter)
   until the chain is at least 50·max τ long (emcee's criterion for a reliable estimate) or
   ``max_steps`` is reached.
3. Burn-in = ceil(5·max τ) steps, thinning = max(1, floor(max τ / 2)); run on until enough thinned
   draws remain (ceil(num_samples / num_runs) per run, rounded up to whole ensemble steps).

Chains for R-hat: one chain per run, its walkers flattened step-major (draw index = step·W + walker),
so each half of a split chain holds every walker. Per-walker chains would flag a multimodal
posterior forever (a walker rarely changes mode, while the ensemble as a whole holds
the modes in proportion); per-run chains instead compare independent ensembles, so R-hat detects
runs whose walkers split between the modes differently, and non-stationarity within a run.
Within a run, walkers are independent, so arviz's ESS of the interleaved chain is of the order
of the number of thinned draws.

The result is checked by :func:`physgen.mcmc.check_convergence`; ``attrs["converged"]`` records the
verdict and a warning names each failed criterion.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import torch
from torch import Tensor

from physgen.io import to_inference_data
from physgen.mcmc.convergence import check_convergence
from physgen.mcmc.density import log_posterior, simulator_name
from physgen.mcmc.start import prior_like as _prior_like, start as _start

__all__ = ["reference_posterior"]

_BURN_IN_TAU, _THIN_TAU, _RELIABLE_TAU = 5.0, 0.5, 50.0


def _run(logp_np, start: np.ndarray, per_run: int, max_steps: int, seed: np.random.SeedSequence) -> dict:
    """One emcee run: returns the kept draws (K·W, D) step-major, τ, burn-in, thin, steps, reliable."""
    import emcee

    W, D = start.shape
    sampler = emcee.EnsembleSampler(W, D, logp_np, vectorize=True, moves=emcee.moves.DEMove())
    sampler.random_state = np.random.RandomState(np.random.MT19937(seed)).get_state()
    state, chunk, steps, tau = start, 500, 0, None
    reliable = False
    while steps < max_steps:
        n = min(chunk, max_steps - steps)
        state = sampler.run_mcmc(state, n, progress=False)
        steps += n
        discard = steps // 4
        tau = np.asarray(sampler.get_autocorr_time(discard=discard, tol=0, quiet=True), dtype=np.float64)
        tau_max = float(np.nanmax(tau)) if np.all(np.isfinite(tau)) else math.inf
        if steps - discard >= _RELIABLE_TAU * tau_max:
            reliable = True
            break
        if math.isfinite(tau_max):  # aim at the length where τ would be reliable
            chunk = max(500, int(min(_RELIABLE_TAU * tau_max * 4 / 3, max_steps) - steps))
    tau_max = float(np.nanmax(tau)) if tau is not None and np.all(np.isfinite(tau)) else float(steps)
    burn_in = min(int(math.ceil(_BURN_IN_TAU * tau_max)), steps // 2)
    thin = max(1, int(_THIN_TAU * tau_max))
    kept_steps = math.ceil(per_run / W)
    need = burn_in + kept_steps * thin
    if need > steps:
        sampler.run_mcmc(state, need - steps, progress=False)
        steps = need
    chain = sampler.get_chain()  # (steps, W, D)
    kept = chain[steps - kept_steps * thin :][thin - 1 :: thin][:kept_steps]  # (K, W, D)
    return {
        "draws": kept.reshape(-1, D),
        "tau": tau_max,
        "burn_in": steps - kept_steps * thin,
        "thin": thin,
        "steps": steps,
        "reliable": reliable,
        "acceptance": float(np.mean(sampler.acceptance_fraction)),
    }


def reference_posterior(
    simulator,
    x_obs: Tensor,
    *,
    num_samples: int = 10_000,
    seed: int = 0,
    num_runs: int = 4,
    num_walkers: int | None = None,
    initial=None,
    max_steps: int = 50_000,
    rhat_max: float = 1.01,
    ess_min: float = 400,
    sampler: str = "emcee",
    num_chains: int = 256,
    burn_in: int = 300,
    thin: int = 2,
):
    """Sample p(θ | x_obs) ∝ prior × likelihood with emcee and check convergence (module docstring).

    ``sampler="batched"`` samples with C = ``num_chains`` chains of :func:`physgen.mcmc.batched_metropolis`
    instead (:func:`physgen.mcmc.batched_reference.batched_reference`, with ``burn_in`` and ``thin`` of its
    first attempt; ``num_runs`` and ``num_walkers`` are not used): the better reference for a torch likelihood
    that is cheap per θ in large batches (the field-level Gaussian likelihood, docs/mcmc.md).

    Args:
        simulator: a simulator with ``prior`` and ``log_likelihood`` (``physgen.core.Simulator``).
        x_obs: one observation, shape ``simulator.x_shape``.
        num_samples: at least this many draws in total (over all runs).
        seed: seeds the walkers' starts and the emcee moves; the same seed gives the same draws.
        num_runs: independent runs, one arviz chain each (>= 2 for a meaningful R-hat).
        num_walkers: walkers per run (even, >= 2·D + 2); default max(64, 4·D) rounded up to even.
        initial: where walkers start: None (the best of many prior draws), a physgen ``Posterior``
            (its samples at x_obs) or a tensor ``(n, D)`` of points (n >= num_walkers inside the support).
        max_steps: the most ensemble steps spent per run on estimating τ.
        rhat_max, ess_min: the convergence criteria recorded in the attrs.
        sampler: "emcee" (default) or "batched".
        num_chains, burn_in, thin: the batched sampler's chains, first burn-in and thinning.

    Returns:
        ``arviz.InferenceData`` whose posterior group holds theta_0 .. theta_{D-1} with dims
        ``(chain, draw)`` (chain = run; draws step-major over walkers), the observation in
        ``observed_data``, and attrs (``idata.attrs``, copied to ``idata.posterior.attrs``):
        ``converged`` (0/1: R-hat and both ESS criteria hold), ``rhat_max``, ``ess_bulk_min``,
        ``ess_tail_min``, ``autocorr_time`` (max τ over runs and parameters, in steps), ``burn_in``
        and ``thin`` (largest over runs, in steps), ``num_walkers``, ``acceptance``, ``sampler``
        ("emcee"), ``seconds`` and ``messages`` (failed criteria and an unreliable-τ note, "; "-joined;
        empty when all is well; a RuntimeWarning repeats them).

    Raises:
        ValueError: the simulator has no log_likelihood, bad arguments, or no valid starting points.
    """
    if sampler not in ("emcee", "batched"):
        raise ValueError(f"reference_posterior: sampler must be 'emcee' or 'batched'; got {sampler!r}")
    if sampler == "batched":
        from physgen.mcmc.batched_reference import batched_reference

        return batched_reference(
            simulator,
            x_obs,
            num_samples=num_samples,
            seed=seed,
            num_chains=num_chains,
            burn_in=burn_in,
            thin=thin,
            initial=initial,
            max_steps=max_steps,
            rhat_max=rhat_max,
            ess_min=ess_min,
        )
    t0 = time.perf_counter()
    logp = log_posterior(simulator, x_obs)
    like = _prior_like(simulator.prior)
    D = int(like.shape[-1])
    W = max(64, 4 * D) if num_walkers is None else int(num_walkers)
    W += W % 2
    if W < 2 * D + 2:
        raise ValueError(f"reference_posterior: num_walkers must be >= 2·D + 2 = {2 * D + 2} for D = {D}; got {W}")
    if int(num_runs) < 1 or int(num_samples) < 1:
        raise ValueError(f"reference_posterior: num_runs and num_samples must be >= 1; got {num_runs}, {num_samples}")
    x_obs = torch.as_tensor(x_obs).to(like.device)

    def logp_np(theta: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = logp(torch.as_tensor(theta, dtype=like.dtype, device=like.device))
        return out.detach().to("cpu", torch.float64).numpy()

    per_run = math.ceil(int(num_samples) / int(num_runs))
    runs = []
    for child in np.random.SeedSequence(int(seed)).spawn(int(num_runs)):
        gen = torch.Generator().manual_seed(int(child.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)))
        with torch.no_grad():
            start = _start(simulator, x_obs, logp, W, D, initial, gen, like)
        runs.append(_run(logp_np, start.to("cpu", torch.float64).numpy(), per_run, int(max_steps), child))
    samples = np.stack([r["draws"] for r in runs])  # (runs, K·W, D)
    verdict = check_convergence(samples, rhat_max=rhat_max, ess_min=ess_min)
    messages = list(verdict.messages)
    if not all(r["reliable"] for r in runs):
        messages.append(
            f"the autocorrelation time is unreliable: max_steps={max_steps} is shorter than 50 τ; raise max_steps"
        )
    attrs = {
        "converged": int(verdict.converged),
        "rhat_max": verdict.rhat_max,
        "ess_bulk_min": verdict.ess_bulk_min,
        "ess_tail_min": verdict.ess_tail_min,
        "autocorr_time": max(r["tau"] for r in runs),
        "burn_in": max(r["burn_in"] for r in runs),
        "thin": max(r["thin"] for r in runs),
        "num_walkers": W,
        "acceptance": float(np.mean([r["acceptance"] for r in runs])),
        "sampler": "emcee",
        "seconds": time.perf_counter() - t0,
        "messages": "; ".join(messages),
    }
    if messages:
        warnings.warn(
            f"reference_posterior for {simulator_name(simulator)}: " + "; ".join(messages), RuntimeWarning, stacklevel=2
        )
    idata = to_inference_data(samples, observation=x_obs, attrs=attrs)
    idata.posterior.attrs.update(attrs)  # also on the group, so it survives idata.posterior.to_netcdf
    return idata
