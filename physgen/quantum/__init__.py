"""Quantum many-body states: Hamiltonians, exact diagonalization, neural wavefunctions, VMC.

Conventions: configurations ``sigma`` are ``(B, N)`` tensors of 0/1, spin ``s = 1 - 2 sigma``
(sigma = 0 is up, Z = +1); site ``(x, y)`` of an ``Lx x Ly`` lattice is ``x * Ly + y``; dense
basis index ``sum_i sigma_i 2^(N-1-i)``. Hamiltonians are written in Pauli matrices.
"""

from physgen.quantum.exact import (
    ground_state,
    ground_state_energy,
    heisenberg_chain_bethe_energy,
    sector_states,
    tfim_chain_energy,
)
from physgen.quantum.hamiltonians import Heisenberg, SpinHamiltonian, TransverseFieldIsing
from physgen.quantum.lattice import Chain, Lattice, Square

__all__ = [
    "Chain",
    "Square",
    "Lattice",
    "SpinHamiltonian",
    "TransverseFieldIsing",
    "Heisenberg",
    "ground_state",
    "ground_state_energy",
    "sector_states",
    "tfim_chain_energy",
    "heisenberg_chain_bethe_energy",
]
