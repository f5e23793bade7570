"""fit's optimizers and learning-rate schedules.

``optimizer`` (fit's argument) is one of:

* None: AdamW over all parameters with fit's ``lr`` and ``weight_decay`` (the fused kernel where every
  parameter is real floating point on CPU or CUDA);
* a factory ``params -> Optimizer`` (``params``: the list of the module's parameters), e.g.
  ``lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)``; fit's ``lr`` and ``weight_decay`` are then unused;
* a dict ``name -> factory(module) -> Optimizer`` for several optimizers over parts of the module
  (an adversarial pair: ``{"generator": lambda m: Adam(m.gen.parameters()), "critic": ...}``); the module's
  ``training_step`` receives them by name.

A single optimizer is named ``"model"``. Each optimizer gets its own schedule: ``"plateau"`` (halve the
rate after ``max(1, patience // 2)`` epochs without a better validation loss), ``"cosine"`` (cosine decay
to 0 over the budget: ``max_epochs`` epochs, or ``max_time`` seconds when that comes first, :class:`BudgetCosine`)
or None.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["build_optimizers", "build_schedulers", "step_schedulers", "BudgetCosine", "SCHEDULES"]

SCHEDULES = ("plateau", "cosine", None)


def _check(opt, name: str) -> torch.optim.Optimizer:
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"the optimizer factory {name!r} returned {type(opt).__name__}, not a torch.optim.Optimizer")
    return opt


def build_optimizers(
    module: nn.Module,
    optimizer: Callable | Mapping[str, Callable] | None,
    *,
    lr: float,
    weight_decay: float,
    device: torch.device,
) -> dict[str, torch.optim.Optimizer]:
    """name -> optimizer for ``module`` (see the module docstring)."""
    if optimizer is None:
        params = list(module.parameters())
        fused = device.type in ("cpu", "cuda") and all(p.is_floating_point() for p in params)
        return {"model": torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)}
    if isinstance(optimizer, Mapping):
        if not optimizer:
            raise ValueError("optimizer is an empty dict; give name -> factory(module) entries")
        out = {}
        for name, factory in optimizer.items():
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(f"optimizer names must be non-empty strings without '.'; got {name!r}")
            out[name] = _check(factory(module), name)
        return out
    if callable(optimizer):
        return {"model": _check(optimizer(list(module.parameters())), "model")}
    raise TypeError(
        f"optimizer must be None (AdamW), a factory params -> Optimizer, or a dict name -> factory(module); "
        f"got {type(optimizer).__name__}"
    )


class BudgetCosine(LRScheduler):
    """Cosine decay over a budget of epochs and seconds: after each epoch the rate is
    ``base_lr (1 + cos(π p)) / 2`` with p = max(epochs done / ``max_epochs``, seconds spent / ``max_time``),
    capped at 1: the fraction of the budget spent, whichever limit comes first. Without ``max_time`` it is
    the cosine over ``max_epochs`` epochs. Its state (epochs and progress) goes into checkpoints as JSON."""

    def __init__(self, optimizer: torch.optim.Optimizer, max_epochs: int, max_time: float | None = None) -> None:
        self.max_epochs, self.max_time, self.progress = int(max_epochs), max_time, 0.0
        super().__init__(optimizer)

    def get_lr(self) -> list[float | torch.Tensor]:
        f = 0.5 * (1.0 + math.cos(math.pi * min(1.0, self.progress)))
        return [base * f for base in self.base_lrs]

    def step(self, seconds: float | None = None) -> None:
        """Advance by one epoch, ``seconds`` into the run (the time term counts only with ``max_time``)."""
        p = max(0, self.last_epoch + 1) / max(1, self.max_epochs)
        if seconds is not None and self.max_time:
            p = max(p, float(seconds) / float(self.max_time))
        self.progress = p
        super().step()

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a checkpoint's state (epochs, progress), keeping this run's budget: a resume with a larger
        ``max_time`` continues over the new budget."""
        budget = self.max_epochs, self.max_time
        super().load_state_dict(state_dict)
        self.max_epochs, self.max_time = budget


def build_schedulers(
    optimizers: Mapping[str, torch.optim.Optimizer],
    schedule: str | None,
    *,
    patience: int,
    max_epochs: int,
    max_time: float | None = None,
) -> dict[str, LRScheduler]:
    """name -> scheduler (none for ``schedule=None``); ``"cosine"`` spans ``max_epochs`` epochs, or ``max_time``
    seconds when given and reached first (:class:`BudgetCosine`)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be 'plateau', 'cosine' or None; got {schedule!r}")
    if schedule == "plateau":
        return {
            k: torch.optim.lr_scheduler.ReduceLROnPlateau(o, factor=0.5, patience=max(1, patience // 2))
            for k, o in optimizers.items()
        }
    if schedule == "cosine":
        return {k: BudgetCosine(o, max_epochs, max_time) for k, o in optimizers.items()}
    return {}


def step_schedulers(schedulers: Mapping[str, LRScheduler], val_loss: float, seconds: float | None = None) -> None:
    """One epoch's step of every scheduler (the plateau schedule reads the validation loss, the budget cosine
    the seconds spent)."""
    for s in schedulers.values():
        if isinstance(s, torch.optim.lr_scheduler.ReduceLROnPlateau):
            s.step(val_loss)
        elif isinstance(s, BudgetCosine):
            s.step(seconds)
        else:
            s.step()
