r"""Exponential moving average of a module's weights, on ``torch.optim.swa_utils``.

After optimiser step ``t`` (t = 0, 1, ...) every parameter's average moves towards the live value,

    w_avg <- d_t w_avg + (1 - d_t) w,        d_t = min(decay, (1 + t) / (10 + t)),

starting from the weights at construction. The warm-up ``(1 + t) / (10 + t)`` lets the early average
follow the fast-moving weights (it spans roughly the last tenth of the run until ``decay`` takes over).
The average lives in a ``torch.optim.swa_utils.AveragedModel`` (a copy of the module, with its
``n_averaged`` count) and each update is swa_utils' ``get_ema_multi_avg_fn(d_t)`` applied to the
parameter lists, grouped by device and dtype once at construction (``AveragedModel.update_parameters``
walks the module tree at every call, which costs more than the average itself; docs/training.md,
benchmarks/ema_swa.py). Buffers are not averaged (the live ones are used).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from physgen.io import CheckpointError

__all__ = ["WeightAverage"]


class WeightAverage:
    """The moving average of ``module``'s parameters.

    Args:
        module: the module being trained (its parameters are read at every :meth:`update`).
        decay: the long-run decay per step, in [0, 1).

    ``update()`` after each optimiser step; ``swapped()`` puts the averaged parameters into ``module``
    for the duration of a ``with`` block; ``tensors()`` / ``load()`` carry the average through a
    checkpoint (``ema.<parameter name>`` and ``ema.n_averaged``).
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema is a decay per optimiser step in [0, 1) (e.g. 0.995) or None; got {decay}")
        self.decay = float(decay)
        self.module = module
        self.steps = 0  # host-side count of updates: the warm-up needs no device sync
        self.averaged = AveragedModel(module)  # a copy of the module: the average starts at the weights
        self.averaged.n_averaged.fill_(1)
        self._names = [k for k, _ in module.named_parameters()]
        groups: dict[tuple, tuple[list[Tensor], list[Tensor]]] = {}
        for live, avg in zip(module.parameters(), self.averaged.module.parameters()):
            g = groups.setdefault((live.device, live.dtype), ([], []))
            g[0].append(avg.detach())
            g[1].append(live.detach())  # views: they follow the optimiser's in-place updates
        self._groups = list(groups.values())

    @torch.no_grad()
    def update(self) -> None:
        """Move the average one step towards the module's current parameters."""
        average = get_ema_multi_avg_fn(min(self.decay, (1 + self.steps) / (10 + self.steps)))
        for avg, live in self._groups:
            average(avg, live, self.steps + 1)
        self.steps += 1  # averaged.n_averaged (= steps + 1) is brought up to date when read: tensors()

    def _pairs(self) -> tuple[list[Tensor], list[Tensor]]:
        live = [p.detach() for p in self.module.parameters()]
        avg = [p.detach() for p in self.averaged.module.parameters()]
        return live, avg

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """The averaged parameters in ``module`` inside the block; the live ones are put back after."""
        live, avg = self._pairs()
        saved = [p.clone() for p in live]
        torch._foreach_copy_(live, avg)
        try:
            yield
        finally:
            torch._foreach_copy_(live, saved)

    def tensors(self) -> dict[str, Tensor]:
        """``ema.<name>`` for every parameter and ``ema.n_averaged`` (for a checkpoint)."""
        _, avg = self._pairs()
        out = {f"ema.{k}": v for k, v in zip(self._names, avg)}
        self.averaged.n_averaged.fill_(self.steps + 1)
        out["ema.n_averaged"] = self.averaged.n_averaged.detach().clone()
        return out

    def load(self, tensors: dict[str, Tensor]) -> None:
        """Restore from :meth:`tensors`' output (other keys are ignored)."""
        _, avg = self._pairs()
        missing = [k for k in self._names if f"ema.{k}" not in tensors]
        if missing or "ema.n_averaged" not in tensors:
            raise CheckpointError(
                f"the checkpoint's moving average lacks {missing or ['n_averaged']}; it was written for another model"
            )
        with torch.no_grad():
            for k, p in zip(self._names, avg):
                p.copy_(tensors[f"ema.{k}"])
            self.averaged.n_averaged.copy_(tensors["ema.n_averaged"])
        self.steps = int(tensors["ema.n_averaged"]) - 1
