"""One training loop for every family: ``fit(module, data)`` minimises ``module.loss(*batch)``.

Hooks looked up on the module (declared in :class:`physgen.core.Trainable`), nothing else:

* ``loss(*batch) -> scalar``, called with ``generator=`` (the run's explicit generator) when it takes that keyword;
* optional ``warm_start(*tensors)``: called once before the first epoch (not on resume) with up to
  ``warm_start_rows`` rows of the training split; the warm-started state competes for "best";
* optional ``training_step(batch, optimizers, *, generator) -> float``: replaces the default
  zero_grad / backward / clip / step (so several optimizers, an adversarial pair, train through fit).

Randomness: the validation split and the shuffling come from generators seeded by ``seed``; the loss receives an
explicit generator (on the training device) seeded by ``seed``, and validation losses a generator re-seeded the same
way at every validation pass (so epochs are compared on the same noise). Draws from torch's global RNG (dropout, a
loss without a ``generator`` keyword) happen inside a fork of that RNG seeded by ``seed``: the caller's RNG is left as
it was. A checkpoint holds all these states: a resumed run is bit-identical to an uninterrupted one (same device).

A step whose loss is finite but whose gradient norm is not (checked with ``clip_norm`` set) is skipped, counted in
the epoch's history entry (``skipped_steps``) and warned about; ``MAX_SKIPPED_IN_A_ROW`` in a row raise
TrainingError, as a non-finite loss does.

``max_time`` is checked before every batch: the epoch in progress is cut short (recorded in the history with
``"partial": True``), validated and checkpointed. On several ranks (torchrun): data-parallel, :mod:`.ddp`.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from physgen.checks import check_fit_options, check_training_data
from physgen.train.checkpoint import Checkpoint
from physgen.train.ddp import data_parallel
from physgen.train.device import auto_threads, num_threads as _threads, resolve_device
from physgen.train.ema import WeightAverage
from physgen.train.optim import build_optimizers, build_schedulers, step_schedulers
from physgen.train.progress import EpochProgress
from physgen.train.resume import fingerprint as _fingerprint, settings as _settings
from physgen.train.sources import make_source
from physgen.train.state import Batch, FitResult, TrainingError, TrainingRun, restore_run

__all__ = ["fit", "FitResult", "TrainingError", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "checkpoint.safetensors"
MAX_SKIPPED_IN_A_ROW = 10  # consecutive steps with a non-finite gradient norm before a fit stops
Callback = Callable[[int, nn.Module, "FitResult"], "bool | None"]


def fit(
    module: nn.Module,
    data,
    *,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    max_epochs: int = 1000,
    patience: int = 20,
    min_delta: float = 0.0,
    validation_fraction: float = 0.1,
    validation_split: str = "random",
    clip_norm: float | None = 5.0,
    schedule: str | None = "plateau",
    max_time: float | None = None,
    device: str | torch.device = "auto",
    seed: int = 0,
    progress: bool = True,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    num_threads: int | str | None = "auto",
    ema: float | None = None,
    optimizer: Callable | Mapping[str, Callable] | None = None,
    callbacks: Sequence[Callback] = (),
    warm_start_rows: int | None = None,
    restart: bool = False,
) -> FitResult:
    """Train ``module`` by minimising ``module.loss(*batch)`` over mini-batches of ``data``.

    Args:
        module: an nn.Module with ``loss(*batch) -> scalar`` (hooks: the module docstring).
        data: tensors with the same first dimension n (e.g. ``(theta (n, D), x (n, *x_shape))``), a torch
            ``Dataset`` of tuples, an ``IterableDataset`` of rows, or a :class:`physgen.data.SimulationSet`
            (batches ``(theta, x)``), in memory or lazy (read chunk by chunk; :mod:`physgen.train.sources`).
        batch_size, lr, weight_decay: mini-batch rows; AdamW's settings (weight_decay=0 is Adam).
        max_epochs: upper bound on epochs.
        patience: stop after this many epochs without a validation loss better by more than ``min_delta``.
        min_delta: only a validation loss lower by more than this restarts the patience count (the best
            weights still follow every improvement).
        validation_fraction: share of rows (of chunks, for lazy data) held out; at least one each side.
        validation_split: ``"random"`` (a seeded permutation) or ``"stable"`` (each row's side fixed by a
            seeded hash of its index, whatever the number of rows: for continued training on data grown by
            appending rows, where a random split would score the network on rows it has trained on).
        clip_norm: gradient-norm clipping of the default step (None = off).
        schedule: "plateau" (halve lr after patience // 2 flat epochs), "cosine" (to 0 over max_epochs, or over
            max_time when that is set and comes first) or None; per optimizer.
        max_time: wall-clock budget in seconds for training, checked before every batch.
        device: "auto" (CUDA when available), "cpu", "cuda", ...
        seed: seeds the split, the shuffling, the loss's generator and torch's (forked) global RNG.
        progress: a tqdm bar on a terminal, else one log line per epoch (at most one every 5 s, the
            ``physgen.train`` logger, :mod:`physgen.train.progress`); False is silent.
        checkpoint_dir: write ``checkpoint.safetensors`` there after every epoch.
        resume: continue from ``checkpoint_dir``'s checkpoint if one exists; its settings must be this call's
            (:mod:`physgen.train.resume`; a difference is a TrainingError naming it).
        restart: with ``resume``, replace a checkpoint of other settings (or an unreadable one) by a fresh run.
        num_threads: CPU threads while training (restored afterwards). "auto": one thread on CPU for
            models under a million parameters, torch's setting otherwise; None keeps torch's setting.
        ema: decay per optimiser step of a moving average of the weights (e.g. 0.995; None = off).
            Validation, early stopping, callbacks and the returned weights use the average.
        optimizer: None (AdamW), a factory ``params -> Optimizer``, or a dict ``name -> factory(module)``
            (:mod:`physgen.train.optim`).
        callbacks: called after each epoch as ``callback(epoch, module, result)`` with the weights just
            validated in the module (eval mode); one that returns True stops training ("callback").
        warm_start_rows: rows given to ``module.warm_start`` (None: the whole training split in memory,
            about 64 MiB of rows for lazy or streamed data).

    Returns:
        FitResult; the module holds the best (lowest validation loss) weights, in eval mode.

    Raises:
        TrainingError: non-finite loss/gradients, or a checkpoint of another model, data set or setting (named).
        physgen.io.CheckpointError: an unreadable checkpoint, or one of an older format (named).
        ValueError, TypeError: an argument outside its domain (physgen.checks.FIT_DOMAINS) or bad data (named).
    """
    options: dict[str, Any] = dict(
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        patience=patience,
        min_delta=min_delta,
        validation_fraction=validation_fraction,
        clip_norm=clip_norm,
        seed=seed,
        ema=ema,
        warm_start_rows=warm_start_rows,
    )  # the settings a resume must match (physgen.train.resume)
    if validation_split != "random":  # recorded only when set, so checkpoints written before it still resume
        options["validation_split"] = validation_split
    check_fit_options(max_epochs=max_epochs, max_time=max_time, **options)
    if isinstance(data, (tuple, list)):
        check_training_data(*data, names=tuple(f"data[{i}]" for i in range(len(data))))
    elif torch.is_tensor(getattr(data, "theta", None)) and torch.is_tensor(getattr(data, "x", None)):
        check_training_data(data.theta, data.x)  # an in-memory SimulationSet
    dev = resolve_device(device)
    module.to(dev)
    threads = auto_threads(num_threads, module, dev)
    source = make_source(
        data,
        validation_fraction=validation_fraction,
        seed=seed,
        device=dev,
        batch_size=batch_size,
        validation_split=validation_split,
    )
    optimizers = build_optimizers(module, optimizer, lr=lr, weight_decay=weight_decay, device=dev)
    run = TrainingRun(
        module=module,
        source=source,
        optimizers=optimizers,
        schedulers=build_schedulers(optimizers, schedule, patience=patience, max_epochs=max_epochs, max_time=max_time),
        shuffle=torch.Generator().manual_seed(seed + 1),
        generator=torch.Generator(device=dev).manual_seed(seed + 2),
        val_generator=torch.Generator(device=dev),
        average=None,
        result=FitResult(),
        best_state=copy.deepcopy(module.state_dict()),
        fingerprint=_fingerprint(module, source.n),
        ema=ema,
        seed=seed,
        ckpt_path=Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None,
        settings=_settings(
            module,
            data,
            source.n,
            **options,
            schedule=schedule,
            optimizer=optimizer and "custom",
            max_epochs=max_epochs if schedule == "cosine" else None,
        ),
    )
    ckpt: Checkpoint | None = None
    run.parallel = data_parallel(run)  # data-parallel on several ranks (physgen.train.ddp)
    if resume and run.ckpt_path is not None and run.ckpt_path.exists():
        ckpt = restore_run(run, restart)
    if ckpt is not None:
        if run.result.stopped in ("early_stopping", "callback") or run.result.epochs >= max_epochs:
            module.load_state_dict(run.best_state)
            module.eval()
            return run.result
        run.result.stopped = ""  # a run stopped by max_epochs/max_time continues with the new limits

    devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), _threads(threads):
        if ckpt is None:  # seed the forked RNGs only (torch.manual_seed would reseed every CUDA device)
            torch.default_generator.manual_seed(seed)
            for i in devices:
                with torch.cuda.device(i):
                    torch.cuda.manual_seed(seed)
            warm_start = getattr(module, "warm_start", None)  # an optional hook (physgen.core.Trainable)
            if warm_start is not None:
                warm_start(*source.warm_rows(warm_start_rows))
                module.eval()
                run.result.best_val_loss = run.result.patience_loss = run.val_loss()
                run.best_state = copy.deepcopy(module.state_dict())
            if ema is not None:
                run.average = WeightAverage(module, ema)  # the average starts from the warm-started weights
        else:
            ckpt.restore_rng(devices)
        try:
            _loop(
                run,
                max_epochs=max_epochs,
                patience=patience,
                min_delta=min_delta,
                clip_norm=clip_norm,
                max_time=max_time,
                progress=progress and not getattr(run.parallel, "rank", 0),
                callbacks=callbacks,
            )
        finally:  # after a TrainingError (a non-finite loss) too: the best weights, not the diverged ones
            module.load_state_dict(run.best_state)
            module.eval()
    return run.result


def _step(run: TrainingRun, batch: Batch, clip_norm: float | None, epoch: int) -> float | None:
    """One optimisation step on ``batch``; returns its loss, or None for a step skipped because the gradient
    norm was not finite (the loss was: the weights stay as they were)."""
    module = run.module
    training_step = getattr(module, "training_step", None)  # an optional hook (physgen.core.Trainable)
    if training_step is not None:
        value = float(training_step(batch, run.optimizers, generator=run.generator))
        if not math.isfinite(value):
            raise TrainingError(
                f"non-finite training loss ({value}) from training_step at epoch {epoch}; lower the "
                "learning rates or check the data. The last good checkpoint is kept."
            )
        return value
    loss = run.loss(batch, run.generator, train=True)
    value = loss.item()
    if not math.isfinite(value):
        where = f" at {run.ckpt_path}" if run.ckpt_path else ""
        raise TrainingError(
            f"non-finite training loss ({value}) at epoch {epoch}; lower lr or check the data for "
            f"extreme values. The last good checkpoint is kept{where}."
        )
    for opt in run.optimizers.values():
        opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip_norm is not None:
        gnorm = torch.nn.utils.clip_grad_norm_(module.parameters(), clip_norm)
        if not torch.isfinite(gnorm):  # an overflow on one batch: skip the update, as a gradient scaler does
            for opt in run.optimizers.values():
                opt.zero_grad(set_to_none=True)
            return None
    for opt in run.optimizers.values():
        opt.step()
    return value


def _loop(run: TrainingRun, *, max_epochs, patience, min_delta, clip_norm, max_time, progress, callbacks) -> None:
    result, module = run.result, run.module
    t0 = time.perf_counter() - result.seconds
    start, in_a_row = result.epochs, 0
    bar = EpochProgress(progress, total=max_epochs, initial=start)
    for epoch in range(start, max_epochs):
        t_epoch = time.perf_counter()
        module.train()
        total, rows, partial, skipped = 0.0, 0, False, 0
        for i, batch in enumerate(run.source.train_batches(run.shuffle)):
            if i > 0 and max_time is not None and run.elapsed(t0) >= max_time:
                partial = True
                break
            value = _step(run, batch, clip_norm, epoch)
            if value is None:
                skipped, in_a_row = skipped + 1, in_a_row + 1
                if in_a_row >= MAX_SKIPPED_IN_A_ROW:
                    raise TrainingError(
                        f"non-finite gradient norm on {in_a_row} batches in a row at epoch {epoch}; lower lr or "
                        "check the data. The best validated weights are kept."
                    )
                continue
            in_a_row = 0
            total += value * len(batch[0])
            rows += len(batch[0])
            if run.average is not None:
                run.average.update()
        module.eval()
        stop_asked = False
        with run.average.swapped() if run.average is not None else contextlib.nullcontext():
            val_loss = run.val_loss()
            if not math.isfinite(val_loss):
                raise TrainingError(f"non-finite validation loss at epoch {epoch}; lower lr or check the data.")
            if val_loss < result.best_val_loss:
                run.best_state = copy.deepcopy(module.state_dict())
                result.best_val_loss, result.best_epoch = val_loss, epoch
            result.seconds = run.elapsed(t0)
            step_schedulers(run.schedulers, val_loss, result.seconds)
            entry = {
                "epoch": epoch,
                "train_loss": total / rows if rows else math.nan,
                "val_loss": val_loss,
                "lr": next(iter(run.optimizers.values())).param_groups[0]["lr"],
                "seconds": time.perf_counter() - t_epoch,
            }
            if partial:
                entry["partial"] = True
            if skipped:
                entry["skipped_steps"] = skipped
                warnings.warn(
                    f"epoch {epoch}: {skipped} step(s) skipped for a non-finite gradient norm (recorded in "
                    "fit_result.history); lower lr if this recurs",
                    RuntimeWarning,
                    stacklevel=3,
                )
            result.history.append(entry)
            if val_loss < result.patience_loss - min_delta:
                result.patience_loss, result.patience_epoch = val_loss, epoch
            for cb in callbacks:
                stop_asked = bool(cb(epoch, module, result)) or stop_asked
        if partial:
            result.stopped = "max_time"
        elif stop_asked:
            result.stopped = "callback"
        elif epoch - result.patience_epoch >= patience:
            result.stopped = "early_stopping"
        elif epoch + 1 >= max_epochs:
            result.stopped = "max_epochs"
        elif max_time is not None and result.seconds >= max_time:
            result.stopped = "max_time"
        run.save()
        bar.epoch(entry, result.best_val_loss, result.seconds)
        if result.stopped:
            break
    bar.close()
    if not result.stopped:
        result.stopped = "max_epochs"
