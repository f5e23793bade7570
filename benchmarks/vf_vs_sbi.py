"""physgen flow matching / diffusion vs sbi's FMPE / NPSE (their defaults), side by side in one run.

For one task (two_moons by default) and one set of simulations, each method is trained once with its
defaults; then it reports the training time, the sampling throughput (median over ``--repeats`` draws of
``--samples`` posterior samples for one observation) and the C2ST of those samples against the
task's exact reference posterior (0.5 = indistinguishable). Ratios compare the same family:
flow_matching vs FMPE and diffusion vs NPSE. physgen runs twice per family: with its defaults ("fm",
"diffusion") and with a faster setting ("fm_fast": the ``flow_matching_fast`` family, a 64-wide FiLM network
sampled with 5 midpoint steps = 10 network calls; "diffusion_fast": a 64-wide network), to show the
speed/accuracy trade-off.

    python benchmarks/vf_vs_sbi.py            # two_moons, 10,000 simulations
    python benchmarks/vf_vs_sbi.py --task gaussian_linear
    python benchmarks/vf_vs_sbi.py --quick    # smoke run: 1,000 simulations, few epochs

The last line is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from physgen.data import SimulationSet, simulate
from physgen.diagnostics import c2st
from physgen.inference import fit_posterior
from simulators.sbibm import get_task


def observation(task_name: str, task) -> torch.Tensor:
    if task_name == "two_moons":
        return torch.zeros(2)  # the classic two-crescent observation
    return simulate(task, 1, seed=12345).x[0]  # one generator for θ and x (never two equal streams)


def timed_samples(draw, n: int, repeats: int) -> tuple[torch.Tensor, float]:
    times, samples = [], None
    for r in range(repeats):
        t0 = time.perf_counter()
        s = draw(n, r)
        times.append(time.perf_counter() - t0)
        samples = s if samples is None else samples
    return samples, n / statistics.median(times)


# physgen configurations: defaults, and a "fast" setting (a narrower network, and for flow matching 10 network
# calls per sample instead of 32) that trades some accuracy for sampling speed
CONFIGS = {
    "fm": ("flow_matching", {}, {}),
    "fm_fast": ("flow_matching_fast", {}, {}),
    "diffusion": ("diffusion", {}, {}),
    "diffusion_fast": ("diffusion", {"hidden_features": 64}, {}),
}


_TRAINED: dict = {}  # (model, options) -> (posterior, train seconds): settings that differ only in sampling share one


def run_physgen(key: str, data: SimulationSet, prior, x_obs, args) -> dict:
    model, model_options, sample_options = CONFIGS[key]
    fit_kw = {"max_epochs": 3} if args.quick else {}
    cache = (model, json.dumps(model_options, sort_keys=True))
    if cache not in _TRAINED:
        t0 = time.perf_counter()
        post = fit_posterior(data, model=model, prior=prior, device="cpu", model_options=model_options, **fit_kw)
        _TRAINED[cache] = (post, time.perf_counter() - t0)
    post, train_s = _TRAINED[cache]
    samples, rate = timed_samples(lambda n, r: post.sample(n, x_obs, seed=r, **sample_options), args.samples,
                                  args.repeats)
    return {"train_s": train_s, "samples_per_s": rate, "epochs": post.fit_result.epochs, "samples": samples}


def run_sbi(kind: str, data: SimulationSet, task_name: str, task, x_obs, args) -> dict:
    from sbi.inference import FMPE, NPSE
    from sbi.utils import BoxUniform

    from benchmarks._common import sbi_quiet

    if task_name == "two_moons":
        prior = BoxUniform(-torch.ones(2), torch.ones(2))
    else:
        prior = torch.distributions.MultivariateNormal(
            torch.zeros(task.dim), covariance_matrix=task.prior_variance * torch.eye(task.dim)
        )
    trainer = FMPE if kind == "fmpe" else NPSE
    inference = trainer(prior=prior, show_progress_bars=False, **sbi_quiet(trainer))
    train_kw = {"max_num_epochs": 3} if args.quick else {}
    t0 = time.perf_counter()
    inference.append_simulations(data.theta, data.x).train(show_train_summary=False, **train_kw)
    posterior = inference.build_posterior()
    train_s = time.perf_counter() - t0

    def draw(n: int, r: int) -> torch.Tensor:
        torch.manual_seed(r)
        return posterior.sample((n,), x=x_obs, show_progress_bars=False)

    samples, rate = timed_samples(draw, args.samples, args.repeats)
    trained = inference.summary.get("epochs_trained", [])
    epochs = int(trained[-1]) if len(trained) else None
    return {"train_s": train_s, "samples_per_s": rate, "epochs": epochs, "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="two_moons", choices=["two_moons", "gaussian_linear"])
    parser.add_argument("--simulations", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (both sides)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="fm,fm_fast,diffusion,diffusion_fast,fmpe,npse",
                        help="comma-separated subset to run")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1,000 simulations, 3 epochs")
    args = parser.parse_args()
    if args.quick:
        args.simulations, args.samples, args.repeats = 1000, 1000, 2
    torch.set_num_threads(args.threads)
    task = get_task(args.task)
    # physgen.data.simulate draws θ and x from one seeded stream. (Seeding the prior and the simulator
    # with the same seed separately would make the noise equal to θ: x = 2θ exactly for gaussian_linear.)
    sims = simulate(task, args.simulations, seed=args.seed)
    data = SimulationSet(sims.theta, sims.x, {})
    x_obs = observation(args.task, task)
    reference = task.reference_posterior(x_obs, args.samples, seed=0)

    print(f"# physgen flow matching / diffusion vs sbi FMPE / NPSE  ({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC)")
    print(f"# machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} with {torch.get_num_threads()} thread(s)")
    import sbi

    print(f"# sbi {sbi.__version__}; task {args.task}, {args.simulations} simulations, x_obs={x_obs.tolist()}, "
          f"{args.samples} samples, sampling time = median of {args.repeats}")
    which = args.only.split(",")
    runs = {}
    for key, fn in [
        ("fm", lambda: run_physgen("fm", data, task.prior, x_obs, args)),
        ("fm_fast", lambda: run_physgen("fm_fast", data, task.prior, x_obs, args)),
        ("fmpe", lambda: run_sbi("fmpe", data, args.task, task, x_obs, args)),
        ("diffusion", lambda: run_physgen("diffusion", data, task.prior, x_obs, args)),
        ("diffusion_fast", lambda: run_physgen("diffusion_fast", data, task.prior, x_obs, args)),
        ("npse", lambda: run_sbi("npse", data, args.task, task, x_obs, args)),
    ]:
        if key not in which:
            continue
        r = fn()
        r["c2st"] = float(c2st(r.pop("samples").reshape(-1, reference.shape[-1]), reference, seed=0))
        runs[key] = r
        print(f"{key:10s} train {r['train_s']:8.1f} s  epochs {r['epochs']}  sampling {r['samples_per_s']:12.0f} samples/s  "
              f"C2ST {r['c2st']:.3f}", flush=True)
    ratios = {}
    for ours, theirs in [("fm", "fmpe"), ("fm_fast", "fmpe"), ("diffusion", "npse"),
                         ("diffusion_fast", "npse")]:
        if ours in runs and theirs in runs:
            a, b = runs[ours], runs[theirs]
            ratios[f"{ours}_vs_{theirs}"] = {
                "sampling_speedup": a["samples_per_s"] / b["samples_per_s"],
                "train_time_ratio": a["train_s"] / b["train_s"],
                "c2st": [a["c2st"], b["c2st"]],
            }
            print(f"{ours} vs {theirs}: sampling {a['samples_per_s'] / b['samples_per_s']:.1f}x faster, "
                  f"training time ratio {a['train_s'] / b['train_s']:.2f} (< 1 = physgen faster), "
                  f"C2ST {a['c2st']:.3f} vs {b['c2st']:.3f}")
    result = {
        "task": args.task,
        "simulations": args.simulations,
        "quick": args.quick,
        "threads": torch.get_num_threads(),
        "runs": runs,
        "ratios": ratios,
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
