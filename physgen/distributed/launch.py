"""Start N training ranks with torchrun on this machine, and name the rank that dies.

    launch(2, ["--module", "physgen.cli", "train", "cfg.toml", "--run-dir", "runs/a"],
           checkpoint="runs/a/checkpoints/checkpoint.safetensors")

is ``torchrun --standalone --nproc-per-node 2 -m physgen.cli train cfg.toml --run-dir runs/a``, run in this
process through ``torch.distributed.run`` (torchrun's own entry point; ``argv`` is what follows torchrun's
options: a script and its arguments, or ``--module`` and a module). Each rank is a new Python process with
torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``; and
``OMP_NUM_THREADS=1`` unless set); :func:`physgen.train.ddp.process_group` reads it.

When a rank fails (an error, or killed: SIGKILL, out of memory), torchrun stops the others; :func:`launch` then
raises :class:`RankFailedError` naming the rank that failed first (a rank killed by a signal before one that
exited with an error, which is usually a rank that lost its peer, and both before a rank that torchrun
stopped with SIGTERM) and how, and, given the checkpoint's path,
whether it is intact (it is read and checked) and at which epoch the same command resumes.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path

from physgen.train.loop import TrainingError

__all__ = ["launch", "RankFailedError"]


class RankFailedError(TrainingError):
    """A training rank died or failed; the others were stopped. ``rank``, ``exitcode`` (negative: a signal)."""

    def __init__(self, message: str, rank: int, exitcode: int) -> None:
        super().__init__(message)
        self.rank, self.exitcode = rank, exitcode


def _how(exitcode: int) -> str:
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit status {exitcode}"


def checkpoint_state(path: str | os.PathLike | None) -> str:
    """A sentence on the checkpoint at ``path``: intact at epoch e (read and checked), absent, or unreadable."""
    if path is None:
        return "No checkpoint was asked for: the run starts again from the beginning"
    from physgen.io import CheckpointError
    from physgen.train.checkpoint import load_checkpoint

    path = Path(path)
    if not path.exists():
        return f"No checkpoint was written yet ({path}): the same command starts the run again"
    try:
        epochs = len(load_checkpoint(path, kind="checkpoint").config["result"]["history"])
    except (CheckpointError, OSError, KeyError, TypeError) as err:
        return f"The checkpoint {path} is unreadable ({err})"
    return (
        f"The last checkpoint ({path}, {epochs} epochs done) is intact: run the same command to resume from it "
        "(with any number of ranks)"
    )


def launch(
    nproc: int, argv: Sequence[str], *, checkpoint: str | os.PathLike | None = None, monitor_interval: float = 0.1
) -> None:
    """Run ``argv`` on ``nproc`` ranks with torchrun (module docstring); returns when every rank has finished.

    Args:
        nproc: ranks on this machine (>= 1).
        argv: torchrun's program: ``[script, *args]`` or ``["--module", module, *args]``.
        checkpoint: the run's checkpoint file, described in the error when a rank fails.
        monitor_interval: seconds between torchrun's checks of the ranks.

    Raises:
        RankFailedError: a rank failed or died (named, with the state of the checkpoint).
        ValueError: ``nproc`` < 1 or an empty ``argv``.
    """
    if int(nproc) < 1 or not argv:
        raise ValueError(f"launch needs nproc >= 1 and a program to run; got nproc={nproc}, argv={list(argv)}")
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(
        ["--standalone", f"--nproc-per-node={int(nproc)}", f"--monitor-interval={monitor_interval}", *map(str, argv)]
    )
    try:
        run(args)
    except ChildFailedError as err:
        failures = err.failures
        # the root cause: a signal other than torchrun's SIGTERM first, then an error, then the earliest
        rank = min(
            failures,
            key=lambda r: (
                failures[r].exitcode == -signal.SIGTERM,
                failures[r].exitcode >= 0,
                failures[r].timestamp,
                r,
            ),
        )
        code = int(failures[rank].exitcode)
        others = ", ".join(f"rank {r}: {_how(f.exitcode)}" for r, f in sorted(failures.items()) if r != rank)
        raise RankFailedError(
            f"training rank {rank} of {nproc} failed ({_how(code)}"
            f"{'; see its error above' if code > 0 else ''}); the other ranks were stopped"
            f"{f' ({others})' if others else ''}. {checkpoint_state(checkpoint)}",
            rank,
            code,
        ) from None
