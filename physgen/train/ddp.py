"""Data-parallel training: ``fit`` on several ranks with torch.distributed, the same steps as one process.

Launch N ranks with torchrun (or ``physgen train --nproc N``, :mod:`physgen.distributed.launch`); in each::

    with process_group():                 # gloo on CPU, NCCL on GPU; reads torchrun's RANK, WORLD_SIZE, ...
        result = physgen.fit(module, data, batch_size=512, checkpoint_dir="ckpt", resume=True)

``fit`` runs data-parallel whenever a process group of more than one rank is initialised (nothing to change in
the call): :func:`data_parallel` wraps the module's loss in ``torch.nn.parallel.DistributedDataParallel`` and the
data source in a sampler over the training set that gives each rank its share of every global batch:

* every rank draws the same global batches as one process would (the shuffling generator is seeded by the
  run's seed on every rank), and rank r of W keeps rows ``[m r / W, m (r + 1) / W)`` of a batch of m rows;
  ``batch_size`` is therefore the global batch whatever W, and each rank computes on about m / W rows;
* DDP averages the ranks' gradients; rank r's loss gradient is weighted by ``W m_r / m`` (its value is left
  alone), so the averaged gradient is the gradient of the mean loss over the global batch, exactly as in one
  process, uneven last batch included. After k steps the weights equal one process's to rounding (the sums run
  in another order); a rank with no row of a batch (m < W) computes on one row with weight 0;
* randomness inside the loss (noise, time steps) comes from a generator per rank: rank 0 keeps one process's
  ``seed + 2``, rank r > 0 is seeded from ``(seed, r)``; deterministic losses (a flow's NLL) give one process's
  weights, stochastic ones the same distribution;
* the history's ``train_loss`` is the mean over rank 0's share of each batch (an estimate of the global one);
* validation runs on every rank over the whole validation split (the same numbers everywhere), so early
  stopping, the learning-rate schedule and callbacks decide alike on every rank; ``max_time`` reads rank 0's
  clock (one broadcast per batch, only when a time limit is set);
* rank 0 writes the checkpoints, with every rank's loss generator; a checkpoint resumes with any number of
  ranks (rank r restores its own generator when the checkpoint has it, else derives one from the seed, r and
  the epochs done). The checkpoint's settings (``batch_size`` is the global batch) do not include W.

Each rank reads every global batch and keeps its share, so compute scales with W while reading does not
(stores larger than memory still stream chunk by chunk on each rank). Not supported: modules with their own
``training_step`` (several optimizers, GANs): :func:`data_parallel` refuses them.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import gc
import os
import time
from collections.abc import Callable, Iterator
from typing import cast

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["process_group", "launched", "world", "rank_seed", "data_parallel", "DataParallel"]


def launched() -> bool:
    """True in a rank started by torchrun with more than one rank (``WORLD_SIZE`` > 1 in the environment)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def world() -> tuple[int, int]:
    """``(rank, world size)`` of the initialised process group; ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextlib.contextmanager
def process_group(backend: str | None = None, timeout: float = 1800.0) -> Iterator[tuple[int, int]]:
    """Initialise torch.distributed from torchrun's environment for the block, and destroy it at the end (after a
    barrier of every rank when the block ends normally, so no rank closes its connections early); yields
    ``(rank, world size)``. Outside torchrun (``WORLD_SIZE`` unset or 1), or with a group already initialised,
    it does nothing. ``backend``: None picks NCCL when CUDA is available (each rank on ``cuda:LOCAL_RANK``),
    else gloo. ``timeout``: seconds a collective waits for the other ranks."""
    if not launched() or dist.is_initialized():
        yield world()
        return
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
    try:
        yield world()
        dist.barrier()  # no rank tears its connections down while another is still using them
    finally:
        gc.collect()  # DDP wrappers caught in reference cycles still hold the group: free them while it exists
        dist.destroy_process_group()


def rank_seed(seed: int, rank: int, epoch: int = 0) -> int:
    """The loss generator's seed of ``rank`` (rank 0 at epoch 0: one process's ``seed + 2``)."""
    if rank == 0 and epoch == 0:
        return int(seed) + 2
    return int(np.random.SeedSequence([int(seed), 2, int(rank), int(epoch)]).generate_state(1, np.uint64)[0] >> 1)


class _LossCall(nn.Module):
    """What DDP runs as forward(): the module's loss, its gradient (not its value) scaled by ``weight``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *batch: Tensor, weight: float = 1.0, **kwargs) -> Tensor:
        loss = cast(Callable[..., Tensor], self.module.loss)(*batch, **kwargs)
        return loss if weight == 1.0 else loss * weight - loss.detach() * (weight - 1.0)


