"""Sweep helper for the ODE families at the classic two-moons observation: train with given settings, report C2ST.

    python benchmarks/vf_settings.py '{"family": "flow_matching", "fit": {"patience": 30}}'
    python benchmarks/vf_settings.py '{"family": "diffusion", "fit": {"schedule": "cosine", "max_epochs": 300}}'
    python benchmarks/vf_settings.py '{"model": {"gaussian_base": false}, "fit": {"transform": "none", "max_epochs": 150, "patience": 150}}'

The same simulations, observation x_obs = (0, 0), reference and C2ST as ``benchmarks/vf_vs_sbi.py`` (10,000
simulations, 10,000 samples). JSON keys: "family" (default "flow_matching"), "model" (model_options), "fit"
(fit_posterior keywords; the family's fit_defaults fill the rest). Ends with ``RESULT {json}``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, result_line

from physgen.data import SimulationSet, simulate
from physgen.diagnostics import c2st
from physgen.inference import fit_posterior
from simulators.sbibm import get_task


def main() -> None:
    cfg = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    torch.set_num_threads(1)
    task = get_task("two_moons")
    sims = simulate(task, 10_000, seed=0)
    data = SimulationSet(sims.theta, sims.x, {})
    x_obs = torch.zeros(2)
    reference = task.reference_posterior(x_obs, 10_000, seed=0)
    t0 = time.perf_counter()
    post = fit_posterior(data, model=cfg.get("family", "flow_matching"), prior=task.prior, device="cpu",
                         model_options=cfg.get("model", {}), **cfg.get("fit", {}))
    train_s = time.perf_counter() - t0
    r = post.fit_result
    score = float(c2st(post.sample(10_000, x_obs, seed=0), reference, seed=0))
    print(f"settings {cfg}: train {train_s:.1f} s, {r.epochs} epochs (best {r.best_epoch}, {r.stopped}), C2ST {score:.4f}")
    print(result_line({"benchmark": "vf_settings", "settings": cfg, "train_seconds": train_s, "epochs": r.epochs,
                       "best_epoch": r.best_epoch, "stopped": r.stopped, "c2st": score, "machine": machine()}))


if __name__ == "__main__":
    main()
