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
to 0 over ``max_epochs`` epochs) or None.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["build_optimizers", "build_schedulers", "step_schedulers", "SCHEDULES"]

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


def build_schedulers(
    optimizers: Mapping[str, torch.optim.Optimizer], schedule: str | None, *, patience: int, max_epochs: int
) -> dict[str, LRScheduler]:
    """name -> scheduler (none for ``schedule=None``)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be 'plateau', 'cosine' or None; got {schedule!r}")
    if schedule == "plateau":
        return {
            k: torch.optim.lr_scheduler.ReduceLROnPlateau(o, factor=0.5, patience=max(1, patience // 2))
            for k, o in optimizers.items()
        }
    if schedule == "cosine":
        return {k: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=max_epochs) for k, o in optimizers.items()}
    return {}


def step_schedulers(schedulers: Mapping[str, LRScheduler], val_loss: float) -> None:
    """One epoch's step of every scheduler (the plateau schedule reads the validation loss)."""
    for s in schedulers.values():
        if isinstance(s, torch.optim.lr_scheduler.ReduceLROnPlateau):
            s.step(val_loss)
        else:
            s.step()
