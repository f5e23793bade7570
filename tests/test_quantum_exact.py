"""Exact diagonalization against closed forms (free fermions, Bethe ansatz) and sectors."""

import math

import numpy as np
import pytest

from physgen.quantum.exact import (
    HEISENBERG_ENERGY_PER_BOND_INF,
    all_configs,
    ground_state,
    heisenberg_chain_bethe_energy,
    sector_states,
    tfim_chain_energy,
)
from physgen.quantum.hamiltonians import Heisenberg, TransverseFieldIsing
from physgen.quantum.lattice import Chain, Square


@pytest.mark.parametrize("N", [4, 5, 6, 7, 8, 10, 12])
@pytest.mark.parametrize("h", [0.5, 1.0, 2.0])
def test_tfim_periodic_free_fermions(N, h):
    e, psi = ground_state(TransverseFieldIsing(Chain(N, periodic=True), J=1.0, h=h))
    assert abs(e - tfim_chain_energy(N, J=1.0, h=h, periodic=True)) < 1e-9
    assert abs(np.linalg.norm(psi) - 1) < 1e-12


@pytest.mark.parametrize("N", [4, 5, 8, 11])
@pytest.mark.parametrize("h", [0.3, 1.0, 3.0])
def test_tfim_open_free_fermions(N, h):
    e, _ = ground_state(TransverseFieldIsing(Chain(N, periodic=False), J=0.8, h=h))
    assert abs(e - tfim_chain_energy(N, J=0.8, h=h, periodic=False)) < 1e-9


def test_tfim_ground_state_is_eigenvector_and_positive():
    H = TransverseFieldIsing(Square(3, 3, periodic=True), J=1.0, h=2.0)
    e, psi = ground_state(H)
    Hs = H.to_sparse()
    assert np.max(np.abs(Hs @ psi - e * psi)) < 1e-8
    assert np.all(psi > 0)  # Perron-Frobenius: stoquastic, connected


@pytest.mark.parametrize("N", [4, 6, 8, 10, 12, 14])
def test_heisenberg_bethe_ansatz(N):
    e, _ = ground_state(Heisenberg(Chain(N, periodic=True)))
    assert abs(e - heisenberg_chain_bethe_energy(N)) < 1e-8


def test_heisenberg_known_values_and_asymptote():
    # N = 4: E = -2 J in spin-1/2 units = -8 in Pauli units.
    assert abs(heisenberg_chain_bethe_energy(4) + 8.0) < 1e-10
    # Approaches 4 (1/4 - ln 2) per bond with a 1/N^2 correction (-pi^2/6/N^2 * 4 per bond).
    N = 200
    per_bond = heisenberg_chain_bethe_energy(N) / N
    assert abs(per_bond - HEISENBERG_ENERGY_PER_BOND_INF) < 4 * math.pi**2 / 6 / N**2 * 1.5
    assert per_bond < HEISENBERG_ENERGY_PER_BOND_INF


def test_heisenberg_sz0_sector_equals_full_space():
    H = Heisenberg(Chain(8, periodic=True))
    e_sec, psi = ground_state(H, sector="sz0")
    e_full, _ = ground_state(H, sector=None)
    assert abs(e_sec - e_full) < 1e-9
    cfg = all_configs(8)
    support = np.abs(psi) > 1e-12
    assert np.all(cfg[support].sum(1) == 4)
    # Marshall sign rule: sign = (-1)^(number of down spins on sublattice 1)
    sub = np.arange(8) % 2
    marshall = (-1.0) ** (cfg[:, sub == 1].sum(1))
    assert np.all(np.sign(psi[support]) == marshall[support] * np.sign(psi[support][0] * marshall[support][0]))


def test_heisenberg_2d_and_j1j2_sector():
    H = Heisenberg(Square(2, 3, periodic=False), J=1.0, J2=0.3)
    e_sec, _ = ground_state(H, sector="sz0")
    w = np.linalg.eigvalsh(H.to_dense())
    assert abs(e_sec - w[0]) < 1e-9


def test_sector_states_and_errors():
    s = sector_states(6, 3)
    assert len(s) == 20 and np.all(np.diff(s) > 0)
    with pytest.raises(ValueError, match="even number of sites"):
        ground_state(Heisenberg(Chain(5)), sector="sz0")
    with pytest.raises(ValueError, match="does not conserve Sz"):
        ground_state(TransverseFieldIsing(Chain(4)), sector="sz0")
    with pytest.raises(ValueError, match="even N"):
        heisenberg_chain_bethe_energy(7)


def test_basis_order_site0_is_msb():
    # one site flipped field: H = -h X_0 on 3 sites with J = 0 -> check element positions
    H = TransverseFieldIsing(Chain(3, periodic=False), J=0.0, h=1.0)
    M = H.to_dense()
    # state 0b000 (index 0) connects to flipping site 0 -> index 4
    assert M[0, 4] == -1.0 and M[0, 2] == -1.0 and M[0, 1] == -1.0 and M[0, 3] == 0.0
    Hz = TransverseFieldIsing(Chain(3, periodic=False), J=1.0, h=0.0)
    d = np.diag(Hz.to_dense())
    # index 0b100: sigma = (1,0,0), spins (-1,+1,+1): -J(s0 s1 + s1 s2) = -(-1 + 1) = 0
    assert d[4] == 0.0 and d[0] == -2.0 and d[2] == 2.0
