"""The ``physgen`` command line: thin sub-commands over the API.

    physgen demo [--out DIR]                          NPE on two_moons vs the exact reference
    physgen simulate CONFIG.toml --run-dir DIR        simulations into DIR/simulations (resumable)
    physgen train CONFIG.toml --run-dir DIR           posterior into DIR/posterior.safetensors (resumable)
    physgen sample CONFIG.toml --run-dir DIR          samples into DIR/samples.nc (arviz InferenceData)
    physgen vmc CONFIG.toml [--run-dir DIR]           variational Monte Carlo ground state
    physgen tomography CONFIG.toml [--run-dir DIR]    quantum state tomography

A killed ``simulate`` or ``train`` resumes when the same command is run again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

__all__ = ["main"]


def _cmd_demo(args) -> int:
    from physgen.demo import run_demo

    out = Path(args.out)
    metrics = run_demo(out, num_simulations=args.num_simulations, progress=not args.quiet)
    print(json.dumps(metrics, indent=2))
    print(f"outputs in {out.resolve()}: posterior.safetensors, samples.nc, pairplot.png, metrics.json")
    return 0


def _simulations(cfg, run_dir: Path, progress: bool):
    from physgen.config import resolve_simulator
    from physgen.data import simulate

    sim = resolve_simulator(cfg.simulator)
    s = cfg.simulation
    return sim, simulate(sim, s.n, seed=s.seed, batch_size=s.batch_size, path=run_dir / "simulations", progress=progress)


def _cmd_simulate(args) -> int:
    from physgen.config import load_config

    cfg = load_config(args.config)
    run_dir = Path(args.run_dir)
    _, data = _simulations(cfg, run_dir, progress=not args.quiet)
    print(f"{len(data)} simulations ({data.meta['n_dropped']} dropped) in {run_dir / 'simulations'}")
    return 0


def _cmd_train(args) -> int:
    from physgen.config import load_config
    from physgen.inference import fit_posterior
    from physgen.io import atomic_write_text

    cfg = load_config(args.config)
    run_dir = Path(args.run_dir)
    sim, data = _simulations(cfg, run_dir, progress=not args.quiet)
    t = cfg.train
    # 0 / "auto" / a negative ema: leave the option to the model family's fit_defaults (as fit_posterior does)
    overrides = {k: v for k, v in (("batch_size", t.batch_size), ("lr", t.lr), ("max_epochs", t.max_epochs), ("patience", t.patience)) if v}
    if t.ema >= 0:
        overrides["ema"] = t.ema or None
    if t.schedule != "auto":
        overrides["schedule"] = t.schedule or None
    post = fit_posterior(
        data, model=cfg.model.name, transform=cfg.model.transform, model_options=cfg.model.options, prior=sim.prior,
        **overrides, weight_decay=t.weight_decay,
        min_delta=t.min_delta, validation_fraction=t.validation_fraction, clip_norm=t.clip_norm,
        max_time=t.max_time or None, seed=t.seed, device=t.device, num_threads=t.num_threads or "auto",
        checkpoint_dir=run_dir / "checkpoints", resume=True, progress=not args.quiet,
    )
    path = post.save(run_dir / "posterior.safetensors")
    r = post.fit_result
    atomic_write_text(run_dir / "train_history.json", json.dumps({"stopped": r.stopped, "best_epoch": r.best_epoch,
                                                                  "history": r.history}, indent=1))
    print(f"trained {cfg.model.name}: {r.epochs} epochs, best validation loss {r.best_val_loss:.4f}; saved {path}")
    return 0


def _cmd_sample(args) -> int:
    from physgen.config import load_config, resolve_simulator
    from physgen.inference import load
    from physgen.io import to_inference_data
    from physgen.priors import sample_prior

    cfg = load_config(args.config)
    run_dir = Path(args.run_dir)
    post = load(run_dir / "posterior.safetensors")
    s = cfg.sample
    n = args.n or s.n
    if s.observation:
        x_o = torch.tensor(s.observation, dtype=torch.float32)
        theta_o = None
    else:
        sim = resolve_simulator(cfg.simulator)
        gen = torch.Generator().manual_seed(s.observation_seed)
        theta_o = sample_prior(sim.prior, (1,), generator=gen)
        x_o = sim.simulate(theta_o, generator=gen)[0].float()
    samples = post.sample(n, x_o, seed=s.seed)
    idata = to_inference_data(samples, observation=x_o,
                              attrs={"theta_true": theta_o[0].tolist() if theta_o is not None else []})
    out = run_dir / "samples.nc"
    idata.to_netcdf(str(out))
    import arviz as az

    print(az.summary(idata, kind="stats").to_string())
    print(f"{n} samples written to {out}")
    return 0


def _cmd_vmc(args) -> int:
    from physgen.quantum.vmc import run_vmc_config

    print(json.dumps(run_vmc_config(args.config, args.run_dir), indent=2, default=str))
    return 0


def _cmd_tomography(args) -> int:
    from physgen.quantum.tomography import run_tomography_config

    print(json.dumps(run_tomography_config(args.config, args.run_dir), indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="physgen", description="Simulation-based inference and neural quantum states.")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="NPE on two_moons, checked against the exact reference posterior")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--num-simulations", type=int, default=10_000)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_demo)
    for name, func, text in [
        ("simulate", _cmd_simulate, "run the simulations of a config (resumable)"),
        ("train", _cmd_train, "simulate if needed, then train the posterior (resumable)"),
        ("sample", _cmd_sample, "sample the trained posterior for the config's observation"),
    ]:
        p = sub.add_parser(name, help=text)
        p.add_argument("config", help="TOML run config (see examples/)")
        p.add_argument("--run-dir", required=True, help="folder for this run's outputs")
        p.add_argument("--quiet", action="store_true")
        if name == "sample":
            p.add_argument("-n", type=int, default=None, help="number of samples (default: the config's)")
        p.set_defaults(func=func)
    for name, func, text in [("vmc", _cmd_vmc, "variational Monte Carlo ground state"),
                             ("tomography", _cmd_tomography, "quantum state tomography from measurements")]:
        p = sub.add_parser(name, help=text)
        p.add_argument("config", help="TOML config (see examples/quantum/)")
        p.add_argument("--run-dir", default=None, help="output folder")
        p.set_defaults(func=func)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from physgen.config import ConfigError
    from physgen.data import SimulationError
    from physgen.io import CheckpointError

    try:
        return args.func(args)
    except (ConfigError, SimulationError, CheckpointError, FileNotFoundError) as err:
        print(f"physgen {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
