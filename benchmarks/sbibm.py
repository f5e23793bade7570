"""The sbibm benchmark (Lueckmann et al. 2021): every task x budget x {NPE, NLE, TSNPE}, C2ST over ten observations.

For each task and simulation budget, physgen trains NPE (``physgen.fit_posterior``, default settings) and NLE
(``physgen.fit_likelihood`` + ``Likelihood.sample_posterior``: batched Metropolis chains started from
likelihood-tempering particles, checked by R-hat/ESS; settings by ``--nle-options '{"mcmc": {...}}'``) once on
the same simulations, draws ``--num-samples`` posterior samples for each of sbibm's ten observations
(``simulators.sbibm.observation``), and scores them by C2ST (``physgen.diagnostics.c2st``, 5 folds) against the
reference posterior of ``physgen.mcmc.task_reference`` (exact samplers where the task has one, else gated
MCMC; cached; the chains of sir and lotka_volterra start near the true parameters, as sbibm's own MCMC does:
their narrow ridges defeat a start from the best prior draws). ``--methods tsnpe`` is the sequential option for one observation at a time
(``physgen.inference.tsnpe.fit_posterior_truncated``: the budget split over ``rounds``, each round after the first
simulated from the prior truncated to the current posterior's HPD region; ``--tsnpe-options``), to compare with
sbibm's SNPE column; ``--methods snle`` the same for the likelihood (``physgen.inference.snle.fit_likelihood_sequential``:
each round after the first simulated from the MCMC posterior of the previous round's likelihood; ``--snle-options``),
to compare with sbibm's SNLE column. Each row is printed beside the sbibm paper's published means for NPE, SNPE, NLE and SNLE.

Two classifiers (``--c2st``): ``sbi`` is physgen's default (sbi's MLP with early stopping; the ``c2st_mean`` of
every row, and the only one before 2026-12-05) and ``sbibm`` is sbibm's own ``c2st`` (no early stopping,
``max_iter=10000``; ``c2st_sbibm_mean``), the metric of the published means: only that column compares like with
like. In 10 dimensions sbibm's scores the same samples lower (0.709 against 0.765 for an NPE posterior of
bernoulli_glm, observation 1) and takes minutes per observation. ``--save-samples DIR`` writes each observation's
posterior and reference draws (safetensors) so they can be scored again without retraining.

Published figures (``PUBLISHED``): the mean C2ST over the ten observations per task, budget and algorithm,
computed from sbibm's own results file ``benchmarking_sbi/results/main_paper.csv`` of
github.com/sbi-benchmark/results (commit 2a49a5797d7ac6b1c8873f8ee01671713616656b, 2021-01-11; the runs
of the paper's Figure 2: ten observations each, one run per observation). NPE/NLE there are single-round
with the whole budget; SNPE/SNLE are sequential, ten rounds. All 120 means exist in that file.

    python benchmarks/sbibm.py --quick                                   # smoke run: one task, tiny budget
    python benchmarks/sbibm.py --tasks slcp --budgets 10000 --methods nle
    python benchmarks/sbibm.py --tasks two_moons --budgets 1000 --methods npe
    python benchmarks/sbibm.py                                           # everything (hours)

Each (task, budget, method) appends one JSON line to ``--output`` (default
``benchmarks/results/sbibm.jsonl``) and prints ``RESULT {json}``. Single-threaded by default
(``--threads``); timings are from the machine printed first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, result_line

import physgen
from physgen.diagnostics import c2st
from physgen.io import save_file
from physgen.inference.snle import fit_likelihood_sequential
from physgen.inference.tsnpe import fit_posterior_truncated
from physgen.mcmc import task_reference
from simulators.sbibm import TASKS, get_task, observation, true_parameters

# sbibm main_paper.csv: mean C2ST over ten observations (module docstring for the source)
PUBLISHED: dict[str, dict[int, dict[str, float]]] = {
    "bernoulli_glm": {
        1000: {"NPE": 0.863, "SNPE": 0.855, "NLE": 0.740, "SNLE": 0.634},
        10000: {"NPE": 0.678, "SNPE": 0.614, "NLE": 0.605, "SNLE": 0.553},
        100000: {"NPE": 0.559, "SNPE": 0.525, "NLE": 0.545, "SNLE": 0.522},
    },
    "bernoulli_glm_raw": {
        1000: {"NPE": 0.900, "SNPE": 0.906, "NLE": 0.870, "SNLE": 0.990},
        10000: {"NPE": 0.765, "SNPE": 0.658, "NLE": 0.939, "SNLE": 0.973},
        100000: {"NPE": 0.607, "SNPE": 0.607, "NLE": 0.951, "SNLE": 0.987},
    },
    "gaussian_linear": {
        1000: {"NPE": 0.694, "SNPE": 0.652, "NLE": 0.650, "SNLE": 0.628},
        10000: {"NPE": 0.552, "SNPE": 0.544, "NLE": 0.555, "SNLE": 0.548},
        100000: {"NPE": 0.506, "SNPE": 0.507, "NLE": 0.515, "SNLE": 0.519},
    },
    "gaussian_linear_uniform": {
        1000: {"NPE": 0.696, "SNPE": 0.631, "NLE": 0.723, "SNLE": 0.657},
        10000: {"NPE": 0.553, "SNPE": 0.527, "NLE": 0.548, "SNLE": 0.552},
        100000: {"NPE": 0.509, "SNPE": 0.507, "NLE": 0.506, "SNLE": 0.509},
    },
    "gaussian_mixture": {
        1000: {"NPE": 0.731, "SNPE": 0.697, "NLE": 0.812, "SNLE": 0.701},
        10000: {"NPE": 0.661, "SNPE": 0.583, "NLE": 0.731, "SNLE": 0.702},
        100000: {"NPE": 0.555, "SNPE": 0.533, "NLE": 0.757, "SNLE": 0.624},
    },
    "lotka_volterra": {
        1000: {"NPE": 0.999, "SNPE": 0.990, "NLE": 0.994, "SNLE": 0.909},
        10000: {"NPE": 0.997, "SNPE": 0.953, "NLE": 0.956, "SNLE": 0.738},
        100000: {"NPE": 0.981, "SNPE": 0.928, "NLE": 0.952, "SNLE": 0.695},
    },
    "sir": {
        1000: {"NPE": 0.815, "SNPE": 0.638, "NLE": 0.761, "SNLE": 0.745},
        10000: {"NPE": 0.680, "SNPE": 0.561, "NLE": 0.748, "SNLE": 0.745},
        100000: {"NPE": 0.585, "SNPE": 0.575, "NLE": 0.730, "SNLE": 0.650},
    },
    "slcp": {
        1000: {"NPE": 0.975, "SNPE": 0.965, "NLE": 0.946, "SNLE": 0.921},
        10000: {"NPE": 0.901, "SNPE": 0.845, "NLE": 0.771, "SNLE": 0.713},
        100000: {"NPE": 0.831, "SNPE": 0.666, "NLE": 0.699, "SNLE": 0.578},
    },
    "slcp_distractors": {
        1000: {"NPE": 0.982, "SNPE": 0.978, "NLE": 0.987, "SNLE": 0.992},
        10000: {"NPE": 0.970, "SNPE": 0.931, "NLE": 0.961, "SNLE": 0.949},
        100000: {"NPE": 0.863, "SNPE": 0.778, "NLE": 0.905, "SNLE": 0.883},
    },
    "two_moons": {
        1000: {"NPE": 0.725, "SNPE": 0.643, "NLE": 0.773, "SNLE": 0.657},
        10000: {"NPE": 0.606, "SNPE": 0.554, "NLE": 0.713, "SNLE": 0.571},
        100000: {"NPE": 0.542, "SNPE": 0.530, "NLE": 0.668, "SNLE": 0.582},
    },
}
METHODS = ("npe", "nle", "tsnpe", "snle")
BUDGETS = (1_000, 10_000, 100_000)


def _npe(data, task, x_os, n_samples: int, seed: int, options: dict) -> tuple[list, list, dict]:
    post = physgen.fit_posterior(data, seed=seed, **options)
    t0 = time.perf_counter()
    samples = [post.sample(n_samples, x_o, seed=seed + k) for k, x_o in enumerate(x_os)]
    return samples, [True] * len(x_os), {"epochs": post.fit_result.epochs, "sample_s": time.perf_counter() - t0}


def _draw(lik, x_o, n_samples: int, seed: int, mcmc: dict) -> tuple[torch.Tensor, bool, dict]:
    """``lik.sample_posterior`` at one observation: the draws, the convergence verdict and the MCMC notes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the verdict is recorded in the row instead
        res = lik.sample_posterior(x_o, n_samples, seed=seed, **mcmc)
    d = res.diagnostics
    note = {
        "rhat": d.get("rhat_max"),
        "ess_bulk": d.get("ess_bulk_min"),
        "acceptance": d.get("acceptance"),
        "steps": d.get("steps_per_chain"),
    }
    return res.samples.float(), res.converged, note


