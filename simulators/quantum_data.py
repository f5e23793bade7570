"""Measurement records of N-qubit states in local Pauli bases (the data of quantum state tomography).

The implementation lives in :mod:`physgen.quantum.states` (so that the library's
``physgen tomography`` runner can build data sets without importing ``simulators/``); this
module is the simulator-side entry point:

* states (dense, length ``2**N``, index ``sum_i sigma_i 2**(N-1-i)``, ``sigma = 0`` is spin up):
  ``ghz_state(N, phase)`` = ``(|0...0> + e^{i phase}|1...1>)/sqrt(2)``, ``w_state(N)``, and
  ``tfim_ground_state(N, h=, J=, periodic=)`` (exact diagonalisation of
  ``H = -J sum Z Z - h sum X`` via ``physgen.quantum.exact.ground_state``, amplitudes >= 0);
* ``measure(psi, bases, n_shots, seed=)``: exact projective measurements -- the state is rotated
  into each product basis, ``psi_b = (⊗_i U_{b_i}) psi``, and outcomes are drawn from the Born
  distribution ``|psi_b(s)|**2`` over all ``2**N`` outcomes; returns ``MeasurementRecords``
  (``outcomes (n, N)`` 0/1, ``bases (n, N)`` codes Z=0, X=1, Y=2);
* ``born_probabilities(psi, basis)``, and basis schemes ``random_bases`` / ``pair_bases``.

Example::

    from simulators.quantum_data import ghz_state, measure
    rec = measure(ghz_state(6), ["ZZZZZZ", "XXXXXX", "YXXXXX"], n_shots=1000, seed=0)
    rec.outcomes.shape, rec.basis_counts()   # (3000, 6), {'XXXXXX': 1000, ...}
"""

from __future__ import annotations

from physgen.quantum.measurements import BASIS_CODE, MeasurementRecords
from physgen.quantum.states import (
    born_probabilities,
    ghz_state,
    measure,
    pair_bases,
    random_bases,
    tfim_ground_state,
    w_state,
)

__all__ = [
    "BASIS_CODE",
    "MeasurementRecords",
    "ghz_state",
    "w_state",
    "tfim_ground_state",
    "born_probabilities",
    "measure",
    "random_bases",
    "pair_bases",
]
