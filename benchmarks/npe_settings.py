"""Sweep helper: train physgen NPE on two_moons (10,000 simulations) with given settings, report C2ST.

    python benchmarks/npe_settings.py '{"model": {"hidden_features": [128, 128], "bins": 10}}'
    python benchmarks/npe_settings.py '{"fit": {"transform": "none"}}'

The JSON argument has "task" (default "two_moons"), "n_obs" (default 3), "model" (model_options) and
"fit" (fit_posterior keywords). C2ST is measured on n_obs observations simulated from prior draws
(seed 1000) with 10,000 samples each (as sbibm and benchmarks/npe_vs_sbi.py; fewer samples give lower C2ST). Ends with ``RESULT {json}``.
"""

from __future__ import annotations

import json
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
    cfg = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    torch.set_num_threads(1)
    task = get_task(cfg.get("task", "two_moons"))
    n_obs = int(cfg.get("n_obs", 3))
    data = physgen.simulate(task, 10_000, seed=0)
    t0 = time.perf_counter()
    post = physgen.fit_posterior(data, model_options=cfg.get("model", {}), **cfg.get("fit", {}))
    train_s = time.perf_counter() - t0
    x_o = prior_observations(task, n_obs)
    scores = [c2st(task.reference_posterior(x_o[i], 10_000, seed=i), post.sample(10_000, x_o[i], seed=i), seed=i)
              for i in range(n_obs)]
    t0 = time.perf_counter()
    post.sample(100_000, x_o[0])
    rate = 1e5 / (time.perf_counter() - t0)
    print(f"settings {cfg}: train {train_s:.1f} s, {post.fit_result.epochs} epochs, C2ST {scores}, mean "
          f"{sum(scores) / n_obs:.3f}, {rate:.0f} samples/s")
    print(result_line({"benchmark": "npe_settings", "task": task.name, "settings": cfg, "train_seconds": train_s,
                       "epochs": post.fit_result.epochs, "best_val_loss": post.fit_result.best_val_loss,
                       "c2st_each": scores, "c2st_mean": sum(scores) / n_obs, "samples_per_s": rate, "machine": machine()}))


if __name__ == "__main__":
    main()
