"""ESS per second: physgen's batched torch Metropolis vs emcee, on the same log posterior.

Targets (one observation each, simulated at a fixed θ):
  (a) sbibm gaussian_linear (D = 10): a cheap, vectorised likelihood;
  (b) the exact field-level likelihood of ``simulators.cosmology.GaussianField`` (n = 32, dim = 2,
      θ = (Ω_m, σ8)): one FFT of the data, then per θ ln P(k) on the grid's 134 distinct |k| > 0 from the
      ln Ω_m interpolation table and a sum over them.

Both samplers call ``physgen.mcmc.log_posterior`` (prior + log_likelihood) and start from the same
kind of points (the best of many prior draws by log posterior). emcee: ``EnsembleSampler`` with
``vectorize=True`` and the move of ``physgen.mcmc.reference_posterior`` (``DEMove``), float64 numpy in and out; first third of the steps discarded. Batched:
``physgen.mcmc.batched_metropolis`` with C chains for the one observation, as many adaptation
steps as kept steps. ESS = arviz bulk ESS (one chain per walker / per chain), minimum over
parameters; seconds = wall time of all steps, burn-in and adaptation included. One run each.

The two parts of one likelihood call of (b) are timed apart, to say what dominates: the power
spectrum (``log_power_modes``: the table lookup; before the table it was EH98 and a 16,385-node σ8
integral per θ, 9 ms) and the rest of ``log_likelihood`` (checks, one FFT of the data, the mode sum).
The batched sampler runs 256 and 1,024 chains on (b): its ESS/s grows with the chains, since one call
with C θ costs far less than C calls.

Run: ``.venv/bin/python benchmarks/_validation_mcmc.py [--quick] [--threads 1]``; ``benchmarks/validation.py`` calls
``run(quick)``. Prints the figures and a ``RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import machine, median_time, result_line


def _bulk_ess_min(chains: np.ndarray) -> float:
    """min over parameters of arviz's bulk ESS, chains ``(chain, draw, D)``."""
    import arviz as az

    ds = az.convert_to_dataset({f"t{i}": chains[..., i] for i in range(chains.shape[-1])})
    return float(min(float(v) for v in az.ess(ds, method="bulk").to_array().values))