def _nle(data, task, x_os, n_samples: int, seed: int, options: dict) -> tuple[list, list, dict]:
    mcmc = options.pop("mcmc", {})
    lik = physgen.fit_likelihood(data, seed=seed, **options)
    t0 = time.perf_counter()
    samples, converged, notes = zip(*(_draw(lik, x_o, n_samples, seed + k, mcmc) for k, x_o in enumerate(x_os)))
    return (
        list(samples),
        list(converged),
        {"epochs": lik.fit_result.epochs, "sample_s": time.perf_counter() - t0, "mcmc": list(notes)},
    )


def _snle(budget: int, task, x_os, n_samples: int, seed: int, options: dict) -> tuple[list, list, dict]:
    """Sequential NLE for each observation: ``rounds`` (default 4) rounds of budget / rounds simulations, each
    after the first drawn by MCMC from the previous round's posterior at x_o; ``mcmc`` settings serve both the
    proposals and the final draws."""
    rounds = int(options.pop("rounds", 4))
    mcmc = options.pop("mcmc", {})
    samples, converged, kept, notes = [], [], [], []
    for k, x_o in enumerate(x_os):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # each proposal's verdict is in res.rounds
            res = fit_likelihood_sequential(
                task, x_o, rounds=rounds, simulations_per_round=budget // rounds, seed=seed, mcmc=mcmc, **options
            )
        draws, ok, note = _draw(res.estimator, x_o, n_samples, seed + k, mcmc)
        samples.append(draws)
        converged.append(ok)
        kept.append(sum(r["simulations"] for r in res.rounds))
        notes.append({**note, "proposals_converged": [r.get("proposal_converged", True) for r in res.rounds]})
    return samples, converged, {"rounds": rounds, "kept": kept, "mcmc": notes}


