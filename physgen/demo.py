"""``physgen demo``: a field-level cosmology workflow in under 3 minutes, or NPE on two_moons.

``demo("gaussian_field")`` (what ``physgen demo`` runs): workflow (a) of docs/workflow_field_cosmology.md at a
small size: (Ω_m, σ8) from 32×32 Gaussian fields, 6,000 simulations, the power-spectrum encoder (binned
ln P̂(k) -> MLP; the learned CNN needs far more than a 3-minute budget, docs/workflow_field_cosmology.md)
trained for at most 60 s, validated against the exact field likelihood (batched MCMC reference, 64 chains,
2 observations) and by calibration (200 held-out pairs × 300 draws); it writes the run folder of ``physgen run``
(report/report.html, metrics.json, figures) and prints where the report is.

``demo("two_moons")`` / :func:`run_demo` (today's demo, ``physgen demo two_moons``). Steps: simulate 10,000 (θ, x) pairs, train the default NSF posterior (within a 90 s budget so that
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
import logging
import time
from pathlib import Path

import torch

from physgen.data import simulate
from physgen.diagnostics import c2st
from physgen.inference import fit_posterior
from physgen.io import atomic_write, to_inference_data
from physgen.priors import sample_prior

__all__ = ["demo", "run_demo", "run_field_demo", "DEMOS"]

DEMOS = ("gaussian_field", "two_moons")

log = logging.getLogger(__name__)

_FIELD_TOML = """# physgen demo: the small version of examples/workflows/gaussian_field.toml
[simulator]
name = "gaussian_field"
options = {{ n = 32, box_size = 256.0, dim = 2 }}

[simulation]
n = {n}
seed = {seed}
batch_size = 2000

[encoder]
name = "power_spectrum"
options = {{ bins = 16, out_features = 16 }}

[model]
name = "nsf"
options = {{ transforms = 4, hidden_features = [64, 64], bins = 8 }}
transform = "unconstrained"

[train]
batch_size = 128
lr = 0.001
patience = 10
ema = 0
max_time = {max_time}
seed = {seed}

[sample]
n = 2000
observation_seed = 1

[validate]
num_test = 200
num_posterior_samples = 300
num_observations = 2
reference = "mcmc"
mcmc = {{ sampler = "batched", num_chains = 64, max_steps = 6000 }}
seed = {seed}
"""


def demo(
    name: str = "gaussian_field",
    out_dir: str | Path | None = None,
    *,
    num_simulations: int | None = None,
    progress: bool = True,
    seed: int = 0,
) -> dict:
    """Run the demo ``name`` ("gaussian_field", the default, or "two_moons") and return its metrics.

    ``out_dir`` defaults to ``runs/demo_gaussian_field`` / ``runs/demo``; ``num_simulations`` to 6,000 / 10,000.
    The gaussian_field metrics hold ``report`` (the path of report.html) and ``seconds``.
    """
    if name not in DEMOS:
        raise ValueError(f"unknown demo {name!r}; choose one of {', '.join(DEMOS)}")
    if name == "two_moons":
        return run_demo(out_dir or "runs/demo", num_simulations=num_simulations or 10_000, seed=seed, progress=progress)
    return run_field_demo(
        out_dir or "runs/demo_gaussian_field", num_simulations=num_simulations or 6000, seed=seed, progress=progress
    )


def run_field_demo(
    out_dir: str | Path = "runs/demo_gaussian_field",
    *,
    num_simulations: int = 6000,
    seed: int = 0,
    max_train_seconds: float = 60.0,
    progress: bool = True,
) -> dict:
    """Workflow (a) at a small size through ``physgen.pipeline.run`` (module docstring); returns the report's
    metrics plus ``report`` (path of report.html), ``run_dir`` and ``seconds`` (wall time of the whole run)."""
    from physgen.pipeline import run

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = out / "demo.toml"
    atomic_write(config, _FIELD_TOML.format(n=int(num_simulations), seed=int(seed), max_time=float(max_train_seconds)))
    say = _say(progress)
    t0 = time.perf_counter()
    report = run(config, out, log=say, restart=True)  # a demo with other sizes redoes what changed
    seconds = time.perf_counter() - t0
    html = (out / "report" / "report.html").resolve()
    metrics = {**report.metrics, "report": str(html), "run_dir": str(out.resolve()), "seconds": seconds}
    say(
        f"gaussian_field demo: C2ST vs the exact-likelihood reference (mean over observations) = "
        f"{report.metrics.get('c2st_mean', 'n/a')}; posterior/reference std = {report.metrics.get('std_ratio_mean')}"
    )
    say(f"report: {html}  ({seconds:.0f} s)")
    return metrics


def _say(progress: bool):
    """The demo's line printer: INFO lines of the ``physgen.demo`` logger (visible without any logging setup)."""
    if not progress:
        return lambda *a: None
    from physgen.logs import ensure_handler

    ensure_handler()
    return lambda *a: log.info(" ".join(str(x) for x in a))


def run_demo(
    out_dir: str | Path = "runs/demo",
    *,
    num_simulations: int = 10_000,
    num_samples: int = 10_000,
    seed: int = 0,
    progress: bool = True,
    max_train_seconds: float | None = 90.0,
) -> dict:
    """Run the demo and return its metrics (also written to ``<out_dir>/metrics.json``).

    ``max_train_seconds``: training budget (``fit``'s ``max_time``; None = train to early stopping).
    """
    task = importlib.import_module("simulators.sbibm").TwoMoons()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = _say(progress)

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

    to_inference_data(
        samples, ["theta_1", "theta_2"], observation=x_o, attrs={"c2st": score, "task": "two_moons"}
    ).to_netcdf(str(out / "samples.nc"))
    from physgen.diagnostics.plots import pair_plot, to_png

    fig = pair_plot(
        {"physgen NPE": samples, "reference": reference},
        ["theta_1", "theta_2"],
        truth=theta_o[0],
        title=f"two_moons posterior, C2ST = {score:.3f}",
    )
    atomic_write(out / "pairplot.png", to_png(fig, dpi=110))
    metrics = {
        "task": "two_moons",
        "num_simulations": len(data),
        "train_seconds": t_train,
        "epochs": post.fit_result.epochs,
        "simulate_seconds": t_sim,
        "samples_per_second": rate,
        "c2st": score,
        "observation": x_o.tolist(),
        "theta_true": theta_o[0].tolist(),
    }
    atomic_write(out / "metrics.json", json.dumps(metrics, indent=2))
    return metrics
