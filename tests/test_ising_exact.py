"""Exact Ising oracles: Kaufman's finite-torus partition function against exact enumeration
(the oracle for the oracle), against Onsager's infinite-lattice energy, and the Onsager–Yang
magnetisation."""

import math

import pytest
import torch
from scipy.special import ellipk

from simulators.ising.exact import (
    BETA_C,
    bond_sum,
    density_of_states,
    energy,
    enumeration_log_z,
    enumeration_observables,
    kaufman_log_z,
    kaufman_observables,
    onsager_magnetisation,
)

BETAS = torch.tensor([0.05, 0.2, 0.35, BETA_C, 0.5, 0.8, 2.0], dtype=torch.float64)


def onsager_energy(beta: float) -> float:
    """Infinite-lattice ⟨E⟩/N (J = 1), Onsager 1944."""
    K = beta
    kappa = 2 * math.sinh(2 * K) / math.cosh(2 * K) ** 2
    return -1.0 / math.tanh(2 * K) * (1 + 2 / math.pi * (2 * math.tanh(2 * K) ** 2 - 1) * ellipk(kappa**2))


@pytest.mark.parametrize("L", [2, 3, 4])
def test_kaufman_equals_enumeration(L):
    k = kaufman_observables(L, BETAS)
    e = enumeration_observables(L, BETAS)
    for key in ("log_z", "energy_per_spin", "specific_heat_per_spin"):
        torch.testing.assert_close(k[key], e[key], rtol=1e-10, atol=1e-10)


def test_enumeration_brute_force_l2():
    # 16 states of the 2x2 torus summed directly, J = 0.7, h = -0.3
    idx = torch.arange(16)
    s = (2 * ((idx.unsqueeze(-1) >> torch.arange(4)) & 1) - 1).reshape(16, 2, 2).to(torch.float64)
    beta, J, h = 0.9, 0.7, -0.3
    direct = torch.logsumexp(-beta * energy(s, J, h), 0)
    assert abs(float(direct) - float(enumeration_log_z(2, beta, J, h))) < 1e-12


def test_density_of_states():
    B, M, g = density_of_states(4)
    assert int(g.sum()) == 2**16
    assert int(g[(B == 32) & (M == 16)]) == 1  # the all-up ground state
    assert int(g[(B == -32)].sum()) == 2  # the two Néel states
    with pytest.raises(ValueError, match="L <= 4"):
        density_of_states(5)


def test_field_symmetry():
    a = enumeration_log_z(4, 0.4, 1.0, 0.25)
    b = enumeration_log_z(4, 0.4, 1.0, -0.25)
    assert abs(float(a - b)) < 1e-12


@pytest.mark.parametrize("beta", [0.3, 0.6])
def test_kaufman_large_lattice_matches_onsager(beta):
    # away from T_c, finite-size corrections are exponentially small in L
    e = float(kaufman_observables(64, torch.tensor([beta], dtype=torch.float64))["energy_per_spin"][0])
    assert abs(e - onsager_energy(beta)) < 1e-9


def test_kaufman_smooth_through_critical_point():
    b = torch.tensor([BETA_C - 1e-7, BETA_C, BETA_C + 1e-7], dtype=torch.float64)
    out = kaufman_observables(32, b)
    assert torch.isfinite(out["specific_heat_per_spin"]).all()
    assert float((out["energy_per_spin"][2] - out["energy_per_spin"][0]).abs()) < 1e-5
    assert abs(float(out["energy_per_spin"][1]) - (-1.4337)) < 1e-4  # Ferdinand–Fisher L = 32
    # C/N at T_c grows like (8/π) K_c² ln L: the difference between L = 64 and 32 is ln 2 (8/π) K_c²
    c64 = float(kaufman_observables(64, b[1:2])["specific_heat_per_spin"][0])
    assert abs((c64 - float(out["specific_heat_per_spin"][1])) - 8 / math.pi * BETA_C**2 * math.log(2)) < 0.01


def test_kaufman_rejects_bad_input():
    with pytest.raises(ValueError, match="L >= 2"):
        kaufman_log_z(1, 0.3)
    with pytest.raises(ValueError, match="K = βJ > 0"):
        kaufman_log_z(8, -0.1)


def test_onsager_magnetisation():
    m = onsager_magnetisation(torch.tensor([0.3, BETA_C, 0.5, 1.0], dtype=torch.float64))
    assert float(m[0]) == 0.0 and float(m[1]) == 0.0
    assert abs(float(m[2]) - (1 - math.sinh(1.0) ** -4) ** 0.125) < 1e-12
    assert abs(float(m[3]) - 0.9992757519570612) < 1e-12
    # m_0 -> 0 continuously at K_c: m_0 ≈ (8√2 (K - K_c))^{1/8}
    k = BETA_C + 1e-6
    assert abs(float(onsager_magnetisation(k)) - (8 * math.sqrt(2) * 1e-6) ** 0.125) < 1e-3


def test_bond_sum_counts_each_bond_once():
    s = torch.ones(3, 6, 6)
    assert torch.equal(bond_sum(s), torch.full((3,), 72.0))  # 2N bonds