def _tsnpe(budget: int, task, x_os, n_samples: int, seed: int, options: dict) -> tuple[list, list, dict]:
    """Truncated sequential NPE for each observation: ``rounds`` (default 2) rounds of budget / rounds simulations."""
    rounds = int(options.pop("rounds", 2))
    epsilon = float(options.pop("epsilon", 1e-4))
    samples, kept, masses = [], [], []
    for k, x_o in enumerate(x_os):
        res = fit_posterior_truncated(
            task, x_o, rounds=rounds, simulations_per_round=budget // rounds, epsilon=epsilon, seed=seed, **options
        )
        samples.append(res.estimator.sample(n_samples, x_o, seed=seed + k))
        kept.append(sum(r["simulations"] for r in res.rounds))
        masses.append([r.get("prior_mass", 1.0) for r in res.rounds])
    return samples, [True] * len(x_os), {"rounds": rounds, "epsilon": epsilon, "kept": kept, "prior_mass": masses}


# The ODE tasks' posteriors are narrow ridges that chains started from the best prior draws crawl along for
# the whole budget (docs/sbibm_tasks.md); sbibm starts its own MCMC at the true parameters, and so do we.
START_AT_TRUTH = ("sir", "lotka_volterra")


def reference(task, k: int, x_o: torch.Tensor, num_samples: int) -> torch.Tensor:
    """The cached reference draws ``(num_samples, D)`` for sbibm observation ``k`` (made now when not cached)."""
    initial = None
    if task.name in START_AT_TRUTH:
        theta = true_parameters(task.name, k, dtype=torch.float64)
        noise = torch.randn(2048, theta.numel(), generator=torch.Generator().manual_seed(k), dtype=torch.float64)
        initial = theta * torch.exp(0.01 * noise)
    return task_reference(task, x_o, num_samples=num_samples, initial=initial).samples.float()


