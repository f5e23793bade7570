"""physgen NPE vs sbi NPE (NSF, sbi's defaults) on two_moons, same simulations, one run.

Prints train wall time of each and their ratio, posterior samples/s for one observation,
and C2ST of each against the reference posterior (averaged over observations simulated
from prior draws), then ``RESULT {json}``.

    python benchmarks/npe_vs_sbi.py            # 10,000 simulations, 5 observations
    python benchmarks/npe_vs_sbi.py --quick    # 2,000 simulations, 1 observation (smoke run)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, median_time, prior_observations, result_line, sbi_quiet

import physgen
from physgen.diagnostics import c2st
from simulators.sbibm import TwoMoons


def train_sbi(theta: torch.Tensor, x: torch.Tensor, seed: int):
    from sbi.inference import NPE
    from sbi.utils import BoxUniform

    torch.manual_seed(seed)
    prior = BoxUniform(-torch.ones(2), torch.ones(2))
    inference = NPE(prior=prior, density_estimator="nsf", show_progress_bars=False, **sbi_quiet(NPE))
    inference.append_simulations(theta, x)
    t0 = time.perf_counter()
    estimator = inference.train(show_train_summary=False)
    seconds = time.perf_counter() - t0
    return inference.build_posterior(estimator), seconds, inference.summary["epochs_trained"][-1] if hasattr(inference, "summary") else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--num-simulations", type=int, default=None)
    ap.add_argument("--num-observations", type=int, default=None)
    ap.add_argument("--num-samples", type=int, default=None, help="posterior samples per observation for C2ST")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads for both (default: torch's)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n_sim = args.num_simulations or (2_000 if args.quick else 10_000)
    n_obs = args.num_observations or (1 if args.quick else 5)
    n_samp = args.num_samples or (2_000 if args.quick else 10_000)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine()
    print("machine:", info)

    task = TwoMoons()
    data = physgen.simulate(task, n_sim, seed=args.seed)
    x_o = prior_observations(task, n_obs, seed=1000 + args.seed)
    refs = [task.reference_posterior(x_o[i], n_samp, seed=i) for i in range(n_obs)]

    t0 = time.perf_counter()
    post = physgen.fit_posterior(data, seed=args.seed)
    t_pg = time.perf_counter() - t0
    post_sbi, t_sbi, epochs_sbi = train_sbi(data.theta, data.x, args.seed)
    print(f"train  physgen {t_pg:8.1f} s ({post.fit_result.epochs} epochs)   sbi {t_sbi:8.1f} s ({epochs_sbi} epochs)"
          f"   ratio physgen/sbi {t_pg / t_sbi:.3f}")

    n_speed = 100_000
    s_pg = median_time(lambda: post.sample(n_speed, x_o[0], seed=1))
    s_sbi = median_time(lambda: post_sbi.sample((n_speed,), x=x_o[0], show_progress_bars=False))
    print(f"sample physgen {n_speed / s_pg:10.0f} /s   sbi {n_speed / s_sbi:10.0f} /s   ratio {s_sbi / s_pg:.2f}x")

    c_pg, c_sbi = [], []
    for i in range(n_obs):
        a = post.sample(n_samp, x_o[i], seed=i)
        b = post_sbi.sample((n_samp,), x=x_o[i], show_progress_bars=False)
        c_pg.append(c2st(refs[i], a, seed=i))
        c_sbi.append(c2st(refs[i], b, seed=i))
        print(f"obs {i}: C2ST physgen {c_pg[-1]:.3f}   sbi {c_sbi[-1]:.3f}")
    mean_pg, mean_sbi = sum(c_pg) / n_obs, sum(c_sbi) / n_obs
    print(f"C2ST mean over {n_obs} observations: physgen {mean_pg:.3f}   sbi {mean_sbi:.3f}")
    print(result_line({
        "benchmark": "npe_vs_sbi", "task": "two_moons", "num_simulations": n_sim, "num_observations": n_obs,
        "train_seconds_physgen": t_pg, "train_seconds_sbi": t_sbi, "train_ratio": t_pg / t_sbi,
        "epochs_physgen": post.fit_result.epochs, "epochs_sbi": epochs_sbi,
        "samples_per_s_physgen": n_speed / s_pg, "samples_per_s_sbi": n_speed / s_sbi,
        "c2st_physgen": mean_pg, "c2st_sbi": mean_sbi, "c2st_physgen_each": c_pg, "c2st_sbi_each": c_sbi,
        "machine": info,
    }))


if __name__ == "__main__":
    main()