def _start(task, logp, n: int, seed: int) -> torch.Tensor:
    from physgen.priors import sample_prior

    cand = sample_prior(task.prior, (max(4 * n, 256),), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        lp = logp(cand)
    return cand[torch.argsort(lp, descending=True)[:n]]


def _emcee(logp, start: torch.Tensor, steps: int, seed: int) -> dict:
    import emcee

    dtype = start.dtype

    def f(theta: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return logp(torch.as_tensor(theta, dtype=dtype)).double().numpy()

    W, D = start.shape
    sampler = emcee.EnsembleSampler(W, D, f, vectorize=True, moves=emcee.moves.DEMove())
    sampler.random_state = np.random.RandomState(seed).get_state()
    t0 = time.perf_counter()
    sampler.run_mcmc(start.double().numpy(), steps, progress=False)
    seconds = time.perf_counter() - t0
    chains = sampler.get_chain(discard=steps // 3).transpose(1, 0, 2)  # (W, draws, D)
    ess = _bulk_ess_min(chains)
    return {"ess": ess, "seconds": seconds, "ess_per_s": ess / seconds, "walkers": W, "steps": steps,
            "evaluations": W * steps, "acceptance": float(sampler.acceptance_fraction.mean())}


def _batched(logp, start: torch.Tensor, steps: int, seed: int) -> dict:
    from physgen.mcmc import batched_metropolis

    C = start.shape[0]
    t0 = time.perf_counter()
    samples, acc = batched_metropolis(lambda th: logp(th), start[:, None, :], num_steps=steps, burn_in=steps,
                                      generator=torch.Generator().manual_seed(seed))
    seconds = time.perf_counter() - t0
    chains = samples[:, :, 0].permute(1, 0, 2).double().numpy()  # (C, draws, D)
    ess = _bulk_ess_min(chains)
    return {"ess": ess, "seconds": seconds, "ess_per_s": ess / seconds, "chains": C, "steps": 2 * steps,
            "evaluations": 2 * C * steps, "acceptance": float(acc.mean())}


def _compare(name: str, task, theta_obs, *, walkers: int, emcee_steps: int, chains: int, steps: int, seed: int) -> dict:
    from physgen.mcmc import log_posterior

    x = task.simulate(torch.as_tensor(theta_obs, dtype=torch.float32), generator=torch.Generator().manual_seed(seed))
    logp = log_posterior(task, x)
    em = _emcee(logp, _start(task, logp, walkers, seed + 1), emcee_steps, seed + 2)
    ba = _batched(logp, _start(task, logp, chains, seed + 3), steps, seed + 4)
    out = {"emcee": em, "batched": ba, "ratio": ba["ess_per_s"] / em["ess_per_s"]}
    print(f"{name}: batched {ba['ess_per_s']:.1f} ESS/s ({ba['chains']} chains, {ba['steps']} steps) | "
          f"emcee {em['ess_per_s']:.1f} ESS/s ({em['walkers']} walkers, {em['steps']} steps) | ratio {out['ratio']:.2f}x")
    return out


def _field_cost_split(sim, batch: int) -> dict:
    """Median seconds per call, at a batch of distinct θ, of the two parts of the field log-likelihood:
    ``log_power_modes`` (ln P(k) per θ) and the rest of ``log_likelihood`` (FFT of the data, mode sum)."""
    from physgen.priors import sample_prior

    theta = sample_prior(sim.prior, (batch,), generator=torch.Generator().manual_seed(0))
    x = sim.simulate(theta[:1], generator=torch.Generator().manual_seed(1))[0]
    with torch.no_grad():
        sim.log_likelihood(theta, x)
        t_power = median_time(lambda: sim.log_power_modes(theta), repeats=5)
        t_all = median_time(lambda: sim.log_likelihood(theta, x), repeats=5)
    t_rest = max(t_all - t_power, 0.0)
    return {"batch": batch, "seconds_power": t_power, "seconds_rest": t_rest, "seconds_log_likelihood": t_all,
            "power_fraction": t_power / t_all, "ms_per_theta": 1e3 * t_all / batch}


def run(quick: bool = False) -> dict:
    """Measure ESS/s of batched_metropolis and emcee on gaussian_linear and the 32x32 field likelihood.

    Returns:
        ``{"gaussian_linear": {...}, "gaussian_field_256": {...}, "gaussian_field_1024": {...}, "gaussian_field"
        (= the 1,024-chain one), "field_cost": [...], "machine": {...}}``; each
        comparison holds ``emcee`` and ``batched`` (ess, seconds, ess_per_s, evaluations, acceptance)
        and ``ratio`` = batched ESS/s ÷ emcee ESS/s.
    """
    from simulators.cosmology import GaussianField
    from simulators.sbibm import GaussianLinear

    gl = GaussianLinear()
    theta_gl = [0.3, -0.2, 0.1, 0.5, -0.4, 0.0, 0.2, -0.1, 0.6, -0.3]
    field = GaussianField(32, 256.0, 2)
    out = {"machine": machine(), "quick": quick}
    out["gaussian_linear"] = _compare(
        "gaussian_linear", gl, theta_gl, walkers=64, emcee_steps=600 if quick else 2000,
        chains=256, steps=200 if quick else 500, seed=0,
    )
    out["field_cost"] = [_field_cost_split(field, b) for b in (1, 64, 1024)]
    for c in out["field_cost"]:
        print(f"field likelihood, {c['batch']} θ per call: {c['ms_per_theta']:.3f} ms per θ, "
              f"ln P(k) {100 * c['power_fraction']:.0f} %")
    for chains in (256, 1024):
        out[f"gaussian_field_{chains}"] = _compare(
            f"gaussian_field ({chains} chains)", field, [0.3, 0.8], walkers=32, emcee_steps=200 if quick else 1000,
            chains=chains, steps=50 if quick else 200, seed=0,
        )
    out["gaussian_field"] = out["gaussian_field_1024"]
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small smoke run")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    res = run(args.quick)
    print(res)
    print(result_line(res))
