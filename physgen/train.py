"""One training loop for every family: ``fit(module, data)`` minimises ``module.loss(*batch)``.

Features: Adam(W) with weight decay, a learning-rate schedule (reduce-on-plateau or cosine),
gradient-norm clipping, a validation split with early stopping (the best weights are
restored at the end), a tqdm progress bar that ``progress=False`` silences, a checkpoint
every epoch (one safetensors file holding the weights, the optimizer state, the best
weights and the RNG state, plus the history as JSON) and ``resume=True``, which continues an
interrupted run from its last finished epoch. ``device="auto"`` picks CUDA when available;
data are moved to the device once.

Non-finite losses stop training with :class:`TrainingError`; the last checkpoint (the last
good epoch) is kept.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from physgen.io import load_file, save_file

__all__ = ["fit", "FitResult", "TrainingError", "resolve_device", "num_threads"]

CHECKPOINT_NAME = "checkpoint.safetensors"


class TrainingError(RuntimeError):
    """Training cannot continue (non-finite loss or gradients, incompatible checkpoint)."""


@dataclass
class FitResult:
    """What :func:`fit` did. ``history`` holds one dict per epoch (train_loss, val_loss, lr, seconds).

    ``patience_epoch``/``patience_loss``: the last epoch (and its loss) that beat the previous one by more
    than ``min_delta``; early stopping counts epochs from there.
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


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> cuda if available, else cpu; anything else is passed to torch.device."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextlib.contextmanager
def num_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op CPU threads (restored on exit); None leaves them alone."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _fingerprint(module: nn.Module, n: int) -> str:
    shapes = [(k, tuple(v.shape)) for k, v in module.state_dict().items()]
    return hashlib.sha1(json.dumps([shapes, n]).encode()).hexdigest()[:16]


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], list]:
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"opt.{idx}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return tensors, sd["param_groups"]


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], groups: list, device) -> None:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = v.to(device) if name != "step" else v
    opt.load_state_dict({"state": state, "param_groups": groups})


