"""Tests of the fast P(k) path (distinct |k|, ln Ω_m table), the batched exact likelihoods of GaussianField and
LognormalField (dense-covariance oracles, normalisation), the Fisher forecast and bad-input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from simulators.cosmology import GaussianField, LognormalField, linear_power


# ----------------------------------------------------------------------------- speed path: tables, batched likelihoods
def test_gauss_quadrature_and_omega_m_table_match_exact():
    """The 1,024-node σ8 rule is within 1e-8 of Simpson; the ln Ω_m table within 1e-7 of exact EH98 + Simpson."""
    from simulators.cosmology.power_table import LogPowerTable

    k = torch.logspace(-3, 1, 120, dtype=torch.float64)
    om = torch.cat([torch.linspace(0.1, 0.5, 37, dtype=torch.float64), torch.tensor([0.1003, 0.1271, 0.4999], dtype=torch.float64)])
    for wiggles in (True, False):
        exact = linear_power(k, om, 1.0, wiggles=wiggles)
        gauss = linear_power(k, om, 1.0, wiggles=wiggles, quadrature="gauss")
        assert float((gauss / exact - 1).abs().max()) < 1e-8
        table = LogPowerTable(k, (0.1, 0.5), omega_b=0.049, h=0.6766, n_s=0.9665, wiggles=wiggles)
        err = float((table(om) - exact.log()).abs().max())
        print(f"ln P table (wiggles={wiggles}): max |error| {err:.1e}")
        assert err < 1e-7
    with pytest.raises(ValueError, match="quadrature must be"):
        linear_power(k, 0.3, 0.8, quadrature="trapezoid")


def test_field_power_grid_matches_exact_and_free_shape_params():
    sim = GaussianField(16, 128.0, 2, dtype=torch.float64)
    grid = sim.grid()
    theta = torch.tensor([[0.13, 0.61], [0.3111, 0.8102], [0.47, 0.99]], dtype=torch.float64)
    P = sim.power_grid(theta)
    for b in range(3):
        ref = linear_power(grid.kmag.flatten(), float(theta[b, 0]), float(theta[b, 1])).reshape(grid.rshape) / 128.0
        ok = grid.m2 > 0
        assert float((P[b][ok] / ref[ok] - 1).abs().max()) < 1e-7 and float(P[b][~ok].abs().max()) == 0.0
    free = GaussianField(16, 128.0, 2, params=("Omega_m", "sigma8", "h"), dtype=torch.float64)
    th = torch.tensor([0.3, 0.8, 0.7], dtype=torch.float64)
    ref = linear_power(grid.kmag.flatten(), 0.3, 0.8, h=0.7).reshape(grid.rshape) / 128.0
    assert float((free.power_grid(th)[grid.m2 > 0] / ref[grid.m2 > 0] - 1).abs().max()) < 1e-7


def test_log_likelihood_batched_equals_fft_oracle():
    """The distinct-|k| sum equals the plain FFT likelihood (fourier.gaussian_log_likelihood) for a batch of θ."""
    from simulators.cosmology import gaussian_log_likelihood

    sim = GaussianField(32, 256.0, 2, dtype=torch.float64)
    theta = sim.prior.sample((64,)).double()
    x = sim.simulate(torch.tensor([0.3, 0.8]), generator=torch.Generator().manual_seed(0))
    ll = sim.log_likelihood(theta, x)
    ref = gaussian_log_likelihood(x, sim.power_grid(theta), 256.0, 2)
    assert ll.shape == (64,)
    torch.testing.assert_close(ll, ref, rtol=1e-12, atol=1e-9)
    xs = sim.simulate(theta[:4], generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(sim.log_likelihood(theta[:4], xs), gaussian_log_likelihood(xs, sim.power_grid(theta[:4]), 256.0, 2))


def test_wrong_grid_size_names_expected_shape():
    sim = GaussianField(32, 256.0, 2)
    with pytest.raises(ValueError, match=r"x must be fields of shape \(\*B, 32, 32\)"):
        sim.log_likelihood(torch.tensor([0.3, 0.8]), torch.zeros(16, 16))
    with pytest.raises(ValueError, match=r"\(\*B, 8, 8\)"):
        LognormalField(8, 80.0, 2).log_likelihood(torch.tensor([0.3, 0.8]), torch.zeros(3, 9, 9))


# ----------------------------------------------------------------------------- lognormal likelihood
def _dense_gaussian_logpdf(G: np.ndarray, PG: np.ndarray, box: float, n: int) -> float:
    """ln N(G; 0, C_G) on the zero-mean hyperplane of an n x n grid, C_G from the full-grid spectrum PG (dense)."""
    Nc = n * n
    xi = np.fft.ifftn(PG).real * Nc / box**2
    coords = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"), -1).reshape(-1, 2)
    diff = (coords[:, None, :] - coords[None, :, :]) % n
    C = xi[diff[..., 0], diff[..., 1]]
    Q = np.linalg.svd(np.eye(Nc) - 1.0 / Nc)[0][:, : Nc - 1]
    return float(stats.multivariate_normal(mean=np.zeros(Nc - 1), cov=Q.T @ C @ Q).logpdf(Q.T @ G.reshape(-1)))


@pytest.mark.parametrize("n", [4, 6])
def test_lognormal_log_likelihood_dense_oracle(n):
    box = 12.0 * n
    sim = LognormalField(n, box, 2, dtype=torch.float64)
    theta = torch.tensor([[0.3, 0.8], [0.45, 0.65]], dtype=torch.float64)
    x = sim.simulate(theta, generator=torch.Generator().manual_seed(3))
    ll = sim.log_likelihood(theta, x)
    grid = sim.grid()
    for b in range(2):
        PG, var = sim.gaussian_power_grid(theta[b])
        full = torch.fft.irfftn(PG, s=grid.shape, norm="forward")  # back to the full grid layout via ξ
        PG_full = torch.fft.fftn(full, norm="forward").real.numpy()
        G = (torch.log1p(x[b]) + var / 2).numpy()
        ref = _dense_gaussian_logpdf(G, PG_full, box, n) - float(torch.log1p(x[b]).sum())
        assert abs(float(ll[b]) - ref) < 1e-8 * max(1.0, abs(ref)), (float(ll[b]), ref)
    assert sim.log_likelihood(theta[0], torch.full((n, n), -1.5, dtype=torch.float64)) == -math.inf


def test_lognormal_likelihood_normalises_and_tends_to_gaussian():
    """E_{δ~p(.|θ0)}[p(δ|θ1)/p(δ|θ0)] = 1 (importance identity); small amplitude: same Δ ln p as the Gaussian field."""
    sim = LognormalField(6, 72.0, 2, dtype=torch.float64)
    t0, t1 = torch.tensor([0.3, 0.8], dtype=torch.float64), torch.tensor([0.32, 0.83], dtype=torch.float64)
    x = sim.simulate(t0.expand(20000, 2), generator=torch.Generator().manual_seed(7))
    w = (sim.log_likelihood(t1.expand(20000, 2), x) - sim.log_likelihood(t0.expand(20000, 2), x)).exp()
    se = float(w.std()) / 20000**0.5
    assert abs(float(w.mean()) - 1) < 4 * se + 1e-3, (float(w.mean()), se)
    tiny = {"sigma8": (0.001, 0.01)}
    ln = LognormalField(8, 96.0, 2, bounds=tiny, dtype=torch.float64)
    ga = GaussianField(8, 96.0, 2, bounds=tiny, dtype=torch.float64)
    th = torch.tensor([[0.3, 0.005], [0.4, 0.006]], dtype=torch.float64)
    xg = ln.simulate(th[0], generator=torch.Generator().manual_seed(0))
    d_ln = float(ln.log_likelihood(th[1], xg) - ln.log_likelihood(th[0], xg))
    d_ga = float(ga.log_likelihood(th[1], xg) - ga.log_likelihood(th[0], xg))
    assert abs(d_ln - d_ga) < 1e-2 * max(1.0, abs(d_ga)), (d_ln, d_ga)


def test_fisher_matches_mean_hessian():
    """F = 1/2 Σ_modes ∂lnP ∂lnP equals the average of -∇² ln p over simulated fields (Monte Carlo)."""
    from simulators.cosmology import fisher_matrix, fisher_sigma

    sim = GaussianField(16, 128.0, 2, dtype=torch.float64)
    th = torch.tensor([0.3, 0.8], dtype=torch.float64)
    x = sim.simulate(th.expand(200, 2), generator=torch.Generator().manual_seed(0))
    H = sum(torch.autograd.functional.hessian(lambda t, i=i: sim.log_likelihood(t, x[i]), th) for i in range(200)) / 200
    F = fisher_matrix(sim, th)
    torch.testing.assert_close(-H, F, rtol=0.1, atol=0.0)
    sig = fisher_sigma(sim, th.expand(3, 2))
    assert sig.shape == (3, 2) and torch.allclose(sig[0], torch.linalg.inv(F).diagonal().sqrt())
    with pytest.raises(ValueError, match="needs a GaussianField"):
        fisher_matrix(LognormalField(8, 80.0), th)


def test_lognormal_field_is_a_contrast_against_its_box_mean_unless_asked_otherwise():
    from simulators.cosmology import LognormalField

    th = torch.tensor([[0.2, 0.7], [0.4, 0.9]])
    x = LognormalField(16, 200.0).simulate(th, generator=torch.Generator().manual_seed(0))
    assert float(x.double().mean((-1, -2)).abs().max()) < 1e-6 and bool((x > -1).all())
    old = LognormalField(16, 200.0, zero_mean=False)
    y = old.simulate(th.repeat(3, 1), generator=torch.Generator().manual_seed(1)).double()
    _, var = old.gaussian_power_grid(th.double())
    # the old convention pins mean ln(1 + δ) = -σ_G^2(θ)/2 in every box: information the likelihood ignores
    torch.testing.assert_close(torch.log1p(y).mean((-1, -2)).reshape(3, 2), (-var / 2).expand(3, 2),
                               atol=1e-5, rtol=0)


def test_convergence_map_likelihood_without_shape_noise_has_an_unbiased_score():
    from simulators.cosmology import ConvergenceMap

    c = ConvergenceMap(16, 200.0, n_gal=0)
    th = torch.tensor([0.3, 0.8], dtype=torch.float64)
    n = 3000
    x = c.simulate(th.float().expand(n, 2).clone(), generator=torch.Generator().manual_seed(0))
    t = th.expand(n, 2).clone().requires_grad_(True)
    ll = c.log_likelihood(t, x)
    (score,) = torch.autograd.grad(ll.sum(), t)
    # E[∂ ln p / ∂θ] = 0 at the true θ for a normalised density; a Jacobian off by ln W biases it by ~1/Ω_m
    z = score.mean(0) / (score.std(0) / n**0.5)
    assert bool((z.abs() < 4).all()), z
    off = c.log_likelihood(torch.tensor([[0.25, 0.8], [0.3, 0.85]], dtype=torch.float64).unsqueeze(1), x[:200])
    assert bool((ll[:200].detach().mean() > off.mean(-1)).all())  # the true θ is the most likely on average
    assert float(c.log_likelihood(torch.tensor([0.05, 0.8]), x[0])) == -math.inf  # outside the prior


def test_convergence_map_with_shape_noise_says_why_it_has_no_likelihood():
    from simulators.cosmology import ConvergenceMap

    noisy = ConvergenceMap(16, 200.0)
    assert not hasattr(noisy, "log_likelihood")
    with pytest.raises(AttributeError, match=r"no tractable log_likelihood.*n_gal = 0"):
        noisy.log_likelihood(torch.tensor([0.3, 0.8]), torch.zeros(16, 16))
    with pytest.raises(ValueError, match=r"\(\*B, 16, 16\)"):
        ConvergenceMap(16, 200.0, n_gal=0).log_likelihood(torch.tensor([0.3, 0.8]), torch.zeros(8, 8))
