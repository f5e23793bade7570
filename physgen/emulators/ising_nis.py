r"""Neural importance sampling (NIS) on an Ising emulator: ln Z, free energies and observables.

With n exact draws ``s_k ~ q(s | β)`` and log weights ``ln w_k = -β H(s_k) - ln q(s_k | β)``::

    Ẑ = (1/n) Σ_k w_k                      (unbiased for Z; ln Ẑ has a bias O(1/(n · ESS/n))),
    se(ln Ẑ) = sd(w) / (√n · mean(w))      (delta method),
    F_q = -(1/β) (1/n) Σ_k ln w_k  >=  F = -(1/β) ln Z    (the variational free energy; F_q - F = KL(q||p)/β),
    ESS = (Σ w)² / Σ w²                     (Kish).

Observables are self-normalised weighted averages (:func:`physgen.diagnostics.emulator_ising.ising_observables`),
consistent as n grows; the plain (unweighted) averages over q are returned beside them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from physgen.diagnostics.emulator_ising import ising_observables
from physgen.emulators.ising import IsingEmulator, magnetisation_sum

__all__ = ["NISResult", "importance_sample"]


@dataclass
class NISResult:
    """What :func:`importance_sample` measured at one β (all floats, totals not per spin unless named)."""

    beta: float
    n: int
    log_z: float
    log_z_err: float
    ess: float
    ess_fraction: float
    variational_free_energy: float
    variational_free_energy_err: float
    observables: dict = field(default_factory=dict)
    raw_observables: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def seconds_per_effective_sample(self) -> float:
        """Wall time (drawing, log q, energies) per effectively independent sample, ``seconds / ESS``."""
        return self.seconds / max(self.ess, 1e-300)

    def as_dict(self) -> dict:
        d = {
            k: getattr(self, k)
            for k in (
                "beta",
                "n",
                "log_z",
                "log_z_err",
                "ess",
                "ess_fraction",
                "variational_free_energy",
                "variational_free_energy_err",
                "seconds",
            )
        }
        d["seconds_per_effective_sample"] = self.seconds_per_effective_sample
        d["observables"], d["raw_observables"] = dict(self.observables), dict(self.raw_observables)
        return d


@torch.no_grad()
def importance_sample(
    emulator: IsingEmulator,
    beta: float,
    n: int,
    *,
    batch_size: int = 4096,
    groups: int = 20,
    generator: torch.Generator | None = None,
) -> NISResult:
    """Draw ``n`` configurations from the emulator at ``beta`` and importance-weight them by exp(-β H).

    Args:
        emulator: a (trained) :class:`IsingEmulator`.
        beta: inverse temperature (a float; outside the emulator's range it warns).
        n: draws (>= groups).
        batch_size: draws per batch.
        groups: jackknife groups for the observables' errors.
        generator: torch generator on the emulator's device.

    Returns:
        :class:`NISResult`.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < max(2, groups):
        raise ValueError(f"n must be an integer >= groups ({groups}), got {n!r}.")
    beta = float(beta)
    t0 = time.perf_counter()
    energies, mags, logw = [], [], []
    emulator.betas(beta, 1)  # the extrapolation warning, once
    done = 0
    while done < n:
        k = min(batch_size, n - done)
        s = emulator.sample(k, beta, generator=generator, warn=False)
        lq = emulator.log_prob(s, beta, warn=False).to(torch.float64)
        E = emulator.energy(s).to(torch.float64)
        energies.append(E)
        mags.append(magnetisation_sum(s).to(torch.float64))
        logw.append(-beta * E - lq)
        done += k
    seconds = time.perf_counter() - t0
    E, M, lw = torch.cat(energies), torch.cat(mags), torch.cat(logw)
    w = torch.exp(lw - lw.max())
    mean_w = w.mean()
    log_z = float(torch.log(mean_w) + lw.max())
    log_z_err = float(w.std() / (math.sqrt(n) * mean_w))
    ess = float(w.sum() ** 2 / (w * w).sum())
    N = emulator.n_sites
    return NISResult(
        beta=beta,
        n=n,
        log_z=log_z,
        log_z_err=log_z_err,
        ess=ess,
        ess_fraction=ess / n,
        variational_free_energy=float(-lw.mean() / beta),
        variational_free_energy_err=float(lw.std() / math.sqrt(n) / beta),
        observables=ising_observables(E, M, beta, N, log_weights=lw, groups=groups),
        raw_observables=ising_observables(E, M, beta, N, groups=groups),
        seconds=seconds,
    )
