"""Quantum many-body states: Hamiltonians, exact diagonalization, neural wavefunctions, VMC.

Conventions: configurations ``sigma`` are ``(B, N)`` tensors of 0/1, spin ``s = 1 - 2 sigma``
(sigma = 0 is up, Z = +1); site ``(x, y)`` of an ``Lx x Ly`` lattice is ``x * Ly + y``; dense
basis index ``sum_i sigma_i 2^(N-1-i)``. Hamiltonians are written in Pauli matrices.
"""

from physgen.quantum.exact import (
    all_configs,
    ground_state,
    ground_state_energy,
    heisenberg_chain_bethe_energy,
    sector_states,
    tfim_chain_energy,
)
from physgen.quantum.hamiltonians import Heisenberg, SpinHamiltonian, TransverseFieldIsing
from physgen.quantum.lattice import Chain, Lattice, Square
from physgen.quantum.measurements import MeasurementRecords
from physgen.quantum.states import ghz_state, measure, tfim_ground_state, w_state
from physgen.quantum.metropolis import MetropolisSampler, split_rhat
from physgen.quantum.rbm import RBMWavefunction
from physgen.quantum.rbm_sampler import RBMSampler
from physgen.quantum.symmetry import SymmetrizedWavefunction, SymmetryGroup
from physgen.quantum.povm import POVM, get_povm, sample_ghz_povm, sample_povm
from physgen.quantum.povm_model import POVMTransformer, classical_fidelity, fit_povm, quantum_fidelity
from physgen.quantum.rnn import RNNWavefunction
from physgen.quantum.transformer import TransformerWavefunction
from physgen.quantum.tomography import fidelity, fit_tomography, observables
from physgen.quantum.vmc import VMC, VMCDivergenceError, exact_variational_energy
from physgen.quantum.wavefunctions import build_wavefunction

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
    "all_configs",
    "tfim_chain_energy",
    "heisenberg_chain_bethe_energy",
    "RNNWavefunction",
    "TransformerWavefunction",
    "RBMWavefunction",
    "RBMSampler",
    "SymmetryGroup",
    "SymmetrizedWavefunction",
    "POVM",
    "get_povm",
    "sample_povm",
    "sample_ghz_povm",
    "POVMTransformer",
    "fit_povm",
    "classical_fidelity",
    "quantum_fidelity",
    "build_wavefunction",
    "MetropolisSampler",
    "split_rhat",
    "VMC",
    "VMCDivergenceError",
    "exact_variational_energy",
    "MeasurementRecords",
    "measure",
    "ghz_state",
    "w_state",
    "tfim_ground_state",
    "fit_tomography",
    "fidelity",
    "observables",
]
