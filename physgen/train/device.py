"""Where training runs: the device (``"auto"`` = CUDA when available) and the CPU thread count."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["resolve_device", "num_threads", "auto_threads", "module_threads"]

# "auto" threads: one thread below this many parameters on CPU (docs/training.md, docs/benchmarks.md)
SMALL_MODEL_PARAMETERS = 1_000_000


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> cuda if available, else cpu; anything else is passed to ``torch.device``."""
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


def auto_threads(setting: int | str | None, module: nn.Module, device: torch.device) -> int | None:
    """Resolve fit's ``num_threads``: ``"auto"`` is 1 on CPU for models under
    :data:`SMALL_MODEL_PARAMETERS` parameters and None (torch's setting) otherwise; an int or None passes."""
    if setting != "auto":
        return None if setting is None else int(setting)
    small = sum(p.numel() for p in module.parameters()) < SMALL_MODEL_PARAMETERS
    return 1 if (device.type == "cpu" and small) else None


def module_threads(setting: int | str | None, module: nn.Module) -> contextlib.AbstractContextManager[None]:
    """:func:`num_threads` under fit's thread rule (:func:`auto_threads`) for ``module`` on its own device: the
    context a trained model's later work (validation, comparison, their timings) runs in, as its training did."""
    device = next(module.parameters()).device
    return num_threads(auto_threads(setting, module, device))
