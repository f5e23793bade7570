"""Value domains and input checks shared by the config loader and the Python API.

A :class:`Domain` says which values an option takes (``Domain(int, ge=1)``: an int >= 1). The config schemas
declare domains on their fields (:func:`physgen.config.schema.bounded`), and the loader's error names the
config key; the API checks the same kind of domain and names the argument:

    check_value(lr, Domain(float, gt=0), "lr")          # ValueError: lr must be a finite float > 0; got -1.0
    check_fit_options(batch_size=..., lr=..., ...)      # every numeric option of physgen.fit
    check_count(n, "n")                                 # an int >= 0 (bools refused)
    check_finite(x, "x")                                # NaN/inf refused, the positions named
    check_training_data(theta, x)                       # NaN/inf rows of training data named

Non-finite floats (NaN, ±inf) are outside every domain.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

# torch is imported by the functions that take tensors: the config schemas import this module for Domain

__all__ = [
    "Domain",
    "check_value",
    "check_count",
    "check_finite",
    "check_training_data",
    "check_fit_options",
    "check_sample_size",
    "FIT_DOMAINS",
    "MAX_SAMPLE_BYTES",
]

MAX_SAMPLE_BYTES = 4 << 30  # the largest sample() result (n x observations x event, 4 bytes each) one call returns


@dataclass(frozen=True)
class Domain:
    """The values an option takes: ``kind`` (int or float), bounds (``ge``/``gt``/``le``/``lt``), whether None is
    allowed, and a note on special values (``"0 leaves it to the model family"``)."""

    kind: type = float
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    none: bool = False
    note: str = ""

    def describe(self) -> str:
        """``"an int >= 1"``, ``"a finite float in (0, 1)"``, ..."""
        low = f"[{self.ge:g}" if self.ge is not None else (f"({self.gt:g}" if self.gt is not None else None)
        high = f"{self.le:g}]" if self.le is not None else (f"{self.lt:g})" if self.lt is not None else None)
        what = "an int" if self.kind is int else "a finite float"
        if low and high:
            text = f"{what} in {low}, {high}"
        elif low:
            text = f"{what} {'>=' if self.ge is not None else '>'} {low[1:]}"
        elif high:
            text = f"{what} {'<=' if self.le is not None else '<'} {high[:-1]}"
        else:
            text = what
        text += " or None" if self.none else ""
        return text + (f" ({self.note})" if self.note else "")

    def problem(self, value: Any) -> str | None:
        """None when ``value`` is in the domain, else what it should be."""
        if value is None and self.none:
            return None
        ok_type = isinstance(value, numbers.Integral) if self.kind is int else isinstance(value, numbers.Real)
        if isinstance(value, bool) or not ok_type or not math.isfinite(value):
            return self.describe()
        inside = (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )
        return None if inside else self.describe()


def check_value(value: Any, domain: Domain, name: str) -> Any:
    """``value`` unchanged, or a ValueError (TypeError for a wrong type) ``"{name} must be ...; got ..."``."""
    wrong = domain.problem(value)
    if wrong is not None:
        numeric = value is None or (isinstance(value, numbers.Real) and not isinstance(value, bool))
        raise (ValueError if numeric else TypeError)(f"{name} must be {wrong}; got {value!r}")
    return value


def check_count(n: Any, name: str = "n") -> int:
    """``n`` as an int >= 0 (a Python or numpy int, or a 0-d integer tensor), else TypeError/ValueError."""
    import torch

    if torch.is_tensor(n) and n.dim() == 0 and not n.is_floating_point() and n.dtype != torch.bool:
        n = int(n)
    check_value(n, Domain(int, ge=0), name)
    return int(n)


def _positions(bad: Tensor, limit: int = 5) -> str:
    idx = bad.nonzero().tolist()
    shown = ", ".join(str(tuple(i)) if len(i) > 1 else str(i[0]) for i in idx[:limit])
    return shown + (f" ... ({len(idx)} in all)" if len(idx) > limit else "")


def check_finite(x: Any, name: str = "x") -> None:
    """Raise ValueError when the tensor ``x`` holds NaN or ±inf, naming the first positions."""
    import torch

    if torch.is_tensor(x) and x.is_floating_point():
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            raise ValueError(
                f"{name} holds NaN or inf at {_positions(bad)} (of shape {tuple(x.shape)}); give finite values"
            )


def check_training_data(*tensors: Tensor, names: tuple[str, ...] = ("theta", "x")) -> None:
    """Raise ValueError when any row of the training tensors (same first dimension n) holds NaN or ±inf,
    naming the rows (drop them, or re-simulate: physgen.simulate drops such rows itself)."""
    import torch

    for i, t in enumerate(tensors):
        if not torch.is_tensor(t) or not t.is_floating_point():
            continue
        bad = ~torch.isfinite(t.reshape(len(t), -1)).all(1)
        if bool(bad.any()):
            name = names[i] if i < len(names) else f"tensor {i}"
            raise ValueError(
                f"the training data's {name} holds NaN or inf in rows {_positions(bad)} of {len(t)}; "
                "drop those rows (e.g. data[torch.isfinite(x).flatten(1).all(1)]) or fix the simulator"
            )


def check_sample_size(n: int, observations: int, event_numel: int, *, budget: int | None = None) -> None:
    """Refuse a sample() request whose result would exceed ``budget`` bytes (default :data:`MAX_SAMPLE_BYTES`,
    read at call time), naming its size and how to draw it instead."""
    budget = MAX_SAMPLE_BYTES if budget is None else budget
    size = int(n) * max(1, int(observations)) * max(1, int(event_numel)) * 4
    if size > budget:
        raise ValueError(
            f"sampling n={n} for {observations} observation(s) would return {size / 2**30:.1f} GiB (n x observations "
            f"x {event_numel} values x 4 bytes), more than the {budget / 2**30:.1f} GiB budget "
            "(physgen.checks.MAX_SAMPLE_BYTES); draw it in smaller calls with different seeds and write each to disk"
        )


FIT_DOMAINS: dict[str, Domain] = {
    "batch_size": Domain(int, ge=1),
    "lr": Domain(float, gt=0),
    "weight_decay": Domain(float, ge=0),
    "max_epochs": Domain(int, ge=1),
    "patience": Domain(int, ge=1),
    "min_delta": Domain(float, ge=0),
    "validation_fraction": Domain(float, gt=0, lt=1),
    "clip_norm": Domain(float, gt=0, none=True, note="None: no clipping"),
    "max_time": Domain(float, gt=0, none=True, note="seconds; None: no limit"),
    "seed": Domain(int, ge=0),
    "ema": Domain(float, ge=0, lt=1, none=True, note="a decay per step, e.g. 0.995; None: off"),
    "warm_start_rows": Domain(int, ge=1, none=True),
}


def check_fit_options(**options: Any) -> None:
    """Check ``physgen.fit``'s numeric options by :data:`FIT_DOMAINS`; the error names the argument."""
    for name, value in options.items():
        if name in FIT_DOMAINS:
            check_value(value, FIT_DOMAINS[name], name)
