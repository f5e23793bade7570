"""C2ST of equal-weight mixtures of independently trained default NSF posteriors (two_moons, 10,000 simulations).

    python benchmarks/npe_ensemble.py                  # 3 flows (seeds 0, 1, 2), 5 observations
    python benchmarks/npe_ensemble.py --hidden 64 64   # narrower flows

For k = 1..K the mixture of the first k flows draws 10,000 samples (n/k from each) per observation
(prior draws, seed 1000, as npe_settings.py) and is scored against the reference. Prints the summed
training time of each mixture. Ends with ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, prior_observations, result_line

import physgen
from physgen.diagnostics import c2st
from simulators.sbibm import get_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=3)
    ap.add_argument("--num-observations", type=int, default=5)
    ap.add_argument("--hidden", type=int, nargs="+", default=None, help="conditioner widths (default: the NSF's)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    task = get_task("two_moons")
    data = physgen.simulate(task, 10_000, seed=0)
    posts, seconds = [], []
    for s in range(args.flows):
        t0 = time.perf_counter()
        options = {"hidden_features": args.hidden} if args.hidden else {}
        posts.append(physgen.fit_posterior(data, seed=s, model_options=options))
        seconds.append(time.perf_counter() - t0)
    n_obs, n = args.num_observations, 10_000
    x = prior_observations(task, n_obs)
    refs = [task.reference_posterior(x[i], n, seed=i) for i in range(n_obs)]
    rows = []
    for k in range(1, args.flows + 1):
        scores = []
        for i in range(n_obs):
            parts = [p.sample(n // k + (1 if j < n % k else 0), x[i], seed=i) for j, p in enumerate(posts[:k])]
            scores.append(c2st(refs[i], torch.cat(parts), seed=i))
        rows.append({"flows": k, "train_seconds": sum(seconds[:k]), "c2st_each": scores, "c2st_mean": sum(scores) / n_obs})
        print(f"{k} flow(s): train {sum(seconds[:k]):.1f} s, C2ST {[round(v, 3) for v in scores]} mean "
              f"{sum(scores) / n_obs:.3f}", flush=True)
    print(result_line({"benchmark": "npe_ensemble", "rows": rows, "machine": machine()}))


if __name__ == "__main__":
    main()
