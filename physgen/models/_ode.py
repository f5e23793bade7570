"""Batched ODE solvers shared by flow matching and diffusion (private).

Solve dy/dt = f(t, y) from t0 to t1 (t0 > t1 allowed) for a batch state y: ``(*B, K)``.

* Fixed step: ``euler`` (1 evaluation per step), ``midpoint`` and ``heun`` (2), ``rk4`` (4).
* Adaptive: ``dopri5``, the Dormand–Prince 5(4) pair with a PI-free standard controller
  ``h <- h · clip(0.9 · err^{-1/5}, 0.2, 5)``, where err is the largest (over the batch)
  RMS of the local error scaled by ``atol + rtol · max(|y|, |y_new|)``. One step size is shared by
  the whole batch, so the solve is one sequence of batched network calls.

For the probability-flow ODE of a denoiser (diffusion, and flow matching in its VE coordinates)
:func:`dpm_solver_2m` is the DPM-Solver++(2M) exponential integrator on a log-uniform σ grid.

Every evaluation of f is checked: a NaN or infinite value raises :class:`FloatingPointError`
naming the time at which it appeared, so a solver never returns NaN samples silently.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "FIXED_METHODS",
    "METHODS",
    "odeint",
    "check_steps",
    "time_grid",
    "stage_times",
    "flat_context",
    "broadcast_target_context",
    "divergence",
    "standard_normal_log_prob",
    "log_sigmas",
    "dpm_solver_2m",
    "ot_dpm_solver_2m",
]

FIXED_METHODS = ("euler", "midpoint", "heun", "rk4")
METHODS = (*FIXED_METHODS, "dopri5")

# Dormand–Prince 5(4) tableau
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)


def check_steps(steps: int, what: str = "steps") -> int:
    """Validate a number of solver steps (a positive integer)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"{what} must be a positive integer; got {steps!r}")
    return steps


def time_grid(t0: float, t1: float, steps: int, power: float = 1.0) -> list[float]:
    """Times t_0 = t0, ..., t_steps = t1 with ``t_i = t1 + (t0 - t1)(1 - i / steps)^power``.

    ``power = 1`` is uniform; ``power > 1`` shrinks the steps towards ``t1`` (where the field of a
    flow towards a sharp data distribution varies fastest).
    """
    if power <= 0:
        raise ValueError(f"the step schedule power must be positive; got {power}")
    return [t1 + (t0 - t1) * (1.0 - i / steps) ** power for i in range(steps)] + [t1]


def stage_times(method: str, t0: float, t1: float, steps: int, power: float = 1.0) -> list[float]:
    """The times at which :func:`odeint`'s fixed-step ``method`` evaluates f, computed as odeint does
    (so they compare equal), without repeats."""
    grid = time_grid(t0, t1, steps, power)
    times: list[float] = []
    for i in range(steps):
        t, h = grid[i], grid[i + 1] - grid[i]  # the expressions odeint uses, so the floats compare equal
        times += {"euler": [t], "midpoint": [t, t + h / 2], "heun": [t, t + h], "rk4": [t, t + h / 2, t + h]}[method]
    return list(dict.fromkeys(times))


def _checked(f: Callable[[float, Tensor], Tensor], name: str) -> Callable[[float, Tensor], Tensor]:
    def g(t: float, y: Tensor) -> Tensor:
        dy = f(t, y)
        if not torch.isfinite(dy).all():
            bad = (~torch.isfinite(dy)).sum().item()
            raise FloatingPointError(
                f"the {name} returned {bad} NaN/inf values at t={t:.6g} during ODE integration; "
                "the network or its input diverged (check that targets/contexts are standardised, "
                "that the model was trained without NaN losses, or use more solver steps)"
            )
        return dy

    return g


