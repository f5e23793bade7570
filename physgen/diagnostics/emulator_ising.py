r"""Ising emulator diagnostics: thermodynamic observables against long MCMC, ln Z against Kaufman.

Observables (per spin, k_B = 1, e = E/N, m = M/N; the definitions of :mod:`simulators.ising.stats`)::

    ⟨e⟩,  ⟨|m|⟩,  C/N = β² N (⟨e²⟩ - ⟨e⟩²),  χ/N = β N (⟨m²⟩ - ⟨|m|⟩²),  U₄ = 1 - ⟨m⁴⟩ / (3 ⟨m²⟩²).

From independent draws (an emulator's samples), optionally weighted by importance weights
``w = p̃ / q`` (self-normalised: ``⟨O⟩ = Σ w O / Σ w``, consistent, with a bias O(1/n)). Errors are a
jackknife over G contiguous groups of the (independent) draws, each leave-one-group-out estimate a
ratio of weighted sums, so the weights' fluctuations are included.

Comparisons report, per observable, the relative difference and ``z = Δ / sqrt(err₁² + err₂²)``;
:func:`log_z_check` compares an estimate of ln Z with an exact value (Kaufman's finite-torus one, passed in).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["OBSERVABLES", "ising_observables", "compare_observables", "log_z_check"]

OBSERVABLES = ("energy_per_spin", "abs_magnetisation", "specific_heat_per_spin", "susceptibility_per_spin", "binder")


def ising_observables(
    energy: Tensor,
    magnetisation: Tensor,
    beta: float,
    n_sites: int,
    *,
    log_weights: Tensor | None = None,
    groups: int = 20,
) -> dict[str, float]:
    """⟨e⟩, ⟨|m|⟩, C/N, χ/N and U₄ with jackknife errors from independent draws.

    Args:
        energy: total energies E, ``(n,)``.
        magnetisation: M = Σ s_i, ``(n,)``.
        beta: inverse temperature.
        n_sites: N = L².
        log_weights: ``(n,)`` unnormalised log importance weights (None = equal weights).
        groups: jackknife groups (>= 2, <= n).

    Returns:
        dict of floats: each observable and ``<name>_err``, plus ``n`` and, with weights, ``ess``
        (Kish's effective sample size ``(Σw)² / Σw²``).
    """
    e = energy.to(torch.float64).reshape(-1) / n_sites
    m = magnetisation.to(torch.float64).reshape(-1) / n_sites
    n = e.numel()
    if m.numel() != n:
        raise ValueError(f"energy and magnetisation must have the same length; got {n} and {m.numel()}.")
    if not 2 <= groups <= n:
        raise ValueError(f"groups must be in [2, n = {n}]; got {groups}.")
    if log_weights is None:
        w = torch.ones_like(e)
    else:
        lw = log_weights.to(torch.float64).reshape(-1)
        if lw.numel() != n or not bool(torch.isfinite(lw).all()):
            raise ValueError(
                f"log_weights must be {n} finite values; got {lw.numel()} (finite: {bool(torch.isfinite(lw).all())})."
            )
        w = torch.exp(lw - lw.max())
    am = m.abs()
    q = torch.stack([w, w * e, w * e * e, w * am, w * m * m, w * m**4], -1)  # (n, 6)
    G = groups
    size = n // G
    sums = q[: G * size].reshape(G, size, 6).sum(1)  # (G, 6); a remainder < G rows is left out
    total = sums.sum(0)
    loo = total - sums  # (G, 6) leave-one-group-out sums

    def estimates(s: Tensor) -> dict[str, Tensor]:
        mom = s[..., 1:] / s[..., :1]
        e1, e2, a1, m2, m4 = mom.unbind(-1)
        return {
            "energy_per_spin": e1,
            "abs_magnetisation": a1,
            "specific_heat_per_spin": beta**2 * n_sites * (e2 - e1**2),
            "susceptibility_per_spin": beta * n_sites * (m2 - a1**2),
            "binder": 1.0 - m4 / (3.0 * m2**2),
        }

    full, jack = estimates(q.sum(0)), estimates(loo)
    out: dict[str, float] = {}
    for name in OBSERVABLES:
        vals = jack[name]
        out[name] = float(full[name])
        out[name + "_err"] = float(((G - 1) / G * ((vals - vals.mean()) ** 2).sum()).sqrt())
    out["n"] = n
    if log_weights is not None:
        out["ess"] = float(w.sum() ** 2 / (w * w).sum())
    return out


def compare_observables(emulated: dict, reference: dict, names: tuple[str, ...] = OBSERVABLES) -> dict[str, dict]:
    """Per observable: ``value``, ``reference``, ``rel_diff`` = (value - reference) / |reference| and
    ``z`` = difference / combined error. Both dicts hold ``name`` and ``name_err`` (missing errors count as 0)."""
    out = {}
    for name in names:
        if name not in emulated or name not in reference:
            continue
        v, r = float(emulated[name]), float(reference[name])
        err = math.hypot(float(emulated.get(name + "_err", 0.0)), float(reference.get(name + "_err", 0.0)))
        out[name] = {
            "value": v,
            "reference": r,
            "rel_diff": (v - r) / abs(r) if r != 0 else math.inf,
            "z": (v - r) / err if err > 0 else math.inf,
        }
    return out


def log_z_check(log_z: float, log_z_err: float, exact: float) -> dict[str, float]:
    """An estimate of ln Z against the exact value (e.g. Kaufman's for the L×L torus at h = 0:
    ``simulators.ising.exact.kaufman_log_z(L, β J)``; physgen does not import the simulators).

    Returns:
        dict: ``log_z``, ``log_z_err``, ``exact``, ``diff``, ``rel_diff`` and ``z`` (= diff / err).
    """
    exact = float(exact)
    diff = float(log_z) - exact
    return {
        "log_z": float(log_z),
        "log_z_err": float(log_z_err),
        "exact": exact,
        "diff": diff,
        "rel_diff": diff / abs(exact),
        "z": diff / log_z_err if log_z_err > 0 else math.inf,
    }
