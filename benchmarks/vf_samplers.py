"""Sampler sweep: train one flow-matching or diffusion posterior, then score several sampler settings.

    python benchmarks/vf_samplers.py '{"model": "flow_matching", "samplers": [{}, {"steps": 4}]}'
    python benchmarks/vf_samplers.py '{"model": "diffusion", "model_options": {"gaussian_base": false}, "samplers": [{}]}'

JSON keys: "model", "model_options", "fit" (fit_posterior keywords), "task" (default two_moons), "n_obs"
(default 3; observations simulated from prior draws, seed 1000) and "samplers" (a list of keyword sets for
``Posterior.sample``; {} = the model's defaults). For each sampler: samples/s (20,000 samples, one
observation) and C2ST against the reference (10,000 samples per observation). Ends with ``RESULT {json}``.
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
    cfg = json.loads(sys.argv[1])
    torch.set_num_threads(1)
    task = get_task(cfg.get("task", "two_moons"))
    data = physgen.simulate(task, 10_000, seed=0)
    t0 = time.perf_counter()
    post = physgen.fit_posterior(data, model=cfg["model"], model_options=cfg.get("model_options", {}),
                                 **cfg.get("fit", {}))
    train_s = time.perf_counter() - t0
    print(f"train {train_s:.1f} s, {post.fit_result.epochs} epochs", flush=True)
    n_obs = int(cfg.get("n_obs", 3))
    x_o = prior_observations(task, n_obs)
    refs = [task.reference_posterior(x_o[i], 10_000, seed=i) for i in range(n_obs)]
    rows = []
    for opts in cfg.get("samplers", [{}]):
        t0 = time.perf_counter()
        post.sample(20_000, x_o[0], **opts)
        rate = 2e4 / (time.perf_counter() - t0)
        scores = [c2st(refs[i], post.sample(10_000, x_o[i], seed=i, **opts), seed=i) for i in range(n_obs)]
        rows.append({"sampler": opts, "samples_per_s": rate, "c2st_each": scores, "c2st_mean": sum(scores) / n_obs})
        print(f"{opts}: {rate:.0f} samples/s, C2ST {[round(v, 3) for v in scores]} mean {sum(scores) / n_obs:.3f}",
              flush=True)
    print(result_line({"benchmark": "vf_samplers", "settings": cfg, "train_seconds": train_s, "rows": rows,
                       "machine": machine()}))


if __name__ == "__main__":
    main()