class _WeightAverage:
    """Exponential moving average of a module's parameters (buffers are not averaged).

    ``update()`` after each optimiser step moves the average towards the current weights by
    ``1 - min(decay, (1 + t) / (10 + t))`` (t = updates so far; the warm-up lets early averages track
    the fast-moving weights). ``swapped()`` puts the averaged weights into the module for a while.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay, self.steps = decay, 0
        named = [(k, p) for k, p in module.named_parameters() if p.requires_grad]
        self.names = [k for k, _ in named]
        self.params = [p.detach() for _, p in named]  # views: they follow the optimiser's in-place updates
        self.shadow = [p.clone() for p in self.params]

    def update(self) -> None:
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        self.steps += 1
        torch._foreach_lerp_(self.shadow, self.params, 1.0 - d)

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        live = [p.clone() for p in self.params]
        torch._foreach_copy_(self.params, self.shadow)
        try:
            yield
        finally:
            torch._foreach_copy_(self.params, live)

    def tensors(self) -> dict[str, Tensor]:
        return {f"ema.{k}": v for k, v in zip(self.names, self.shadow)}

    def load(self, tensors: dict[str, Tensor], steps: int) -> None:
        self.shadow = [tensors[f"ema.{k}"].to(p.device) for k, p in zip(self.names, self.params)]
        self.steps = steps


def _batches(n: int, batch_size: int, generator: torch.Generator | None, device) -> Iterator[Tensor]:
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    order = order.to(device)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def fit(
    module: nn.Module,
    data: Sequence[Tensor],
    *,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    max_epochs: int = 1000,
    patience: int = 20,
    min_delta: float = 0.0,
    validation_fraction: float = 0.1,
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
) -> FitResult:
    """Train ``module`` by minimising ``module.loss(*batch)`` over mini-batches of ``data``.

    Args:
        module: an nn.Module with ``loss(*tensors) -> scalar``.
        data: tensors with the same first dimension n (e.g. ``(theta (n, D), x (n, *x_shape))``).
        batch_size, lr, weight_decay: optimiser settings (AdamW; weight_decay=0 is Adam).
        max_epochs: upper bound on epochs.
        patience: stop after this many epochs without a better validation loss.
        min_delta: only a validation loss lower by more than this restarts the patience count (the best
            weights still follow every improvement); > 0 ends long, slowly creeping runs sooner.
        validation_fraction: share of rows held out (at least one row each side).
        clip_norm: gradient-norm clipping (None = off).
        schedule: "plateau" (halve lr after patience//2 flat epochs), "cosine" or None.
        max_time: wall-clock budget in seconds (stops after the epoch that crosses it).
        device: "auto", "cpu", "cuda", ...
        seed: seeds the split, the shuffling and the module's stochastic losses.
        progress: show a tqdm bar.
        checkpoint_dir: write ``checkpoint.safetensors`` there after every epoch.
        resume: continue from ``checkpoint_dir``'s checkpoint if one exists.
        num_threads: CPU threads during training (restored afterwards). "auto": one thread on CPU for
            models under a million parameters (small networks gain nothing from more threads and
            lose badly when cores are shared; measured in docs/benchmarks.md), torch's setting
            otherwise; None keeps torch's setting.
        ema: decay of an exponential moving average of the weights, updated after every optimiser
            step (e.g. 0.995; None = off). Validation, early stopping and the returned weights then
            use the averaged weights, a cheap ensemble along the optimisation path.

    Returns:
        FitResult; the module holds the best (lowest validation loss) weights, in eval mode.

    Raises:
        TrainingError: non-finite loss/gradients or a checkpoint from another run.
    """
    n = int(data[0].shape[0])
    if any(int(t.shape[0]) != n for t in data):
        raise ValueError(f"all data tensors need the same first dimension; got {[tuple(t.shape) for t in data]}")
    if n < 2:
        raise ValueError(f"fit needs at least 2 rows (one for validation); got {n}")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1); got {validation_fraction}")
    if ema is not None and not 0.0 <= ema < 1.0:
        raise ValueError(f"ema is a decay per optimiser step in [0, 1) (e.g. 0.995) or None; got {ema}")
    if not min_delta >= 0.0:
        raise ValueError(f"min_delta must be >= 0; got {min_delta}")
    if schedule not in ("plateau", "cosine", None):
        raise ValueError(f"schedule must be 'plateau', 'cosine' or None; got {schedule!r}")
    dev = resolve_device(device)
    module.to(dev)
    if num_threads == "auto":
        small = sum(p.numel() for p in module.parameters()) < 1_000_000
        num_threads = 1 if (dev.type == "cpu" and small) else None
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None

    split = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=split)
    n_val = min(max(1, int(round(validation_fraction * n))), n - 1)
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    train = [t[train_idx].to(dev) for t in data]
    val = [t[val_idx].to(dev) for t in data]

    # the fused kernel is 15% faster per step for small CPU networks (torch's CPU default is a per-tensor loop)
    fused = dev.type in ("cpu", "cuda") and all(p.is_floating_point() for p in module.parameters())
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay, fused=fused or None)
    if schedule == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=max(1, patience // 2))
    elif schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max_epochs)
    else:
        sched = None
    shuffle = torch.Generator().manual_seed(seed + 1)
    result = FitResult()
    best_state = copy.deepcopy(module.state_dict())
    start_epoch = 0
    rng_torch: Tensor | None = None
    average = _WeightAverage(module, ema) if ema is not None else None
    fingerprint = _fingerprint(module, n)

    if resume and ckpt_path is not None and ckpt_path.exists():
        tensors, meta = load_file(ckpt_path, kind="checkpoint")
        cfg = meta["config"]
        if cfg.get("fingerprint") != fingerprint:
            raise TrainingError(
                f"{ckpt_path} belongs to a different model or data set (fingerprint {cfg.get('fingerprint')} != "
                f"{fingerprint}); use another checkpoint_dir or resume=False"
            )
        module.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        best_state = {k[5:]: v.to(dev) for k, v in tensors.items() if k.startswith("best.")}
        _restore_optimizer(opt, tensors, cfg["param_groups"], dev)
        if sched is not None and cfg.get("scheduler"):
            sched.load_state_dict(cfg["scheduler"])
        shuffle.set_state(tensors["rng.shuffle"])
        rng_torch = tensors["rng.torch"]
        result = FitResult(**cfg["result"])
        if "patience_epoch" not in cfg["result"]:  # checkpoints written before min_delta existed
            result.patience_epoch, result.patience_loss = result.best_epoch, result.best_val_loss
        start_epoch = result.epochs
        if (cfg.get("ema_steps") is None) != (average is None):
            raise TrainingError(f"{ckpt_path} was written {'without' if average is not None else 'with'} ema; "
                                "resume with the same ema setting")
        if average is not None:
            average.load(tensors, cfg["ema_steps"])
        if result.stopped == "early_stopping" or result.epochs >= max_epochs:
            module.load_state_dict(best_state)
            module.eval()
            return result
        result.stopped = ""  # a run stopped by max_epochs/max_time continues with the new limits

    if start_epoch == 0 and hasattr(module, "warm_start"):
        # data-dependent initialisation on the training split; the initial state competes for "best"
        # (best_epoch -1) so that a warm start good enough to be overfitted from is kept
        module.warm_start(*train)
        module.eval()
        result.best_val_loss = result.patience_loss = _mean_loss(module, val, max(batch_size, 1024))
        best_state = copy.deepcopy(module.state_dict())
        if average is not None:
            average = _WeightAverage(module, ema)  # the average starts from the warm-started weights
    # Stochastic losses (flow matching, diffusion, dropout) draw from torch's global RNG; fork it so
    # that training is reproducible for a given seed without changing the caller's RNG stream.
    devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), _threads(num_threads):
        if rng_torch is None:
            torch.manual_seed(seed)
        else:
            torch.set_rng_state(rng_torch)
        result = _loop(
            module, train, val, opt, sched, shuffle, result, best_state, start_epoch, average,
            batch_size=batch_size, max_epochs=max_epochs, patience=patience, min_delta=min_delta, clip_norm=clip_norm,
            max_time=max_time, progress=progress, ckpt_path=ckpt_path, fingerprint=fingerprint, dev=dev,
        )
    return result


_threads = num_threads


def _mean_loss(module: nn.Module, tensors: list[Tensor], batch_size: int) -> float:
    total, count = 0.0, 0
    with torch.no_grad():
        for idx in _batches(tensors[0].shape[0], batch_size, None, tensors[0].device):
            loss = module.loss(*(t[idx] for t in tensors))
            total += loss.item() * len(idx)
            count += len(idx)
    return total / count


def _loop(module, train, val, opt, sched, shuffle, result, best_state, start_epoch, average, *, batch_size, max_epochs,
          patience, min_delta, clip_norm, max_time, progress, ckpt_path, fingerprint, dev) -> FitResult:
    from tqdm.auto import tqdm

    t0 = time.perf_counter() - result.seconds
    n_train = train[0].shape[0]
    bar = tqdm(range(start_epoch, max_epochs), disable=not progress, desc="fit", unit="epoch", leave=False)
    for epoch in bar:
        t_epoch = time.perf_counter()
        module.train()
        total = 0.0
        for idx in _batches(n_train, batch_size, shuffle, dev):
            loss = module.loss(*(t[idx] for t in train))
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"non-finite training loss ({loss.detach().item()}) at epoch {epoch}; lower lr or check the data for "
                    f"extreme values. The last good checkpoint is kept{f' at {ckpt_path}' if ckpt_path else ''}."
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip_norm is not None:
                gnorm = torch.nn.utils.clip_grad_norm_(module.parameters(), clip_norm)
                if not torch.isfinite(gnorm):
                    raise TrainingError(f"non-finite gradient norm at epoch {epoch}; lower lr or check the data.")
            opt.step()
            if average is not None:
                average.update()
            total += loss.item() * len(idx)
        module.eval()
        with average.swapped() if average is not None else contextlib.nullcontext():
            val_loss = _mean_loss(module, val, max(batch_size, 1024))
            improved = val_loss < result.best_val_loss
            if improved:
                best_state = copy.deepcopy(module.state_dict())
        if not math.isfinite(val_loss):
            raise TrainingError(f"non-finite validation loss at epoch {epoch}; lower lr or check the data.")
        if sched is not None:
            sched.step(val_loss) if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau) else sched.step()
        result.history.append(
            {"epoch": epoch, "train_loss": total / n_train, "val_loss": val_loss,
             "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t_epoch}
        )
        if improved:
            result.best_val_loss, result.best_epoch = val_loss, epoch
        if val_loss < result.patience_loss - min_delta:  # epoch -1: the initial (warm-started) state
            result.patience_loss, result.patience_epoch = val_loss, epoch
        result.seconds = time.perf_counter() - t0
        if epoch - result.patience_epoch >= patience:
            result.stopped = "early_stopping"
        elif epoch + 1 >= max_epochs:
            result.stopped = "max_epochs"
        elif max_time is not None and result.seconds >= max_time:
            result.stopped = "max_time"
        bar.set_postfix(train=f"{total / n_train:.4f}", val=f"{val_loss:.4f}", best=f"{result.best_val_loss:.4f}")
        if ckpt_path is not None:
            _save_checkpoint(ckpt_path, module, opt, sched, shuffle, best_state, result, fingerprint, average)
        if result.stopped:
            break
    bar.close()
    if not result.stopped:
        result.stopped = "max_epochs"
    module.load_state_dict(best_state)
    module.eval()
    return result


def _save_checkpoint(path, module, opt, sched, shuffle, best_state, result, fingerprint, average) -> None:
    opt_tensors, groups = _optimizer_tensors(opt)
    tensors = {f"model.{k}": v for k, v in module.state_dict().items()}
    tensors.update({f"best.{k}": v for k, v in best_state.items()})
    tensors.update(opt_tensors)
    if average is not None:
        tensors.update(average.tensors())
    tensors["rng.shuffle"] = shuffle.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    config = {
        "fingerprint": fingerprint,
        "param_groups": groups,
        "scheduler": _jsonable(sched.state_dict()) if sched is not None else None,
        "result": asdict(result),
        "ema_steps": average.steps if average is not None else None,
    }
    save_file(path, tensors, kind="checkpoint", config=config)


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=lambda o: o.item() if torch.is_tensor(o) else str(o)))
