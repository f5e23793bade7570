"""Calibration at scale: physgen's SBC + expected coverage + TARP vs sbi's run_sbc + run_tarp, one run.

two_moons; each library trains its own NPE posterior (NSF) on the same simulations with a modest budget;
physgen's maps θ onto the prior's box (``transform="unconstrained"``, so no draw is rejected; sbi's rejects
draws outside the box); both then check calibration on the same 1,000 held-out pairs (θ ~ prior, x ~ simulator) with 1,000
posterior draws each:

- physgen: ``physgen.diagnostics.calibration`` (one ``sample`` call for all observations, one ``log_prob``
  call for the coverage ranks, SBC ranks and TARP from the same draws);
- sbi: ``run_sbc`` (SBC ranks) + ``check_uniformity_frequentist`` (KS), ``run_sbc(reduce_fns=log_prob)``
  (sbi's expected coverage; ``norm_posterior=False``, since ranks need no normalisation, as physgen) and
  ``run_tarp`` + ``check_tarp``; each draws its own samples, as sbi's API does.

Prints both wall times and their ratio, the calibration figures of each posterior, then the MCMC part
(``benchmarks/_validation_mcmc.py``'s ``run(quick)``: batched torch sampler vs emcee) and ``RESULT {json}``.

    python benchmarks/validation.py --threads 1            # 1,000 pairs x 1,000 draws
    python benchmarks/validation.py --quick                # 200 pairs x 200 draws, small training
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, result_line, sbi_quiet

import physgen
from physgen.diagnostics import calibration
from physgen.priors import sample_prior
from simulators.sbibm import TwoMoons


def train_sbi(theta: torch.Tensor, x: torch.Tensor, seed: int, max_epochs: int):
    from sbi.inference import NPE
    from sbi.utils import BoxUniform

    torch.manual_seed(seed)
    inference = NPE(prior=BoxUniform(-torch.ones(2), torch.ones(2)), density_estimator="nsf", show_progress_bars=False,
                    **sbi_quiet(NPE))
    inference.append_simulations(theta, x)
    estimator = inference.train(max_num_epochs=max_epochs, show_train_summary=False)
    return inference.build_posterior(estimator)


def sbi_calibration(post, theta: torch.Tensor, x: torch.Tensor, num_samples: int, seed: int) -> dict:
    """sbi's SBC, expected coverage and TARP, timed together."""
    from sbi.diagnostics import check_tarp, run_sbc, run_tarp
    from sbi.diagnostics.sbc import check_uniformity_frequentist

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(seed)
        c0 = time.process_time()
        t0 = time.perf_counter()
        ranks, _ = run_sbc(theta, x, post, num_posterior_samples=num_samples, show_progress_bar=False)
        ks = check_uniformity_frequentist(ranks, num_samples)
        t_sbc = time.perf_counter() - t0
        t1 = time.perf_counter()
        cov_ranks, _ = run_sbc(theta, x, post, num_posterior_samples=num_samples, show_progress_bar=False,
                               reduce_fns=lambda t, xo: post.log_prob(t, x=xo, norm_posterior=False))
        t_cov = time.perf_counter() - t1
        t2 = time.perf_counter()
        ecp, alpha = run_tarp(theta, x, post, num_posterior_samples=num_samples, show_progress_bar=False)
        atc, ks_tarp = check_tarp(ecp, alpha)
        t_tarp = time.perf_counter() - t2
        cpu = time.process_time() - c0
    levels = torch.linspace(0.05, 0.95, 19)
    hpd = 1.0 - cov_ranks[:, 0] / num_samples  # fraction of draws with higher log q than the truth
    coverage = (hpd.unsqueeze(0) < levels.unsqueeze(1)).float().mean(1)
    return {"seconds": t_sbc + t_cov + t_tarp, "cpu_seconds": cpu, "seconds_sbc": t_sbc, "seconds_coverage": t_cov, "seconds_tarp": t_tarp,
            "sbc_ks_pvalues": ks.tolist(), "coverage_max_abs_deviation": float((coverage - levels).abs().max()),
            "tarp_atc": float(atc), "tarp_ks_pvalue": float(ks_tarp)}


