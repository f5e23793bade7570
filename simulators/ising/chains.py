"""Batched Markov chains for the Ising simulator: one object advances M lattices at once.

``MetropolisChain`` keeps colour-compressed spin bits and runs the checkerboard kernel of
:mod:`simulators.ising.kernels`; ``WolffChain`` keeps bit-packed rows and runs the cluster update of
:mod:`simulators.ising.wolff`. Both expose ``equilibrate(n)``, ``advance(n)`` (sweeps),
``measure() -> (bond sum, magnetisation)`` (int64 ``(M,)``) and ``spins() -> (M, L, L)`` int8 ±1;
``MultispinChain`` (:mod:`simulators.ising.multispin`, numba) runs the checkerboard chain with 64 lattices
per machine word. :func:`make_chain` picks one by the simulator's ``algorithm``.
Conventions as in :mod:`simulators.ising.model`.

A Wolff sweep flips about N spins: during the first half of the equilibration every lattice
flips clusters until it has flipped N spins per sweep (adaptive, burn-in only), then
n_k = round(N / mean cluster size) flips per sweep are frozen for lattice k, so every later
sweep is a fixed power of the Wolff kernel and leaves the Boltzmann distribution invariant
(a state-dependent stopping rule would bias the returned configuration).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from simulators.ising.kernels import (
    CheckerboardSweeper,
    acceptance_thresholds,
    from_sublattices,
    sublattice_bond_sum,
    sublattice_magnetisation_sum,
    to_sublattices,
)
from simulators.ising.wolff import pack_rows, packed_sums, unpack_rows, wolff_step

__all__ = ["Chain", "MetropolisChain", "WolffChain", "make_chain"]


class Chain(Protocol):
    """A batch of M lattices under one algorithm; spins leave as int8 ±1 ``(M, L, L)``. ``MetropolisChain`` and
    ``WolffChain`` subclass it; ``MultispinChain`` has the same methods (numba is optional, so it is not imported
    here)."""

    def equilibrate(self, n: int) -> None:
        self.advance(n)

    def advance(self, n: int) -> None: ...

    def measure(self) -> tuple[Tensor, Tensor]: ...

    def spins(self) -> Tensor: ...


class MetropolisChain(Chain):
    def __init__(self, spins: Tensor, table: Tensor, generator: torch.Generator | None):
        a, b = to_sublattices(spins)
        self.a, self.b = (a + 1) // 2, (b + 1) // 2  # spin bits σ = (s + 1)/2
        self.generator = generator
        self.sweeper = CheckerboardSweeper(self.a, self.b, table)  # views and buffers built once

    def advance(self, n: int) -> None:
        self.sweeper.sweep(n, self.generator)

    def measure(self) -> tuple[Tensor, Tensor]:
        return sublattice_bond_sum(self.a, self.b), sublattice_magnetisation_sum(self.a, self.b)

    def spins(self) -> Tensor:
        return 2 * from_sublattices(self.a, self.b) - 1


class WolffChain(Chain):
    """Wolff chain. A sweep is ``per_sweep`` cluster flips per lattice, or with "auto" about N
    flipped spins: during the first half of equilibration each lattice flips clusters until
    its flipped-spin count reaches N per sweep (adaptive, burn-in only); :meth:`freeze` then
    fixes n_k = round(N / mean cluster size) flips per sweep for lattice k, so every later
    sweep is a fixed power of the Wolff kernel and leaves the Boltzmann distribution invariant."""

    def __init__(self, spins: Tensor, beta: Tensor, J: Tensor, h: Tensor, per_sweep: int | str, generator):
        self.s = pack_rows((spins + 1) // 2)  # bit-packed rows (M, L, K)
        self.beta, self.J, self.h = beta, J, h
        self.generator = generator
        m, n = spins.shape[0], spins.shape[-1] * spins.shape[-2]
        self.n_sites = n
        self.per_sweep = None if per_sweep == "auto" else torch.full((m,), int(per_sweep), device=spins.device)
        self._flipped = torch.zeros(m, dtype=torch.float64, device=spins.device)
        self._steps = torch.zeros(m, dtype=torch.float64, device=spins.device)

    def equilibrate(self, n: int) -> None:
        if self.per_sweep is not None:
            self.advance(n)
            return
        n_adapt = max(n // 2, 1)  # at least one sweep to measure the mean cluster size
        target = float(n_adapt * self.n_sites)
        while True:
            active = self._flipped < target
            if not bool(active.any()):
                break
            size = self._step(active)
            self._flipped += torch.where(active, size.to(torch.float64), torch.zeros_like(self._flipped))
            self._steps += active.to(torch.float64)
        mean = (self._flipped / self._steps.clamp_min(1)).clamp_min(1.0)
        self.per_sweep = torch.clamp(torch.round(self.n_sites / mean), 1, self.n_sites).to(torch.int64)
        self.advance(max(n - n_adapt, 0))

    def advance(self, n: int) -> None:
        if self.per_sweep is None:
            raise RuntimeError("call equilibrate() before advance() with cluster_updates='auto'")
        steps = n * self.per_sweep
        for t in range(int(steps.max()) if n > 0 else 0):
            self._step(t < steps)

    def _step(self, active: Tensor) -> Tensor:
        return wolff_step(self.s, self.beta, self.J, self.h, active=active, generator=self.generator)

    def measure(self) -> tuple[Tensor, Tensor]:
        return packed_sums(self.s)

    def spins(self) -> Tensor:
        return 2 * unpack_rows(self.s) - 1


def make_chain(
    algorithm: str, spins: Tensor, beta: Tensor, J: Tensor, h: Tensor, rule: str, cluster_updates: int | str, generator
) -> Chain:
    """The chain of ``algorithm`` ("metropolis", "multispin" or "wolff") on int8 ±1 ``spins (M, L, L)``
    with per-lattice ``beta, J, h (M,)``; ``rule`` is the Metropolis/heat-bath acceptance (checkerboard
    chains), ``cluster_updates`` the Wolff flips per sweep."""
    if algorithm == "metropolis":
        return MetropolisChain(spins, acceptance_thresholds(beta, J, h, rule), generator)
    if algorithm == "multispin":
        from simulators.ising.multispin import MultispinChain  # numba is optional: imported on use

        return MultispinChain(spins, beta, J, h, rule, generator)
    if algorithm == "wolff":
        return WolffChain(spins, beta, J, h, cluster_updates, generator)
    raise ValueError(f"algorithm must be 'metropolis', 'multispin' or 'wolff'; got {algorithm!r}")