class _Shards:
    """Rank ``rank``'s share of every global batch of ``source``; validation and warm-start rows are whole."""

    def __init__(self, source, rank: int, size: int) -> None:
        self.source, self.rank, self.size = source, rank, size
        self.n = source.n
        self.weight = 1.0

    def train_batches(self, shuffle: torch.Generator) -> Iterator[tuple[Tensor, ...]]:
        for batch in self.source.train_batches(shuffle):
            m = len(batch[0])
            lo, hi = m * self.rank // self.size, m * (self.rank + 1) // self.size
            if hi > lo:
                self.weight = self.size * (hi - lo) / m
                yield tuple(t[lo:hi] for t in batch)
            else:  # fewer rows than ranks: take part with no weight (every rank must run the step)
                self.weight = 0.0
                yield tuple(t[:1] for t in batch)

    def val_batches(self) -> Iterator[tuple[Tensor, ...]]:
        return self.source.val_batches()

    def warm_rows(self, k: int | None) -> tuple[Tensor, ...]:
        return self.source.warm_rows(k)


class DataParallel:
    """One rank's part of a data-parallel fit (module docstring); made by :func:`data_parallel`."""

    def __init__(self, module: nn.Module, source, seed: int, device: torch.device) -> None:
        self.rank, self.size = world()
        self.seed, self.device = seed, device
        self.shards = _Shards(source, self.rank, self.size)
        ids = (
            [device.index if device.index is not None else torch.cuda.current_device()]
            if device.type == "cuda"
            else None
        )
        # rank 0's weights and buffers are broadcast here, so every rank starts from them
        self.ddp = nn.parallel.DistributedDataParallel(_LossCall(module), device_ids=ids)
        self._comm = torch.device("cuda", ids[0]) if ids else torch.device("cpu")

    def loss(self, *batch: Tensor, **kwargs) -> Tensor:
        """The training loss of this rank's share, through DDP (gradients averaged over the ranks in backward)."""
        return self.ddp(*batch, weight=self.shards.weight, **kwargs)

    def elapsed(self, t0: float) -> float:
        """Seconds since ``t0`` on rank 0's clock (a collective: every rank calls it at the same point)."""
        t = torch.tensor([time.perf_counter() - t0], dtype=torch.float64, device=self._comm)
        dist.broadcast(t, 0)
        return float(t.item())

    def generator_states(self, generator: torch.Generator) -> dict[str, torch.Generator] | None:
        """Every rank's loss generator, as ``{"loss_rank<r>": generator}`` for r > 0, on rank 0 (None on the
        others, which do not write); a collective."""
        states: list = [None] * self.size
        dist.all_gather_object(states, generator.get_state())
        if self.rank != 0:
            return None
        out = {}
        for r, state in enumerate(states[1:], start=1):
            out[f"loss_rank{r}"] = torch.Generator(device=generator.device)
            out[f"loss_rank{r}"].set_state(state)
        return out

    def restore(self, checkpoint, generator: torch.Generator, epochs: int) -> None:
        """After a resume: rank r > 0 takes its own loss generator from the checkpoint, or derives one."""
        if self.rank > 0 and not checkpoint.restore_generator(f"loss_rank{self.rank}", generator):
            generator.manual_seed(rank_seed(self.seed, self.rank, epochs))


def data_parallel(run) -> DataParallel | None:
    """Make ``run`` (fit's state: module, source, generators) data-parallel when a process group of more than
    one rank is initialised; None otherwise (one process: nothing changes).

    Raises:
        TypeError: the module has its own ``training_step`` (not supported data-parallel).
    """
    rank, size = world()
    if size == 1:
        return None
    if hasattr(run.module, "training_step"):
        raise TypeError(
            f"{type(run.module).__name__} trains through its own training_step (several optimizers or an "
            "adversarial pair), which data-parallel fit does not support; train it in one process"
        )
    par = DataParallel(run.module, run.source, run.seed, run.generator.device)
    run.source = par.shards
    run.best_state = copy.deepcopy(run.module.state_dict())  # rank 0's, broadcast by DDP
    if rank > 0:
        run.generator.manual_seed(rank_seed(run.seed, rank))
    return par
