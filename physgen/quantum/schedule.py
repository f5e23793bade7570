r"""Learning-rate (and diagonal-shift) schedules of the VMC driver.

A schedule maps the position ``pos`` of a step in a run of ``span`` steps to a value that starts at
``value`` and ends at ``final``. With ``warmup = w > 0`` the first ``w`` steps ramp linearly from
``value / w`` to ``value`` and the decay runs over the remaining steps; with ``p = (pos - w) / (span - 1 - w)``
in ``[0, 1]``:

* ``"constant"``: ``value`` (``final`` is ignored);
* ``"geometric"``: ``value * (final / value) ** p`` (exponential decay, the driver's default);
* ``"cosine"``: ``final + (value - final) (1 + cos(pi p)) / 2``.

The comparison that chose the default for the TFIM chain is in ``docs/quantum_vmc.md``.
"""

from __future__ import annotations

import math

__all__ = ["SCHEDULES", "scheduled_value"]

SCHEDULES = ("constant", "geometric", "cosine")


def scheduled_value(
    value: float, final: float | None, pos: int, span: int, kind: str = "geometric", warmup: int = 0
) -> float:
    """The scheduled value at step ``pos`` (0-based) of a run of ``span`` steps.

    Args:
        value: the initial (peak) value.
        final: the value at the last step (None: constant after the warm-up).
        pos: position of the step in the run; clipped to ``[0, span - 1]``.
        span: number of steps of the run (>= 1).
        kind: one of :data:`SCHEDULES`.
        warmup: number of linear warm-up steps (0: none).

    Raises:
        ValueError: an unknown ``kind`` or a negative ``warmup``.
    """
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; use one of {SCHEDULES}.")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0 steps, got {warmup}.")
    pos = min(max(int(pos), 0), max(int(span) - 1, 0))
    if pos < warmup:
        return value * (pos + 1) / warmup
    if final is None or kind == "constant":
        return value
    rest = span - 1 - warmup
    p = (pos - warmup) / rest if rest > 0 else 0.0
    if kind == "geometric":
        return value * (final / value) ** p
    return final + (value - final) * 0.5 * (1.0 + math.cos(math.pi * p))