def odeint(
    f: Callable[[float, Tensor], Tensor],
    y0: Tensor,
    t0: float,
    t1: float,
    *,
    method: str = "rk4",
    steps: int = 10,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    max_steps: int = 10_000,
    name: str = "vector field",
    power: float = 1.0,
) -> Tensor:
    """Integrate dy/dt = f(t, y) from t0 to t1.

    Args:
        f: ``(t: float, y: (*B, K)) -> (*B, K)``.
        y0: initial state ``(*B, K)``.
        t0, t1: start and end time.
        method: one of ``METHODS``.
        steps: number of uniform steps (fixed-step methods); initial steps hint for ``dopri5``.
        atol, rtol: tolerances of ``dopri5``.
        max_steps: maximum number of accepted + rejected steps of ``dopri5``.
        name: what f is, for error messages.
        power: step-size schedule of the fixed-step methods (see :func:`time_grid`).

    Returns:
        y(t1): ``(*B, K)``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown ODE method {method!r}; choose one of {METHODS}")
    check_steps(steps)
    f = _checked(f, name)
    if method == "dopri5":
        return _dopri5(f, y0, t0, t1, atol, rtol, max_steps, steps)
    grid = time_grid(t0, t1, steps, power)
    y = y0
    for i in range(steps):
        t, h = grid[i], grid[i + 1] - grid[i]
        if method == "euler":
            y = torch.add(y, f(t, y), alpha=h)
        elif method == "midpoint":
            y = torch.add(y, f(t + h / 2, torch.add(y, f(t, y), alpha=h / 2)), alpha=h)
        elif method == "heun":
            k1 = f(t, y)
            k2 = f(t + h, y + h * k1)
            y = y + (h / 2) * (k1 + k2)
        else:  # rk4
            k1 = f(t, y)
            k2 = f(t + h / 2, y + (h / 2) * k1)
            k3 = f(t + h / 2, y + (h / 2) * k2)
            k4 = f(t + h, y + h * k3)
            y = y + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
    return y


def _dopri5(f, y0: Tensor, t0: float, t1: float, atol: float, rtol: float, max_steps: int, steps: int) -> Tensor:
    direction = 1.0 if t1 >= t0 else -1.0
    span = abs(t1 - t0)
    if span == 0:
        return y0
    h = span / steps
    t, y = t0, y0
    k1 = f(t, y)
    n = 0
    while direction * (t1 - t) > 1e-12 * span:
        if n >= max_steps:
            raise RuntimeError(
                f"dopri5 did not reach t={t1} within {max_steps} steps (at t={t:.6g}); "
                "loosen atol/rtol or use a fixed-step method"
            )
        n += 1
        h = min(h, abs(t1 - t))
        hs = direction * h
        ks = [k1]
        for i in range(1, 7):
            yi = y + hs * sum(a * k for a, k in zip(_A[i], ks) if a != 0.0)
            ks.append(f(t + _C[i] * hs, yi))
        y5 = y + hs * sum(b * k for b, k in zip(_B5, ks) if b != 0.0)
        err = hs * sum((b5 - b4) * k for b5, b4, k in zip(_B5, _B4, ks) if b5 != b4)
        scale = atol + rtol * torch.maximum(y.abs(), y5.abs())
        ratio = (
            (err / scale).pow(2).flatten(1).mean(1).sqrt().max().item()
            if y.dim() > 1
            else (err / scale).pow(2).mean().sqrt().item()
        )
        if ratio <= 1.0:
            t, y, k1 = t + hs, y5, ks[6]  # FSAL: the last stage is f(t + h, y5)
        factor = 5.0 if ratio == 0 else min(5.0, max(0.2, 0.9 * ratio**-0.2))
        h = h * factor
    return y


# --- shape and divergence helpers shared by the ODE-based families -------------------------------


def flat_context(context: Tensor | None, context_dim: int, device, dtype) -> tuple[tuple[int, ...], Tensor | None]:
    """Check a context ``(*Bc, C)`` and return ``(Bc, flat (prod Bc, C))`` (``((), None)`` when C == 0)."""
    if context_dim == 0:
        if context is not None and context.numel() > 0 and context.shape[-1] != 0:
            raise ValueError(
                f"this model is unconditional (context_dim=0) but got a context of shape {tuple(context.shape)}; pass None"
            )
        return (), None
    if context is None:
        raise ValueError(f"this model needs a context of shape (*B, {context_dim}); got None")
    if context.dim() == 0 or context.shape[-1] != context_dim:
        raise ValueError(
            f"context has shape {tuple(context.shape)}, but its last dimension must be context_dim={context_dim} "
            f"(expected (*B, {context_dim}))"
        )
    batch = tuple(context.shape[:-1])
    return batch, context.reshape(-1, context_dim).to(device=device, dtype=dtype)


def broadcast_target_context(target: Tensor, context: Tensor | None, dim: int, context_dim: int):
    """Broadcast target ``(*B, D)`` and context ``(*B', C)``; return ``(batch, target (N, D), context (N, C) | None)``."""
    if target.dim() == 0 or target.shape[-1] != dim:
        raise ValueError(
            f"target has shape {tuple(target.shape)}, but its last dimension must be dim={dim} (expected (*B, {dim}))"
        )
    if context_dim == 0:
        flat_context(context, 0, target.device, target.dtype)
        batch = tuple(target.shape[:-1])
        return batch, target.reshape(-1, dim), None
    flat_context(context, context_dim, target.device, target.dtype)
    assert context is not None  # flat_context raises on a missing context when context_dim > 0
    try:
        batch = tuple(torch.broadcast_shapes(target.shape[:-1], context.shape[:-1]))
    except RuntimeError:
        raise ValueError(
            f"target batch shape {tuple(target.shape[:-1])} and context batch shape {tuple(context.shape[:-1])} "
            "do not broadcast"
        ) from None
    t = target.expand(*batch, dim).reshape(-1, dim)
    c = context.to(target.dtype).expand(*batch, context_dim).reshape(-1, context_dim)
    return batch, t, c


def divergence(
    v_fn: Callable[[Tensor], Tensor], x: Tensor, noise: Tensor | None, create_graph: bool
) -> tuple[Tensor, Tensor]:
    """Return ``(v(x), div v(x))`` for x ``(N, D)``: the exact trace of the Jacobian (D backward
    passes) when ``noise`` is None, else the Hutchinson estimate ``εᵀ (∂v/∂x) ε`` with the given ε."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True) if not create_graph else (x if x.requires_grad else x.requires_grad_(True))
        v = v_fn(x)
        if noise is None:
            div = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
            for i in range(x.shape[1]):
                (g,) = torch.autograd.grad(v[:, i].sum(), x, create_graph=create_graph, retain_graph=True)
                div = div + g[:, i]
        else:
            (g,) = torch.autograd.grad((v * noise).sum(), x, create_graph=create_graph)
            div = (g * noise).sum(-1)
    if not create_graph:
        v, div = v.detach(), div.detach()
    return v, div


TRACES = ("exact", "hutchinson")


def check_trace(trace: str) -> str:
    """Validate a divergence estimator name ("exact" or "hutchinson")."""
    if trace not in TRACES:
        raise ValueError(f"trace must be one of {TRACES}; got {trace!r}")
    return trace


def integrate_with_divergence(
    velocity: Callable[[float, Tensor], Tensor],
    x: Tensor,
    t0: float,
    t1: float,
    *,
    trace: str,
    generator: torch.Generator | None,
    method: str,
    steps: int,
    atol: float,
    rtol: float,
    name: str = "vector field",
) -> tuple[Tensor, Tensor]:
    """Instantaneous change of variables: integrate dx/dt = v(t, x) together with ∫ div v dt.

    Args:
        velocity: ``v(t, x)`` for x ``(N, D)``.
        x: start points ``(N, D)`` at time t0.
        trace: "exact" divergence or "hutchinson" (Rademacher probes drawn with ``generator``).
        method, steps, atol, rtol, name: passed to :func:`odeint`.

    Returns:
        (x at t1 ``(N, D)``, ∫_{t0}^{t1} div v dt ``(N,)``). Differentiable when grad mode is on.
    """
    check_trace(trace)
    noise = None
    if trace == "hutchinson":
        noise = torch.randint(0, 2, x.shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1
    create_graph = torch.is_grad_enabled()
    d = x.shape[-1]

    def f(t: float, y: Tensor) -> Tensor:
        v, div = divergence(lambda z: velocity(t, z), y[:, :d], noise, create_graph)
        return torch.cat([v, div.unsqueeze(-1)], dim=-1)

    y = torch.cat([x, torch.zeros_like(x[:, :1])], dim=-1)
    y = odeint(f, y, t0, t1, method=method, steps=steps, atol=atol, rtol=rtol, name=name)
    return y[:, :d], y[:, d]


def standard_normal_log_prob(z: Tensor, scale: float = 1.0) -> Tensor:
    """log N(z; 0, scale² I) summed over the last dimension."""
    d = z.shape[-1]
    return -0.5 * (z / scale).pow(2).sum(-1) - d * (math.log(scale) + 0.5 * math.log(2 * math.pi))


def log_sigmas(sigma_max: float, sigma_min: float, n: int) -> list[float]:
    """n noise levels, log-uniform from sigma_max down to sigma_min (n >= 1)."""
    if n == 1:
        return [sigma_max]
    a, b = math.log(sigma_max), math.log(sigma_min)
    return [math.exp(a + (b - a) * i / (n - 1)) for i in range(n)]


def dpm_solver_2m(
    denoise: Callable[[Tensor, float], Tensor], y: Tensor, sigmas: list[float], name: str = "denoiser"
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022) for the variance-exploding probability-flow ODE
    dy/dσ = (y - D(y; σ)) / σ, from ``sigmas[0]`` down to 0 (one network call per level).

    Step from σ_i to σ_{i+1} (h_i = ln σ_i - ln σ_{i+1}, r = h_{i-1}/h_i), exact for the linear part:

        y <- (σ_{i+1}/σ_i) y + (1 - σ_{i+1}/σ_i) [(1 + 1/(2r)) D_i - D_{i-1}/(2r)],

    first-order on the first step, and y <- D(y; σ_last) on the final step to σ = 0.
    """
    f = _checked(lambda s, x: denoise(x, s), name)
    prev: tuple[Tensor, float] | None = None  # (D_{i-1}, h_{i-1}) after the first step
    for i, s in enumerate(sigmas):
        d = f(s, y)
        if i == len(sigmas) - 1:
            return d
        s_next = sigmas[i + 1]
        h = math.log(s / s_next)
        if prev is None:
            dt = d
        else:
            d_prev, h_prev = prev
            dt = (1 + h / (2 * h_prev)) * d - (h / (2 * h_prev)) * d_prev
        y = (s_next / s) * y + (1 - s_next / s) * dt
        prev = (d, h)
    return y


def ot_dpm_solver_2m(
    f: Callable[[float, Tensor], Tensor], x0: Tensor, steps: int, sigma_max: float, sigma_min: float
) -> Tensor:
    """DPM-Solver++(2M) for the OT-path field f(t, x) (flow matching), from noise x0 at t = 0 to t = 1.

    The OT path written as a VE diffusion: with σ = (1 - t)/t and y = x_t / t, y = x₁ + σ x₀ and the data
    prediction is D(y; σ) = x_t + (1 - t) f(t, x_t). One Euler step from t = 0 to t₁ = 1/(1 + σ_max) (exact for
    the OT path's first step), then ``steps - 1`` calls of f on a log-uniform σ grid from ``sigma_max`` to
    ``sigma_min``, ending with x₁ = D at σ_min (one Euler step over [0, 1] when ``steps == 1``).
    """
    if steps == 1:
        return odeint(f, x0, 0.0, 1.0, method="euler", steps=1)
    levels = log_sigmas(sigma_max, sigma_min, steps - 1)
    t1 = 1.0 / (1.0 + levels[0])
    x = odeint(f, x0, 0.0, t1, method="euler", steps=1)

    def denoise(y: Tensor, s: float) -> Tensor:
        t = 1.0 / (1.0 + s)
        xt = t * y
        return xt + (1.0 - t) * f(t, xt)

    return dpm_solver_2m(denoise, x / t1, levels, name="vector field")
