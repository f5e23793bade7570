"""``physgen demo``: neural posterior estimation on two_moons, checked against the exact reference.

Steps: simulate 10,000 (θ, x) pairs, train the default NSF posterior (within a 90 s budget so that
the demo stays under 3 minutes on a 2-core machine; unbudgeted default training runs ~95 s there and
reaches C2ST ~0.55 on average, docs/benchmarks.md), sample it for an
observation simulated from a prior draw, draw the same number of samples from the task's
reference posterior, compute the C2ST between them (0.5 = indistinguishable), and write

    <out>/posterior.safetensors   the trained posterior (physgen.load)
    <out>/samples.nc              posterior samples as arviz InferenceData (netCDF)
    <out>/pairplot.png            posterior vs reference, pair plot
    <out>/metrics.json            C2ST, train time, epochs, samples/s
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

import torch

from physgen.data import simulate
from physgen.diagnostics import c2st
from physgen.inference import fit_posterior
from physgen.io import atomic_write, to_inference_data
from physgen.priors import sample_prior

__all__ = ["run_demo"]


def run_demo(out_dir: str | Path = "runs/demo", *, num_simulations: int = 10_000, num_samples: int = 10_000,
             seed: int = 0, progress: bool = True, max_train_seconds: float | None = 90.0) -> dict:
    """Run the demo and return its metrics (also written to ``<out_dir>/metrics.json``).

    ``max_train_seconds``: training budget (``fit``'s ``max_time``; None = train to early stopping).
    """
    task = importlib.import_module("simulators.sbibm").TwoMoons()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = (lambda *a: print(*a, flush=True)) if progress else (lambda *a: None)

    t0 = time.perf_counter()
    data = simulate(task, num_simulations, seed=seed)
    t_sim = time.perf_counter() - t0
    say(f"simulated {len(data)} two_moons pairs in {t_sim:.1f} s")

    t0 = time.perf_counter()
    post = fit_posterior(data, seed=seed, progress=progress, max_time=max_train_seconds)
    t_train = time.perf_counter() - t0
    say(f"trained NSF posterior: {post.fit_result.epochs} epochs in {t_train:.1f} s ({post.fit_result.stopped})")
    post.save(out / "posterior.safetensors")

    gen = torch.Generator().manual_seed(seed + 1)
    theta_o = sample_prior(task.prior, (1,), generator=gen)
    x_o = task.simulate(theta_o, generator=gen)[0]
    t0 = time.perf_counter()
    samples = post.sample(num_samples, x_o, seed=seed)
    rate = num_samples / (time.perf_counter() - t0)
    reference = task.reference_posterior(x_o, num_samples, seed=seed)
    score = c2st(reference, samples, seed=seed)
    say(f"C2ST(posterior, reference) = {score:.3f}   (0.5 = indistinguishable)")

    to_inference_data(samples, ["theta_1", "theta_2"], observation=x_o,
                      attrs={"c2st": score, "task": "two_moons"}).to_netcdf(str(out / "samples.nc"))
    from physgen.diagnostics.plots import pair_plot, to_png

    fig = pair_plot({"physgen NPE": samples, "reference": reference}, ["theta_1", "theta_2"], truth=theta_o[0],
                    title=f"two_moons posterior, C2ST = {score:.3f}")
    atomic_write(out / "pairplot.png", to_png(fig, dpi=110))
    metrics = {
        "task": "two_moons", "num_simulations": len(data), "train_seconds": t_train, "epochs": post.fit_result.epochs,
        "simulate_seconds": t_sim, "samples_per_second": rate, "c2st": score,
        "observation": x_o.tolist(), "theta_true": theta_o[0].tolist(),
    }
    atomic_write(out / "metrics.json", json.dumps(metrics, indent=2))
    return metrics
