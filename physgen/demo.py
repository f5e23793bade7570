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

import numpy as np
import torch

from physgen.data import simulate
from physgen.diagnostics import c2st
from physgen.inference import fit_posterior
from physgen.io import atomic_write_text, to_inference_data
from physgen.priors import sample_prior

__all__ = ["run_demo", "pair_plot"]


def pair_plot(samples: dict[str, torch.Tensor], names: list[str], path: str | Path, truth=None, title: str = "") -> Path:
    """Corner-style pair plot of several sample sets ``{label: (n, D)}``; saved as PNG.

    Axes are zoomed on the last sample set (pass the reference last)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    d = len(names)
    fig, axes = plt.subplots(d, d, figsize=(2.6 * d + 1, 2.6 * d + 1), squeeze=False)
    # zoom on the last sample set (the reference) with 15% padding; shared histogram bins
    ref = list(samples.values())[-1].detach().cpu()
    lo, hi = ref.quantile(0.001, dim=0), ref.quantile(0.999, dim=0)
    pad = 0.15 * (hi - lo)
    lo, hi = (lo - pad).numpy(), (hi + pad).numpy()
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for (label, s), color in zip(samples.items(), colors):
        s = s.detach().cpu().numpy()
        for i in range(d):
            for j in range(d):
                ax = axes[i, j]
                if j > i:
                    ax.axis("off")
                elif i == j:
                    ax.hist(s[:, i], bins=np.linspace(lo[i], hi[i], 61), histtype="step", density=True, color=color, label=label)
                else:
                    ax.scatter(s[:, j], s[:, i], s=1, alpha=0.15, color=color, rasterized=True)
    for i in range(d):
        for j in range(i + 1):
            axes[i, j].set_xlim(lo[j], hi[j])
            if j < i:
                axes[i, j].set_ylim(lo[i], hi[i])
    if truth is not None:
        t = torch.as_tensor(truth).cpu().numpy()
        for i in range(d):
            axes[i, i].axvline(t[i], color="k", lw=0.8)
            for j in range(i):
                axes[i, j].plot(t[j], t[i], "k+", ms=10)
    for i in range(d):
        axes[d - 1, i].set_xlabel(names[i])
        if i > 0:
            axes[i, 0].set_ylabel(names[i])
    axes[0, 0].legend(loc="upper left", fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
    pair_plot({"physgen NPE": samples, "reference": reference}, ["theta_1", "theta_2"], out / "pairplot.png",
              truth=theta_o[0], title=f"two_moons posterior, C2ST = {score:.3f}")
    metrics = {
        "task": "two_moons", "num_simulations": len(data), "train_seconds": t_train, "epochs": post.fit_result.epochs,
        "simulate_seconds": t_sim, "samples_per_second": rate, "c2st": score,
        "observation": x_o.tolist(), "theta_true": theta_o[0].tolist(),
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    return metrics
