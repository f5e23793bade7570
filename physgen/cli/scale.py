"""``--scheduler`` and ``--nproc``: where ``physgen simulate`` and ``physgen train`` run (docs/scaling.md).

    physgen simulate CONFIG --run-dir DIR --scheduler local:2          batches on a 2-worker dask LocalCluster
    physgen simulate CONFIG --run-dir DIR --scheduler tcp://host:8786  batches on a running dask scheduler
    physgen train CONFIG --run-dir DIR --nproc 2                       simulate here, then train on 2 ranks

The options override the config's ``[cluster]`` section (:class:`physgen.config.run.ClusterSection`). The
scheduler is reached before anything is written: an unreachable one is a one-line error (exit status 1)
within ``[cluster] timeout`` seconds, and the run folder is left as it was.

``train --nproc N`` (N > 1) runs the simulations in this process (on the scheduler, if one is given), then
starts N ranks of the same ``physgen train`` command with torchrun (:func:`physgen.distributed.launch`).
Each rank (also when started by ``torchrun -m physgen.cli train ...`` directly) joins the process group;
rank 0 takes the run folder's lock and makes sure the simulations are complete (simulating them itself,
without a scheduler unless ``--scheduler`` is given, when torchrun was called directly), then every rank reads
them and trains data-parallel (:mod:`physgen.train.ddp`); rank 0 writes the checkpoints, the posterior and the
summary line. A rank that dies stops the others and is named, with the state of the last checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "campaign_client", "launch_ranks", "wants_launch", "training_data"]


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """``--scheduler`` (simulate, train) and ``--nproc`` (train) on ``command``'s parser."""
    from physgen.cli import positive_int

    parser.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run the simulation batches on dask: local, local:N (a LocalCluster of N workers), "
        "tcp://host:port or a scheduler file; '' here (default: the config's [cluster] scheduler)",
    )
    if command == "train":
        parser.add_argument(
            "--nproc",
            type=positive_int,
            default=None,
            metavar="N",
            help="train on N ranks on this machine (torchrun, data-parallel; default: the config's [cluster] nproc)",
        )


@contextlib.contextmanager
def campaign_client(cfg: Any, args: argparse.Namespace) -> Iterator[Any]:
    """The dask Client of ``--scheduler`` (else ``[cluster] scheduler``), None for none; closed at the end."""
    from physgen.distributed import connect

    c = cfg.cluster
    scheduler = c.scheduler if getattr(args, "scheduler", None) is None else args.scheduler
    with connect(scheduler, workers=c.workers, timeout=c.timeout) as client:
        yield client


def wants_launch(cfg: Any, args: argparse.Namespace) -> bool:
    """True when this ``physgen train`` should start ranks (``--nproc``/``[cluster] nproc`` > 1, not a rank)."""
    from physgen.train.ddp import launched

    return (args.nproc or cfg.cluster.nproc) > 1 and not launched()


def launch_ranks(cfg: Any, args: argparse.Namespace, run_dir: Path, simulations: Callable) -> int:
    """Simulate in this process (holding the folder's lock), then run N ranks of the same command."""
    from physgen.distributed.launch import launch
    from physgen.lock import folder_lock
    from physgen.train.loop import CHECKPOINT_NAME

    with campaign_client(cfg, args) as client, folder_lock(run_dir, f"physgen train {args.config}"):
        simulations(cfg, run_dir, progress=not args.quiet, repair=args.repair, restart=args.restart, executor=client)
    flags = [f for f, on in (("--quiet", args.quiet), ("--restart", args.restart)) if on]
    launch(
        args.nproc or cfg.cluster.nproc,
        ["--module", "physgen.cli", "train", str(args.config), "--run-dir", str(run_dir), *flags],
        checkpoint=run_dir / "checkpoints" / CHECKPOINT_NAME,
    )
    return 0


@contextlib.contextmanager
def training_data(cfg: Any, args: argparse.Namespace, run_dir: Path, simulations: Callable) -> Iterator[tuple]:
    """``(simulator, simulations, rank)`` for ``physgen train``, holding the folder's lock (rank 0) for the block:
    in one process, or on one of several ranks (module docstring)."""
    from physgen.lock import folder_lock
    from physgen.train.ddp import launched, process_group

    command = f"physgen train {args.config}"
    if not launched():
        with campaign_client(cfg, args) as client, folder_lock(run_dir, command):
            yield (
                *simulations(
                    cfg, run_dir, progress=not args.quiet, repair=args.repair, restart=args.restart, executor=client
                ),
                0,
            )
        return
    import torch.distributed as dist

    from physgen.config import resolve_simulator
    from physgen.data import load_simulations

    with process_group() as (rank, _), contextlib.ExitStack() as stack:
        if rank == 0:
            stack.enter_context(folder_lock(run_dir, command))
            client = stack.enter_context(campaign_client(cfg, argparse.Namespace(scheduler=args.scheduler or "")))
            simulations(
                cfg, run_dir, progress=not args.quiet, repair=args.repair, restart=args.restart, executor=client
            )
        dist.barrier()  # the store is complete: every rank reads the same rows
        data = load_simulations(run_dir / "simulations", verify=False)
        yield resolve_simulator(cfg.simulator.name, cfg.simulator.options), data, rank
