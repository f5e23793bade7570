"""``physgen simulate | train | sample``: a run config -> simulations, a posterior, samples.

The three commands read the same run config (:class:`physgen.config.RunConfig`) and share a run
folder: ``simulations/`` (zarr), ``checkpoints/``, ``posterior.safetensors``, ``train_history.json``,
``samples.nc``. Each holds the folder's lock (:func:`physgen.lock.folder_lock`) while it runs, so a second
command on the same folder is refused at once. ``--restart`` (simulate, train) replaces simulations or a
checkpoint made with other settings; ``--repair`` re-simulates damaged batches of the store.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from physgen.config import RunConfig, check_choice, load_config, resolve_simulator
from physgen.lock import folder_lock

__all__ = ["cmd_simulate", "cmd_train", "cmd_sample", "simulations"]


def simulations(
    cfg: RunConfig, run_dir: Path, *, progress: bool, repair: bool = False, restart: bool = False, executor: Any = None
) -> tuple[Any, Any]:
    """The config's simulator and its simulations in ``run_dir/simulations`` (resumed if partly there;
    ``repair``/``restart``/``executor``: :func:`physgen.simulate`'s; ``[cluster] retries``)."""
    import physgen

    sim = resolve_simulator(cfg.simulator.name, cfg.simulator.options)
    s = cfg.simulation
    data = physgen.simulate(
        sim,
        s.n,
        seed=s.seed,
        batch_size=s.batch_size,
        path=run_dir / "simulations",
        progress=progress,
        repair=repair,
        restart=restart,
        executor=executor,
        retries=cfg.cluster.retries,
    )
    return sim, data


def cmd_simulate(args: argparse.Namespace) -> int:
    from physgen.cli.scale import campaign_client

    cfg = load_config(args.config, "simulate")
    run_dir = Path(args.run_dir)
    # the scheduler first: an unreachable one is an error before anything is written
    with campaign_client(cfg, args) as client, folder_lock(run_dir, f"physgen simulate {args.config}"):
        _, data = simulations(
            cfg, run_dir, progress=not args.quiet, repair=args.repair, restart=args.restart, executor=client
        )
    print(
        f"{len(data)} simulations ({data.meta['n_dropped']} returned NaN/inf and were dropped) in "
        f"{run_dir / 'simulations'}"
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import physgen
    from physgen.cli.scale import launch_ranks, training_data, wants_launch
    from physgen.models import MODELS, PRESETS

    cfg = load_config(args.config, "train")
    check_choice(cfg.model.name, [*MODELS, *PRESETS], "[model]", "name")
    run_dir = Path(args.run_dir)
    if wants_launch(cfg, args):  # --nproc N: simulate here, then N ranks of this command (physgen.cli.scale)
        return launch_ranks(cfg, args, run_dir, simulations)
    with training_data(cfg, args, run_dir, simulations) as (sim, data, rank):
        post = physgen.fit_posterior(
            data,
            model=cfg.model.name,
            transform=cfg.model.transform,
            model_options=cfg.model.options,
            prior=sim.prior,
            **cfg.encoder.fit_options(),
            **cfg.train.fit_options(),
            checkpoint_dir=run_dir / "checkpoints",
            resume=True,
            restart=args.restart,
            progress=not args.quiet and rank == 0,
        )
        if rank > 0:  # rank 0 writes
            return 0
        from physgen.pipeline import save_trained

        path = save_trained(post, run_dir, "posterior.safetensors")
        r = post.fit_result
    print(f"trained {cfg.model.name}: {r.epochs} epochs, best validation loss {r.best_val_loss:.4f}; saved {path}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, "sample")
    run_dir = Path(args.run_dir)
    if not (run_dir / "posterior.safetensors").is_file():
        raise FileNotFoundError(
            f"{run_dir / 'posterior.safetensors'} does not exist: train first "
            f"(`physgen train {args.config} --run-dir {run_dir}`)"
        )
    with folder_lock(run_dir, f"physgen sample {args.config}"):
        return _sample(cfg, run_dir, args.n)


def _sample(cfg: RunConfig, run_dir: Path, n: int | None) -> int:
    from physgen.deps import az
    import torch

    import physgen
    from physgen.io import to_inference_data
    from physgen.priors import sample_prior

    post = physgen.load(run_dir / "posterior.safetensors")
    s = cfg.sample
    n = s.n if n is None else n
    if s.observation:
        x_o = torch.tensor(s.observation, dtype=torch.float32)
        theta_o = None
    else:
        sim = resolve_simulator(cfg.simulator.name, cfg.simulator.options)
        gen = torch.Generator().manual_seed(s.observation_seed)
        theta_o = sample_prior(sim.prior, (1,), generator=gen)
        x_o = sim.simulate(theta_o, generator=gen)[0].float()
    samples = post.sample(n, x_o, seed=s.seed)
    idata = to_inference_data(
        samples, observation=x_o, attrs={"theta_true": theta_o[0].tolist() if theta_o is not None else []}
    )
    out = run_dir / "samples.nc"
    tmp = run_dir / ".samples.nc.tmp"
    idata.to_netcdf(str(tmp))
    os.replace(tmp, out)  # readers see the old file or the new one
    print(az.summary(idata, kind="stats").to_string())
    print(f"{n} samples written to {out}")
    return 0
