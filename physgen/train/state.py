"""What one ``fit`` call carries from epoch to epoch, and its round trip through a checkpoint.

:class:`TrainingRun` holds the module, its data source, optimizers and schedules, the three generators (shuffling,
the loss's noise, the validation noise), the weight average, the best weights so far and the :class:`FitResult`.
:meth:`TrainingRun.save` writes all of it to one checkpoint (:mod:`physgen.train.checkpoint`, never pickled) after
every epoch; :func:`restore_run` loads it back into a fresh run, after checking that the checkpoint was written
with the same settings (:mod:`physgen.train.resume`), so a resumed run is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol, cast

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler

from physgen.io import CheckpointError
from physgen.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from physgen.train.ddp import DataParallel
from physgen.train.ema import WeightAverage
from physgen.train.resume import mismatch

__all__ = ["FitResult", "TrainingError", "TrainingRun", "Source", "restore_run"]

Batch = tuple[Tensor, ...]


class TrainingError(RuntimeError):
    """Training cannot continue (non-finite loss or gradients, a checkpoint of another run)."""


@dataclass
class FitResult:
    """What :func:`fit` did. ``history`` holds one dict per epoch (epoch, train_loss, val_loss, lr, seconds;
    ``partial: True`` for an epoch cut short by ``max_time``). ``stopped``: ``"early_stopping"``,
    ``"max_epochs"``, ``"max_time"`` or ``"callback"``.

    ``patience_epoch``/``patience_loss``: the last epoch (and its loss) that beat the previous one by more
    than ``min_delta``; early stopping counts epochs from there (-1: the initial, warm-started state).
    """

    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = math.inf
    stopped: str = ""
    seconds: float = 0.0
    patience_epoch: int = -1
    patience_loss: float = math.inf

    @property
    def epochs(self) -> int:
        return len(self.history)


class Source(Protocol):
    """Where a fit's batches come from (:mod:`physgen.train.sources`; one rank's share: :mod:`physgen.train.ddp`)."""

    @property
    def n(self) -> int | None: ...  # rows (None: a stream of unknown length)

    def train_batches(self, shuffle: torch.Generator) -> Iterator[Batch]: ...

    def val_batches(self) -> Iterator[Batch]: ...

    def warm_rows(self, k: int | None) -> Batch: ...


def _takes_generator(fn) -> bool:
    try:
        p = inspect.signature(fn).parameters.get("generator")
    except (TypeError, ValueError):
        return False
    return p is not None and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)


@dataclass
class TrainingRun:
    """Everything one fit() call carries from epoch to epoch (what a checkpoint saves)."""

    module: nn.Module
    source: Source
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, LRScheduler]
    shuffle: torch.Generator
    generator: torch.Generator
    val_generator: torch.Generator
    average: WeightAverage | None
    result: FitResult
    best_state: dict[str, Tensor]
    fingerprint: str
    ema: float | None
    seed: int
    ckpt_path: Path | None
    settings: dict = field(default_factory=dict)
    parallel: DataParallel | None = None  # on one of several ranks (physgen.train.ddp)

    def _module_loss(self) -> Callable[..., Tensor]:
        # a Trainable's loss (physgen.core); nn.Module's attribute lookup types it Tensor | Module
        return cast(Callable[..., Tensor], self.module.loss)

    def loss(self, batch: Batch, generator: torch.Generator, train: bool = False) -> Tensor:
        fn = self.parallel.loss if train and self.parallel is not None else self._module_loss()
        return fn(*batch, generator=generator) if self._with_generator else fn(*batch)

    def elapsed(self, t0: float) -> float:  # rank 0's clock on several ranks: they stop at the same batch
        return self.parallel.elapsed(t0) if self.parallel is not None else time.perf_counter() - t0

    def __post_init__(self) -> None:
        self._with_generator = _takes_generator(self._module_loss())

    def val_loss(self) -> float:
        self.val_generator.manual_seed(self.seed + 3)
        total, rows = 0.0, 0
        with torch.no_grad():
            for batch in self.source.val_batches():
                total += self.loss(batch, self.val_generator).item() * len(batch[0])
                rows += len(batch[0])
        return total / rows if rows else math.nan

    def save(self) -> None:
        ranks = self.parallel.generator_states(self.generator) if self.parallel and self.ckpt_path else {}
        if self.ckpt_path is None or ranks is None:  # None: a rank other than 0, which does not write
            return
        save_checkpoint(
            self.ckpt_path,
            kind="checkpoint",
            modules={"model": self.module, "best": self.best_state},
            optimizers=self.optimizers,
            schedulers=self.schedulers,
            generators={"shuffle": self.shuffle, "loss": self.generator, **ranks},
            tensors=self.average.tensors() if self.average is not None else None,
            config={
                "fingerprint": self.fingerprint,
                "result": asdict(self.result),
                "ema": self.ema,
                "optimizers": sorted(self.optimizers),
                "settings": self.settings,
            },
        )


def restore_run(run: TrainingRun, restart: bool) -> Checkpoint | None:
    """Load ``run.ckpt_path`` into ``run`` (weights, optimizers, schedules, generators, average, result); None
    (a fresh start) when ``restart`` and the checkpoint is unreadable or of other settings."""
    path = run.ckpt_path
    assert path is not None, "fit restores only a run with a checkpoint_dir"
    try:
        ck = load_checkpoint(path, kind="checkpoint")
    except CheckpointError:
        if restart:
            return None
        raise
    problem = mismatch(run, ck.config)
    if problem is not None:
        if restart:
            return None
        raise TrainingError(
            f"{path} {problem}; resume with the same settings, or start afresh: "
            "`--restart` on the command line, restart=True (or resume=False, or another "
            "checkpoint_dir) in Python"
        )
    cfg = ck.config
    dev = run.generator.device
    ck.restore_module("model", run.module)
    run.best_state = {k: v.to(dev) for k, v in ck.state_dict("best").items()}
    for name, opt in run.optimizers.items():
        ck.restore_optimizer(name, opt)
        if name in run.schedulers:
            ck.restore_scheduler(name, run.schedulers[name])
    ck.restore_generator("shuffle", run.shuffle)
    ck.restore_generator("loss", run.generator)
    if run.parallel is not None:
        run.parallel.restore(ck, run.generator, len(cfg["result"]["history"]))
    if run.ema is not None:
        run.average = WeightAverage(run.module, run.ema)
        run.average.load(ck.tensors)
    run.result = FitResult(**cfg["result"])
    return ck