def run_one(task_name: str, budget: int, method: str, args, options: dict) -> dict:
    task = get_task(task_name)
    obs = list(args.observations)
    x_os = [observation(task_name, k) for k in obs]
    refs = [reference(task, k, x_o, args.num_samples) for k, x_o in zip(obs, x_os)]
    given, options = options, json.loads(json.dumps(options))  # the methods pop their own keys from the copy
    t0 = time.perf_counter()
    if method in ("tsnpe", "snle"):  # simulates per observation, inside the rounds
        sequential = _tsnpe if method == "tsnpe" else _snle
        samples, converged, info = sequential(budget, task, x_os, args.num_samples, args.seed, options)
        kept = min(info["kept"])
    else:
        data = physgen.simulate(task, budget, seed=args.seed)
        t0, kept = time.perf_counter(), len(data)
        samples, converged, info = (_npe if method == "npe" else _nle)(
            data, task, x_os, args.num_samples, args.seed, options
        )
    total = time.perf_counter() - t0
    if args.save_samples:
        folder = Path(args.save_samples)
        folder.mkdir(parents=True, exist_ok=True)
        for k, r, s in zip(obs, refs, samples):
            name = f"{task_name}_{budget}_{method}_seed{args.seed}_obs{k}.safetensors"
            save_file(folder / name, {"samples": s, "reference": r}, "sbibm_samples", {"task": task_name, "obs": k})
    scored: dict = {}
    if args.c2st in ("sbi", "both"):
        scores = [c2st(r, s, seed=k) for k, (r, s) in enumerate(zip(refs, samples))]
        scored |= {"c2st_each": scores, "c2st_mean": sum(scores) / len(scores)}
    if args.c2st in ("sbibm", "both"):  # sbibm's classifier and seed (its c2st's default, 1)
        scores = [c2st(r, s, seed=1, classifier="sbibm") for r, s in zip(refs, samples)]
        scored |= {"c2st_sbibm_each": scores, "c2st_sbibm_mean": sum(scores) / len(scores)}
    published = PUBLISHED.get(task_name, {}).get(budget, {})
    return {
        "benchmark": "sbibm",
        "task": task_name,
        "num_simulations": budget,
        "simulations_kept": kept,
        "method": method.upper(),
        "observations": obs,
        "num_samples": args.num_samples,
        **scored,
        "converged_each": converged,
        "published": published,
        "best_published": min(published.values()) if published else None,
        "options": given,
        "train_and_sample_s": total,
        **info,
        "machine": machine(),
        "load": os.getloadavg()[0],
        "seed": args.seed,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=sorted(TASKS), choices=sorted(TASKS))
    ap.add_argument("--budgets", nargs="+", type=int, default=list(BUDGETS))
    ap.add_argument(
        "--methods", nargs="+", default=["npe", "nle"], choices=METHODS, help="tsnpe, snle: not in the default"
    )
    ap.add_argument("--observations", nargs="+", type=int, default=list(range(1, 11)), help="sbibm numbers 1..10")
    ap.add_argument("--num-samples", type=int, default=10_000, help="posterior and reference samples per observation")
    ap.add_argument("--npe-options", type=json.loads, default={}, help="fit_posterior keywords (JSON)")
    ap.add_argument(
        "--tsnpe-options",
        type=json.loads,
        default={},
        help='"rounds" (default 2), "epsilon" (1e-4) and fit_posterior keywords (JSON)',
    )
    ap.add_argument(
        "--snle-options",
        type=json.loads,
        default={},
        help='"rounds" (default 4), "mcmc" (proposal and final sample_posterior settings), fit_likelihood keywords',
    )
    ap.add_argument(
        "--nle-options",
        type=json.loads,
        default={},
        help='fit_likelihood keywords (JSON); "mcmc": sample_posterior settings',
    )
    ap.add_argument("--output", default=str(Path(__file__).resolve().parent / "results" / "sbibm.jsonl"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--c2st",
        choices=("sbi", "sbibm", "both"),
        default="both",
        help="classifier: physgen's default (sbi's), sbibm's own (the published means' metric) or both",
    )
    ap.add_argument("--save-samples", default="", help="folder for each observation's posterior and reference draws")
    ap.add_argument("--quick", action="store_true", help="smoke run: gaussian_linear, 500 simulations, 2 obs")
    args = ap.parse_args()
    if args.quick:
        args.tasks, args.budgets, args.observations, args.num_samples = ["gaussian_linear"], [500], [1, 2], 1000
        args.npe_options = {"max_epochs": 20, **args.npe_options}
        args.tsnpe_options = {"max_epochs": 20, **args.tsnpe_options}
        args.snle_options = {
            "max_epochs": 20,
            "rounds": 2,
            "mcmc": {"num_chains": 128, "burn_in": 100, "max_steps": 1000},
            **args.snle_options,
        }
        args.nle_options = {
            "max_epochs": 20,
            "mcmc": {"num_chains": 128, "burn_in": 100, "max_steps": 1000},
            **args.nle_options,
        }
    torch.set_num_threads(args.threads)
    with contextlib.suppress(ImportError):  # the C2ST classifier's BLAS (sklearn) would take every core otherwise
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    print("machine:", machine(), "load:", os.getloadavg())
    print(
        f"{'task':24s} {'sims':>7s} {'method':6s} {'C2ST':>6s} {'sbibm':>6s} | published NPE  SNPE   NLE   SNLE "
        "| conv  seconds   (C2ST: physgen's classifier; sbibm: sbibm's, as the published means)"
    )
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    for task_name in args.tasks:
        for budget in args.budgets:
            for method in args.methods:
                options = getattr(args, f"{method}_options")
                row = run_one(task_name, budget, method, args, options)
                pub = row["published"]
                cols = " ".join(f"{pub[a]:5.3f}" if a in pub else "  n/a" for a in ("NPE", "SNPE", "NLE", "SNLE"))
                ours = " ".join(f"{row[k]:6.3f}" if k in row else "   n/a" for k in ("c2st_mean", "c2st_sbibm_mean"))
                print(
                    f"{task_name:24s} {budget:7d} {row['method']:6s} {ours} |     {cols} | "
                    f"{sum(row['converged_each'])}/{len(row['converged_each'])} {row['train_and_sample_s']:8.1f}",
                    flush=True,
                )
                with out.open("a") as f:
                    f.write(json.dumps(row, default=float) + "\n")
                print(result_line(row), flush=True)


if __name__ == "__main__":
    main()
