r"""A batched fixed-step Runge-Kutta (RK4) solver in torch for the ODE tasks (sir, lotka_volterra).

Math: classical RK4, y_{n+1} = y_n + h/6 (k₁ + 2k₂ + 2k₃ + k₄), global error O(h⁴). The interval between
two consecutive save times is cut into equal sub-steps of at most ``max_step``; every row of the batch
takes the same steps, so a batch of B parameter sets costs one solve of B-wide tensor operations.
Accuracy against ``scipy.integrate.solve_ivp`` (rtol 1e-10) is tested in tests/test_sbibm_tasks_extra.py.
A row whose solution leaves the finite floats (an unstable step at extreme parameters) comes back with
NaN or inf; the tasks turn such rows into NaN observations, which ``physgen.simulate`` counts and drops.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["rk4"]


def rk4(f: Callable[[Tensor], Tensor], y0: Tensor, t_save: Sequence[float], max_step: float) -> Tensor:
    """Integrate the autonomous ODE y' = f(y) from t = 0 and return y at the save times.

    Args:
        f: the right-hand side, ``(*B, S) -> (*B, S)`` (parameters closed over, batched like y).
        y0: the state at t = 0, ``(*B, S)``.
        t_save: increasing save times >= 0 (K of them).
        max_step: the largest sub-step h.

    Returns:
        ``(*B, K, S)``: y at each save time (t = 0 returns y0).
    """
    if max_step <= 0:
        raise ValueError(f"rk4: max_step must be positive; got {max_step}")
    times = [float(t) for t in t_save]
    if any(b < a for a, b in zip([0.0, *times], times)):
        raise ValueError(f"rk4: save times must be increasing and >= 0; got {times}")
    y, t, out = y0, 0.0, []
    for t_next in times:
        span = t_next - t
        n = max(math.ceil(span / max_step - 1e-9), 1) if span > 0 else 0
        h = span / n if n else 0.0
        for _ in range(n):
            k1 = f(y)
            k2 = f(y + (0.5 * h) * k1)
            k3 = f(y + (0.5 * h) * k2)
            k4 = f(y + h * k3)
            y = y + (h / 6.0) * (k1 + 2.0 * (k2 + k3) + k4)
        out.append(y)
        t = t_next
    return torch.stack(out, dim=-2)