def mcmc_part(quick: bool) -> dict | None:
    try:
        from _validation_mcmc import run
    except ImportError as err:
        print(f"mcmc: benchmarks/_validation_mcmc.py is missing or does not import ({err}); MCMC figures skipped")
        return None
    out = run(quick)
    print("mcmc:", out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--num-pairs", type=int, default=None, help="held-out (theta, x) pairs (default 1000)")
    ap.add_argument("--num-samples", type=int, default=None, help="posterior draws per pair (default 1000)")
    ap.add_argument("--num-simulations", type=int, default=None, help="training simulations (default 5000)")
    ap.add_argument("--max-epochs", type=int, default=None, help="training epochs of each NPE (default 30)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--transform", default="unconstrained", choices=["unconstrained", "none"],
                    help="physgen's treatment of the bounded prior (default unconstrained: no rejection sampling)")
    ap.add_argument("--skip-mcmc", action="store_true", help="do not run benchmarks/_validation_mcmc.py")
    args = ap.parse_args()
    n_pairs = args.num_pairs or (200 if args.quick else 1000)
    n_samp = args.num_samples or (200 if args.quick else 1000)
    n_sim = args.num_simulations or (1000 if args.quick else 5000)
    epochs = args.max_epochs or (3 if args.quick else 30)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine()
    print("machine:", info)

    task = TwoMoons()
    data = physgen.simulate(task, n_sim, seed=args.seed)
    t0 = time.perf_counter()
    post = physgen.fit_posterior(data, seed=args.seed, max_epochs=epochs, progress=False, transform=args.transform)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    post_sbi = train_sbi(data.theta, data.x, args.seed, epochs)
    t_fit_sbi = time.perf_counter() - t0
    print(f"train ({n_sim} simulations, <= {epochs} epochs): physgen {t_fit:.1f} s (transform={args.transform})   "
          f"sbi {t_fit_sbi:.1f} s", flush=True)

    g = torch.Generator().manual_seed(10_000 + args.seed)
    theta = sample_prior(task.prior, (n_pairs,), generator=g)
    x = task.simulate(theta, generator=g)

    c0 = time.process_time()
    t0 = time.perf_counter()
    ours = calibration(post, theta, x, num_posterior_samples=n_samp, seed=args.seed)
    t_pg = time.perf_counter() - t0
    cpu_pg = time.process_time() - c0
    print(f"physgen calibration: {t_pg:.2f} s wall, {cpu_pg:.2f} s CPU", flush=True)
    theirs = sbi_calibration(post_sbi, theta, x, n_samp, args.seed)
    t_sbi, cpu_sbi = theirs["seconds"], theirs["cpu_seconds"]
    print(f"SBC + coverage + TARP, {n_pairs} pairs x {n_samp} draws:  physgen {t_pg:.2f} s   sbi {t_sbi:.2f} s "
          f"(sbc {theirs['seconds_sbc']:.2f}, coverage {theirs['seconds_coverage']:.2f}, tarp {theirs['seconds_tarp']:.2f})"
          f"   speed-up sbi/physgen {t_sbi / t_pg:.2f}x")
    print(f"  CPU time (process, less sensitive to other load on the machine): physgen {cpu_pg:.2f} s   sbi {cpu_sbi:.2f} s"
          f"   speed-up {cpu_sbi / cpu_pg:.2f}x")
    cov_dev = float((ours.coverage.coverage - ours.coverage.levels).abs().max())
    print(f"physgen posterior: SBC min p {float(ours.sbc.p_values.min()):.3g} (passed {ours.sbc.passed}), coverage max "
          f"|dev| {cov_dev:.3f} (passed {ours.coverage.passed}), TARP ATC {ours.tarp.atc:+.3f} KS p {ours.tarp.ks_pvalue:.3g} "
          f"(passed {ours.tarp.passed})")
    print(f"sbi posterior:     SBC KS p {[round(p, 3) for p in theirs['sbc_ks_pvalues']]}, coverage max |dev| "
          f"{theirs['coverage_max_abs_deviation']:.3f}, TARP ATC {theirs['tarp_atc']:+.3f} KS p {theirs['tarp_ks_pvalue']:.3g}")
    mcmc = None if args.skip_mcmc else mcmc_part(args.quick)
    print(result_line({
        "benchmark": "validation", "task": "two_moons", "num_pairs": n_pairs, "num_posterior_samples": n_samp,
        "num_simulations": n_sim, "max_epochs": epochs, "transform": args.transform, "train_seconds_physgen": t_fit, "train_seconds_sbi": t_fit_sbi,
        "calibration_seconds_physgen": t_pg, "calibration_seconds_sbi": t_sbi, "speedup_vs_sbi": t_sbi / t_pg,
        "calibration_cpu_seconds_physgen": cpu_pg, "calibration_cpu_seconds_sbi": cpu_sbi, "cpu_speedup_vs_sbi": cpu_sbi / cpu_pg,
        "physgen": ours.as_dict(), "sbi": theirs, "mcmc": mcmc, "machine": info,
    }))


if __name__ == "__main__":
    main()
