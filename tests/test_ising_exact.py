"""Exact Ising oracles: Kaufman's finite-torus partition function against exact enumeration
(the oracle for the oracle), against Onsager's infinite-lattice energy, and the Onsager–Yang
magnetisation."""

import math

import numpy as np
import pytest
import torch
from scipy.special import ellipk
from scipy.stats import kstest

from simulators.ising import Ising
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


# ------------------------------------------------------------------ exact grid posteriors
def _independent_beta_posterior(L, B, low, high, n=200_001):
    """Posterior of β given the bond sum B (uniform prior, J = 1, h = 0) on a numpy grid, Kaufman's ln Z."""
    grid = np.linspace(low, high, n)
    lp = grid * B - kaufman_log_z(L, torch.tensor(grid)).numpy()
    p = np.exp(lp - lp.max())
    p /= np.trapezoid(p, grid)
    mean = np.trapezoid(grid * p, grid)
    return grid, p, mean, math.sqrt(np.trapezoid((grid - mean) ** 2 * p, grid))


def _config_with_bond_sum(L, seed):
    sim = Ising(L, sweeps=50)
    return sim.simulate(torch.tensor([0.42]), generator=torch.Generator().manual_seed(seed))


def test_grid_posterior_l4_enumeration_equals_kaufman():
    # Ising(4) normalises by enumeration; the independent reference uses Kaufman's ln Z on a numpy grid
    s = _config_with_bond_sum(4, 0)
    B = float(bond_sum(s))
    post = Ising(4).grid_posterior(s)
    grid, p, mean, sd = _independent_beta_posterior(4, B, 0.2, 0.8)
    dens = np.interp(post.axes[0].numpy(), grid, p)
    np.testing.assert_allclose(post.log_density.exp().numpy(), dens, rtol=1e-5, atol=1e-8)
    m, s_ = post.mean_std()
    assert abs(float(m) - mean) < 1e-6 and abs(float(s_) - sd) < 1e-6


def test_grid_refinement_converges_like_h_squared():
    s = _config_with_bond_sum(16, 1)
    sim = Ising(16)
    _, _, mean, sd = _independent_beta_posterior(16, float(bond_sum(s)), 0.2, 0.8, n=400_001)
    errs = []
    for n in (33, 129, 513, 4097):
        m, v = sim.grid_posterior(s, n_grid=n).mean_std()
        errs.append(abs(float(v) - sd) + abs(float(m) - mean))
    assert errs[-1] < 1e-6 * sd / 0.03
    assert errs[1] < errs[0] / 8 and errs[2] < errs[1] / 8  # ~16x per 4x refinement (second order)


def test_exact_posterior_samples_follow_the_independent_cdf():
    s = _config_with_bond_sum(16, 2)
    draws = Ising(16).exact_posterior(s, 20_000, seed=3)
    assert draws.shape == (20_000, 1) and draws.dtype == torch.float32
    grid, p, _, _ = _independent_beta_posterior(16, float(bond_sum(s)), 0.2, 0.8)
    cdf = np.concatenate([[0.0], np.cumsum((p[1:] + p[:-1]) / 2 * np.diff(grid))])
    assert kstest(draws[:, 0].double().numpy(), lambda v: np.interp(v, grid, cdf)).pvalue > 1e-3
    assert torch.equal(Ising(16).exact_posterior(s, 20_000, seed=3), draws)  # same seed, same draws


def test_beta_h_posterior_l4_against_direct_quadrature():
    # (β, h) at L = 4: the grid posterior against a midpoint-rule quadrature of g(B, M) e^{βB + βhM} / Z
    sim = Ising(4, params=("beta", "h"))
    s = sim.simulate(torch.tensor([0.5, 0.3]), generator=torch.Generator().manual_seed(4))
    Bx, Mx = float(bond_sum(s)), float(s.sum())
    Bs, Ms, g = (t.double().numpy() for t in density_of_states(4))
    n = 401
    b = 0.2 + (np.arange(n) + 0.5) * 0.6 / n
    h = -1.0 + (np.arange(n) + 0.5) * 2.0 / n
    bb, hh = np.meshgrid(b, h, indexing="ij")
    logw = np.log(g)[None, None] + bb[..., None] * Bs + (bb * hh)[..., None] * Ms
    top = logw.max(-1, keepdims=True)
    logz = (top + np.log(np.exp(logw - top).sum(-1, keepdims=True)))[..., 0]
    lp = bb * Bx + bb * hh * Mx - logz
    w = np.exp(lp - lp.max())
    w /= w.sum()
    mean = np.array([(w * bb).sum(), (w * hh).sum()])
    sd = np.sqrt([(w * (bb - mean[0]) ** 2).sum(), (w * (hh - mean[1]) ** 2).sum()])
    m, v = sim.grid_posterior(s).mean_std()
    np.testing.assert_allclose(m.numpy(), mean, atol=2e-5)
    np.testing.assert_allclose(v.numpy(), sd, atol=2e-5)
    draws = sim.exact_posterior(s, 40_000, seed=0).double()
    assert draws.shape == (40_000, 2)
    np.testing.assert_allclose(draws.mean(0).numpy(), mean, atol=4 * sd.max() / 200)
    np.testing.assert_allclose(draws.std(0).numpy(), sd, rtol=0.03)


def test_exact_posterior_is_calibrated_on_simulated_lattices():
    # PIT of the true β under the exact posterior of equilibrated lattices is uniform: this checks the
    # simulator's equilibration as much as the posterior (an unequilibrated chain biases the bond sums)
    sim = Ising(8)
    gen = torch.Generator().manual_seed(5)
    theta = sim.prior.sample((300,))
    x = sim.simulate(theta, generator=gen)
    pit = torch.stack([sim.grid_posterior(x[k], n_grid=1025).cdf(theta[k, 0]) for k in range(len(x))])
    assert kstest(pit.numpy(), "uniform").pvalue > 0.01


def test_grid_posterior_needs_a_bounded_prior():
    sim = Ising(8, prior=torch.distributions.Independent(torch.distributions.HalfNormal(torch.tensor([0.5])), 1))
    with pytest.raises(ValueError, match="bounded box"):
        sim.exact_posterior(torch.ones(8, 8), 10, seed=0)
