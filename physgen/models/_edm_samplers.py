r"""Samplers of a variance-exploding denoiser on EDM's noise schedule (Karras et al. 2022) (private).

:class:`physgen.models.diffusion.Diffusion` draws with these (its ``"heun"``, ``"euler"`` and ``"sde"``
samplers; ``"dpm2m"`` is :func:`physgen.models._ode.dpm_solver_2m`). ``den(x, σ)`` is the denoiser
D(x; σ) ≈ E[z | x_σ = x] of x_σ = z + σ ε, on a state of any shape.

Schedule (N steps): σ_i = (σ_max^{1/ρ} + i/(N-1) (σ_min^{1/ρ} - σ_max^{1/ρ}))^ρ for i < N, σ_N = 0.

* ``"euler"``, ``"heun"``: the probability-flow ODE dx/dσ = (x - D(x; σ)) / σ from σ_0 down to σ_N = 0 by
  Euler steps; ``"heun"`` adds Heun's 2nd-order correction on every step that does not end at σ = 0
  (2N - 1 denoiser calls);
* ``"sde"``: the reverse SDE, discretised exactly in variance:
  x ← x + (σ_i² - σ_{i+1}²)/σ_i² (D(x; σ_i) - x) + √(σ_i² - σ_{i+1}²) z, and x ← D(x; σ_{N-1}) on the last step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["EDM_SAMPLERS", "checked", "edm_sigmas", "sample_edm"]

EDM_SAMPLERS = ("heun", "euler", "sde")


def checked(den: Callable[[Tensor, float], Tensor], what: str) -> Callable[[Tensor, float], Tensor]:
    """``den`` that raises FloatingPointError, naming ``what`` and σ, when its output has NaN/inf values."""

    def g(x: Tensor, sigma: float) -> Tensor:
        v = den(x, sigma)
        if not torch.isfinite(v).all():
            raise FloatingPointError(
                f"the {what} returned {(~torch.isfinite(v)).sum().item()} NaN/inf values at sigma={sigma:.6g} "
                "during sampling; the network or its input diverged (check that targets/contexts are "
                "standardised and that the model was trained without NaN losses)"
            )
        return v

    return g


def edm_sigmas(
    steps: int,
    sigma_min: float,
    sigma_max: float,
    rho: float,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """EDM schedule σ_0 = σ_max > ... > σ_{N-1} = σ_min, σ_N = 0 (module docstring): ``(steps + 1,)``,
    computed in float64 and returned in ``dtype`` on ``device``; ``steps >= 1``."""
    r = rho
    if steps == 1:
        s = torch.tensor([sigma_max], dtype=torch.float64)
    else:
        i = torch.arange(steps, dtype=torch.float64) / (steps - 1)
        s = (sigma_max ** (1 / r) + i * (sigma_min ** (1 / r) - sigma_max ** (1 / r))) ** r
    return torch.cat([s, torch.zeros(1, dtype=torch.float64)]).to(device=device, dtype=dtype)


def sample_edm(
    den: Callable[[Tensor, float], Tensor],
    x: Tensor,
    sigmas: Sequence[float],
    sampler: str,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Integrate from the state x at ``sigmas[0]`` down to ``sigmas[-1] = 0`` (module docstring).

    Args:
        den: the denoiser ``(x, σ) -> D(x; σ)``, same shape as x.
        x: the state at ``sigmas[0]``, any shape.
        sigmas: the decreasing noise levels, ending at 0 (:func:`edm_sigmas` as a list).
        sampler: "heun", "euler" or "sde".
        generator, device, dtype: randomness, device and dtype of the SDE's noise draws.

    Returns:
        The state at σ = 0, shaped like x.

    Raises:
        ValueError: an unknown sampler.
    """
    if sampler not in EDM_SAMPLERS:
        raise ValueError(f"sampler must be one of {EDM_SAMPLERS}; got {sampler!r}")
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        if sampler == "sde":
            d = den(x, s)
            if s_next == 0.0:
                x = d
            else:
                var = s**2 - s_next**2
                z = torch.randn(x.shape, generator=generator, device=device, dtype=dtype)
                x = x + (var / s**2) * (d - x) + math.sqrt(var) * z
            continue
        dx = (x - den(x, s)) / s
        x_next = x + (s_next - s) * dx
        if sampler == "heun" and s_next > 0.0:
            dx2 = (x_next - den(x_next, s_next)) / s_next
            x_next = x + (s_next - s) * 0.5 * (dx + dx2)
        x = x_next
    return x
