r"""Error analysis for Markov-chain time series of Ising observables.

Input series have shape ``(*B, C, T)``: C independent chains (lattices with the same θ) of T
measurements each, taken after equilibration.

Integrated autocorrelation time (Sokal 1997)::

    τ_int = ½ + Σ_{t=1}^{W} ρ(t),

with ρ(t) the normalised autocorrelation averaged over the C chains (FFT, chain means
subtracted) and the window W the smallest one with W ≥ c τ_int(W) (c = 6). The standard error
of a plain mean of T correlated samples is then sqrt(2 τ_int Var / T).

Errors of the reported observables come from a jackknife over G groups: the C chains
themselves when C ≥ 8 (independent, so no autocorrelation assumption is made), otherwise
contiguous time blocks of every chain (blocking; 8 groups in total, a warning is issued if a
block is shorter than 5 τ_int, when the errors are too small). For a function f of the
group means, ``err² = (G - 1)/G Σ_g (f_{-g} - f̄_{-·})²``.

Observables (per spin, k_B = 1, N = L², e = E/N, m = M/N)::

    ⟨e⟩,  ⟨|m|⟩,  C/N = β² N (⟨e²⟩ - ⟨e⟩²),  χ/N = β N (⟨m²⟩ - ⟨|m|⟩²),
    U₄ = 1 - ⟨m⁴⟩ / (3 ⟨m²⟩²)   (Binder cumulant).

χ uses ⟨|m|⟩, the usual finite-lattice susceptibility that does not vanish by the m → -m
symmetry of a finite system at h = 0.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

__all__ = ["autocorrelation", "integrated_autocorrelation_time", "jackknife_groups", "thermodynamics"]


def autocorrelation(x: Tensor) -> Tensor:
    """Normalised autocorrelation ρ(t) averaged over chains.

    Args:
        x: ``(*B, C, T)``.

    Returns:
        ``(*B, T)`` with ρ(0) = 1 (0 where the series is constant).
    """
    x = x.to(torch.float64)
    T = x.shape[-1]
    d = x - x.mean(-1, keepdim=True)
    n = 1 << (2 * T - 1).bit_length()
    f = torch.fft.rfft(d, n=n)
    acov = torch.fft.irfft(f * f.conj(), n=n)[..., :T].mean(-2)  # (*B, T), un-normalised sums
    acov = acov / torch.arange(T, 0, -1, dtype=torch.float64, device=x.device)
    c0 = acov[..., :1]
    return torch.where(c0 > 0, acov / torch.where(c0 > 0, c0, torch.ones_like(c0)), torch.zeros_like(acov))


def integrated_autocorrelation_time(x: Tensor, c: float = 6.0) -> Tensor:
    """τ_int with Sokal's automatic window.

    Args:
        x: ``(*B, C, T)`` (or ``(T,)`` for one chain).
        c: window constant (W ≥ c τ_int).

    Returns:
        ``(*B,)`` float64, ≥ 0.5 (0.5 = uncorrelated).
    """
    if x.dim() == 1:
        x = x.unsqueeze(0)
    rho = autocorrelation(x)
    tau = 0.5 + torch.cumsum(rho[..., 1:], -1)  # tau(W) for W = 1..T-1
    if tau.shape[-1] == 0:
        return torch.full(rho.shape[:-1], 0.5, dtype=torch.float64, device=x.device)
    W = torch.arange(1, tau.shape[-1] + 1, device=x.device, dtype=torch.float64)
    ok = W >= c * tau
    first = torch.where(
        ok.any(-1), ok.to(torch.int64).argmax(-1), torch.full(ok.shape[:-1], tau.shape[-1] - 1, device=x.device)
    )
    return torch.gather(tau, -1, first.unsqueeze(-1)).squeeze(-1).clamp_min(0.5)


def jackknife_groups(x: Tensor, min_groups: int = 8) -> Tensor:
    """Group means for the jackknife.

    Args:
        x: ``(*B, C, T, K)``: K quantities measured along C chains of length T.
        min_groups: chains are used as groups when C ≥ min_groups, else each chain is cut
            into ceil(min_groups / C) contiguous blocks.

    Returns:
        ``(*B, G, K)`` group means.
    """
    C, T = x.shape[-3], x.shape[-2]
    if C >= min_groups:
        return x.mean(-2)
    k = min(-(-min_groups // C), T)
    blen = T // k
    if blen < 1:
        raise ValueError(f"need at least {min_groups} measurements in total for error bars; got C={C}, T={T}")
    xb = x[..., : k * blen, :].reshape(*x.shape[:-3], C, k, blen, x.shape[-1]).mean(-2)
    return xb.reshape(*x.shape[:-3], C * k, x.shape[-1])


def _jackknife(groups: Tensor, f) -> tuple[Tensor, Tensor]:
    """Estimate and error of f(means). groups ``(*B, G, K)``; f maps ``(*B, G', K)`` -> ``(*B, G')``."""
    G = groups.shape[-2]
    total = groups.sum(-2, keepdim=True)
    loo = (total - groups) / (G - 1)  # (*B, G, K)
    est = f(groups.mean(-2, keepdim=True)).squeeze(-1)
    vals = f(loo)
    err = ((G - 1) / G * ((vals - vals.mean(-1, keepdim=True)) ** 2).sum(-1)).sqrt()
    return est, err


def thermodynamics(energy: Tensor, magnetisation: Tensor, beta: Tensor, n_sites: int) -> dict[str, Tensor]:
    """Observables with jackknife errors and τ_int from time series.

    Args:
        energy: E per measurement (total, not per spin), ``(*B, C, T)``.
        magnetisation: M = Σ s_i per measurement, ``(*B, C, T)``.
        beta: ``(*B,)`` inverse temperature of each series.
        n_sites: N = L².

    Returns:
        dict of float64 ``(*B,)`` tensors: ``energy_per_spin``, ``abs_magnetisation``,
        ``specific_heat_per_spin``, ``susceptibility_per_spin``, ``binder``, each with an
        ``_err`` companion, and ``tau_int_energy``, ``tau_int_abs_magnetisation`` (in units
        of the measurement spacing), ``n_chains``, ``n_measurements`` (per chain).
    """
    N = float(n_sites)
    e = energy.to(torch.float64) / N
    m = magnetisation.to(torch.float64) / N
    am = m.abs()
    C, T = e.shape[-2], e.shape[-1]
    tau_e = integrated_autocorrelation_time(e)
    tau_m = integrated_autocorrelation_time(am)
    q = torch.stack([e, e * e, am, m * m, m**4], -1)  # (*B, C, T, 5)
    groups = jackknife_groups(q)
    if C < 8:
        blen = T // (groups.shape[-2] // C)
        if bool((5 * torch.maximum(tau_e, tau_m) > blen).any()):
            warnings.warn(
                f"error bars from blocking with blocks of {blen} measurements, shorter than 5 τ_int "
                f"(max τ_int = {float(torch.maximum(tau_e, tau_m).max()):.1f}); errors are underestimated. "
                "Use more chains (n_chains >= 8) or more measurements.",
                stacklevel=3,
            )
    b = beta.to(torch.float64).unsqueeze(-1)

    out: dict[str, Tensor] = {}
    defs = {
        "energy_per_spin": lambda g: g[..., 0],
        "abs_magnetisation": lambda g: g[..., 2],
        "specific_heat_per_spin": lambda g: b**2 * N * (g[..., 1] - g[..., 0] ** 2),
        "susceptibility_per_spin": lambda g: b * N * (g[..., 3] - g[..., 2] ** 2),
        "binder": lambda g: 1.0 - g[..., 4] / (3.0 * g[..., 3] ** 2),
    }
    for name, f in defs.items():
        est, err = _jackknife(groups, f)
        out[name], out[name + "_err"] = est, err
    out["tau_int_energy"] = tau_e
    out["tau_int_abs_magnetisation"] = tau_m
    shape = e.shape[:-2]
    out["n_chains"] = torch.full(shape, C, dtype=torch.int64)
    out["n_measurements"] = torch.full(shape, T, dtype=torch.int64)
    return out
