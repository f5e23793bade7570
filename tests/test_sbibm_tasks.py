"""simulators.sbibm: the sbibm tasks.

Contract (shapes, batching, broadcasting, determinism, -inf outside the prior), likelihood vs
simulator (exact Gaussian oracles; histogram chi² against the integrated density for the 2-d
tasks), and every reference posterior against an independent method: the closed form for
GaussianLinear, a fine grid of prior × likelihood for TwoMoons / GaussianMixture, importance
sampling with a defensive proposal (weights from log_likelihood) for SLCP.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from physgen.core import Simulator
from physgen.diagnostics import c2st
from simulators.sbibm import SLCP, GaussianLinear, GaussianMixture, TwoMoons, get_task

DIMS = {"gaussian_linear": (10, 10), "two_moons": (2, 2), "slcp": (5, 8), "gaussian_mixture": (2, 2)}
# one observation per task, simulated at a fixed θ (the SLCP one is sbibm's observation-1 θ)
THETA_OBS = {
    "gaussian_linear": [0.3, -0.2, 0.1, 0.5, -0.4, 0.0, 0.2, -0.1, 0.6, -0.3],
    "two_moons": [0.3, -0.1],
    "slcp": [0.7, -2.9, -1.0, -0.9, 0.6],
    "gaussian_mixture": [1.0, -2.0],
}


def _obs(task, seed: int = 0, theta=None) -> torch.Tensor:
    theta = torch.tensor(THETA_OBS[task.name] if theta is None else theta, dtype=torch.float64)
    return task.simulate(theta, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- contract
@pytest.mark.parametrize("name", sorted(DIMS))
def test_contract_shapes_and_batching(name):
    task = get_task(name)
    d, f = DIMS[name]
    assert isinstance(task, Simulator) and task.name == name and task.x_shape == (f,)
    assert isinstance(task.config, dict)
    g = torch.Generator().manual_seed(0)
    theta = task.prior.sample((3, 4))
    assert theta.shape == (3, 4, d)
    x = task.simulate(theta, generator=g)
    assert x.shape == (3, 4, f) and x.dtype == theta.dtype and torch.isfinite(x).all()
    assert task.simulate(theta[0, 0], generator=g).shape == (f,)
    ll = task.log_likelihood(theta, x)
    assert ll.shape == (3, 4) and torch.isfinite(ll).all()
    # broadcasting: every θ against every x
    ll_all = task.log_likelihood(theta.reshape(12, 1, d), x.reshape(1, 12, f))
    assert ll_all.shape == (12, 12)
    torch.testing.assert_close(ll_all.diagonal(), ll.reshape(12))
    # same generator seed -> same simulations; the reference sampler is seeded
    x1 = task.simulate(theta, generator=torch.Generator().manual_seed(5))
    x2 = task.simulate(theta, generator=torch.Generator().manual_seed(5))
    assert torch.equal(x1, x2)
    xo = _obs(task)
    r1, r2 = task.reference_posterior(xo, 50, seed=1), task.reference_posterior(xo, 50, seed=1)
    assert r1.shape == (50, d) and torch.equal(r1, r2)
    assert not torch.equal(r1, task.reference_posterior(xo, 50, seed=2))
    assert torch.isfinite(task.prior.log_prob(r1)).all()
    with pytest.raises(ValueError, match="theta has shape"):
        task.simulate(torch.zeros(3, d + 1))
    with pytest.raises(ValueError, match="x_obs must have shape"):
        task.reference_posterior(torch.zeros(f + 1), 10)


@pytest.mark.parametrize("name", ["two_moons", "slcp", "gaussian_mixture"])
def test_outside_prior_is_minus_inf(name):
    task = get_task(name)
    d, _ = DIMS[name]
    hi = float(task.prior.high[0])
    theta = torch.zeros(3, d)
    theta[0, 0], theta[1, -1], theta[2, 0] = 1.01 * hi, -1.5 * hi, hi * (1 + 1e-6)  # the box is closed [low, high]
    assert torch.isneginf(task.prior.log_prob(theta)).all()
    edge = torch.zeros(1, d)
    edge[0, 0] = hi
    assert torch.isfinite(task.prior.log_prob(edge)).all()
    x = task.simulate(torch.zeros(d), generator=torch.Generator().manual_seed(0))
    assert torch.isneginf(task.log_joint(theta, x)).all()
    assert torch.isfinite(task.log_joint(torch.zeros(d), x))


def test_get_task_unknown_name():
    with pytest.raises(ValueError, match="unknown sbibm task 'moons'"):
        get_task("moons")


# ---------------------------------------------------------------- likelihood vs simulator
def test_gaussian_linear_matches_sbibm_definition_and_closed_form():
    task = GaussianLinear()
    cov = task.prior.covariance_matrix
    torch.testing.assert_close(cov, 0.1 * torch.eye(10))  # sbibm: precision = inverse(0.1 I)
    theta = torch.randn(7, 10, dtype=torch.float64)
    x = task.simulate(theta, generator=torch.Generator().manual_seed(1))
    ref = torch.distributions.MultivariateNormal(theta, 0.1 * torch.eye(10, dtype=torch.float64)).log_prob(x)
    torch.testing.assert_close(task.log_likelihood(theta, x), ref)
    # the closed-form posterior is prior × likelihood up to a constant: the difference is flat in θ
    xo = _obs(task)
    th = torch.randn(50, 10, dtype=torch.float64)
    diff = task.log_joint(th, xo) - task.posterior(xo).log_prob(th)
    assert float(diff.std()) < 1e-4  # the prior is float32; a wrong posterior gives O(1)
    s = task.reference_posterior(xo, 20000, seed=0)
    torch.testing.assert_close(s.mean(0), xo / 2, atol=4 * math.sqrt(0.05 / 20000), rtol=0)
    emp_cov = torch.cov(s.T)
    torch.testing.assert_close(emp_cov, 0.05 * torch.eye(10, dtype=s.dtype), atol=0.004, rtol=0)


def test_slcp_likelihood_is_four_gaussians_with_sbibm_eps():
    task = SLCP()
    g = torch.Generator().manual_seed(2)
    theta = (torch.rand(6, 5, generator=g, dtype=torch.float64) - 0.5) * 6
    x = task.simulate(theta, generator=g)
    s1, s2, rho = theta[:, 2] ** 2, theta[:, 3] ** 2, torch.tanh(theta[:, 4])
    S = torch.stack([torch.stack([s1**2 + 1e-6, rho * s1 * s2], -1), torch.stack([rho * s1 * s2, s2**2 + 1e-6], -1)], -2)
    mvn = torch.distributions.MultivariateNormal(theta[:, None, :2], S[:, None])
    ref = mvn.log_prob(x.reshape(6, 4, 2)).sum(-1)
    torch.testing.assert_close(task.log_likelihood(theta, x), ref, rtol=1e-9, atol=1e-9)
    # simulate draws from that Gaussian: empirical mean and covariance of many points
    th = torch.tensor([0.5, -1.0, 1.1, 0.9, 0.7], dtype=torch.float64)
    pts = task.simulate(th.expand(50000, 5), generator=g).reshape(-1, 2)
    s1, s2, r = 1.1**2, 0.9**2, math.tanh(0.7)
    S_true = torch.tensor([[s1**2, r * s1 * s2], [r * s1 * s2, s2**2]], dtype=torch.float64)
    torch.testing.assert_close(pts.mean(0), th[:2], atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(pts.T), S_true, atol=0.03, rtol=0)


def _binned_chi2(task, theta0, lo, hi, nbins, sub, n, seed):
    """χ² of simulated counts against the integrated exp(log_likelihood) on a 2-d bin grid."""
    theta0 = torch.tensor(theta0, dtype=torch.float64)
    x = task.simulate(theta0.expand(n, 2), generator=torch.Generator().manual_seed(seed)).numpy()
    counts, ex, ey = np.histogram2d(x[:, 0], x[:, 1], bins=nbins, range=[[lo[0], hi[0]], [lo[1], hi[1]]])
    m = nbins * sub
    gx = lo[0] + (np.arange(m) + 0.5) * (hi[0] - lo[0]) / m
    gy = lo[1] + (np.arange(m) + 0.5) * (hi[1] - lo[1]) / m
    X = torch.tensor(np.stack(np.meshgrid(gx, gy, indexing="ij"), -1))
    dens = task.log_likelihood(theta0, X).exp().numpy() * (hi[0] - lo[0]) * (hi[1] - lo[1]) / m**2
    prob = dens.reshape(nbins, sub, nbins, sub).sum((1, 3))
    expected = n * prob
    keep = expected > 5
    chi2 = float((((counts - expected) ** 2)[keep] / expected[keep]).sum())
    return chi2, int(keep.sum()), float(prob.sum()), float(counts.sum() / n)


def test_two_moons_likelihood_matches_simulator():
    task = TwoMoons()
    # θ = (0.3, -0.1): shift (-|z1|, z2) = (-0.1414, -0.2828); the moon lies in 0.25 ± 0.15 around it
    c = np.array([0.25 - 0.2 / math.sqrt(2), -0.4 / math.sqrt(2)])
    chi2, df, mass, frac = _binned_chi2(task, [0.3, -0.1], c - [0.16, 0.16], c + [0.16, 0.16], 32, 16, 200_000, 3)
    assert abs(mass - 1.0) < 2e-3 and abs(frac - 1.0) < 1e-6  # the density integrates to one
    assert chi2 < df + 5 * math.sqrt(2 * df), (chi2, df)


def test_gaussian_mixture_likelihood_matches_simulator_per_row_component():
    task = GaussianMixture()
    chi2, df, mass, frac = _binned_chi2(task, [1.0, -2.0], [-4.0, -7.0], [6.0, 3.0], 40, 10, 200_000, 4)
    assert abs(mass - frac) < 2e-3
    assert chi2 < df + 5 * math.sqrt(2 * df), (chi2, df)
    # the component is drawn per row (sbibm drew one per batch): P(|x - θ| < 0.3) = 0.5165
    x = task.simulate(torch.zeros(20000, 2), generator=torch.Generator().manual_seed(5))
    p = 0.5 * (1 - math.exp(-0.09 / 2)) + 0.5 * (1 - math.exp(-0.09 / 0.02))
    frac_in = float((x.norm(dim=-1) < 0.3).double().mean())
    assert abs(frac_in - p) < 4 * math.sqrt(p * (1 - p) / 20000)


# ---------------------------------------------------------------- reference posteriors
def _grid_posterior_samples(task, x_obs, lo, hi, m, n, seed):
    """Samples from prior × likelihood tabulated on an m × m grid (cells jittered uniformly)."""
    h = (np.asarray(hi) - np.asarray(lo)) / m
    gx = torch.tensor(lo[0] + (np.arange(m) + 0.5) * h[0])
    gy = torch.tensor(lo[1] + (np.arange(m) + 0.5) * h[1])
    T = torch.stack(torch.meshgrid(gx, gy, indexing="ij"), -1).reshape(-1, 2)
    lj = task.log_joint(T, x_obs)
    w = torch.exp(lj - lj.max())
    g = torch.Generator().manual_seed(seed)
    idx = torch.multinomial(w, n, replacement=True, generator=g)
    jitter = (torch.rand(n, 2, generator=g, dtype=torch.float64) - 0.5) * torch.tensor(h)
    return T[idx] + jitter


def _compare_2d(ref, other, c2st_n=2000):
    for v in ([1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, -1.0]):
        v = torch.tensor(v, dtype=torch.float64)
        p = stats.ks_2samp((ref @ v).numpy(), (other @ v).numpy()).pvalue
        assert p > 1e-3, (v.tolist(), p)
    acc = c2st(ref[:c2st_n], other[:c2st_n])
    assert acc < 0.56, acc
    return acc


@pytest.mark.parametrize("theta_obs", [[0.3, -0.1], [0.06, -0.1]])
def test_two_moons_reference_matches_grid_posterior(theta_obs):
    # the second θ lies near the fold z1 = 0, where draws with |z1| < 0 must be rejected
    task = TwoMoons()
    x_obs = _obs(task, seed=7, theta=theta_obs)
    ref = task.reference_posterior(x_obs, 4000, seed=0).double()
    grid = _grid_posterior_samples(task, x_obs, [-1.0, -1.0], [1.0, 1.0], 1000, 4000, seed=1)
    _compare_2d(ref, grid)


def test_gaussian_mixture_reference_matches_grid_posterior():
    task = GaussianMixture()
    # near the box edge, so that the truncation matters
    x_obs = _obs(task, seed=8, theta=[9.3, -2.0])
    ref = task.reference_posterior(x_obs, 4000, seed=0).double()
    lo = [max(-10.0, float(x_obs[0]) - 6), max(-10.0, float(x_obs[1]) - 6)]
    hi = [min(10.0, float(x_obs[0]) + 6), min(10.0, float(x_obs[1]) + 6)]
    grid = _grid_posterior_samples(task, x_obs, lo, hi, 1200, 4000, seed=1)
    _compare_2d(ref, grid)
    assert float(ref[:, 0].max()) < 10.0


def _slcp_importance(task, x_obs, ref_centres, n_prop, seed):
    """Self-normalised importance sampling of prior × likelihood with the proposal
    0.3·prior + 0.7·KDE(ref_centres) (the prior part guarantees coverage, so the weights are
    right whatever the centres are). Returns (proposals, normalised weights, ESS)."""
    g = torch.Generator().manual_seed(seed)
    k = ref_centres.shape[0]
    bw = 0.5 * torch.cat([ref_centres[:, :2], ref_centres[:, 2:4].abs(), ref_centres[:, 4:]], 1).std(0)
    n_kde = int(0.7 * n_prop)
    idx = torch.randint(k, (n_kde,), generator=g)
    prop = torch.cat(
        [
            ref_centres[idx] + bw * torch.randn(n_kde, 5, generator=g, dtype=torch.float64),
            (torch.rand(n_prop - n_kde, 5, generator=g, dtype=torch.float64) - 0.5) * 6,
        ]
    )
    zc = ref_centres / bw
    log_norm = -torch.log(bw).sum() - 2.5 * math.log(2 * math.pi) - math.log(k)
    log_kde = torch.cat(
        [torch.logsumexp(-0.5 * torch.cdist(chunk / bw, zc) ** 2, dim=1) + log_norm for chunk in prop.split(10000)]
    )
    log_q = torch.logaddexp(math.log(0.7) + log_kde, torch.full_like(log_kde, math.log(0.3) - 5 * math.log(6.0)))
    log_w = task.log_joint(prop, x_obs) - log_q
    w = torch.exp(log_w - log_w.max())
    w = w / w.sum()
    return prop, w, float(1.0 / (w**2).sum())


def test_slcp_reference_matches_importance_sampling():
    task = SLCP()
    x_obs = _obs(task, seed=0)
    ref = task.reference_posterior(x_obs, 6000, seed=0).double()
    assert task.last_reference_info["bound_raised"] == 0
    prop, w, ess = _slcp_importance(task, x_obs, ref[:500], 100_000, seed=1)
    assert ess > 5000, ess
    # sign-folded statistics (the posterior is symmetric under θ3 -> -θ3 and θ4 -> -θ4)
    fold = lambda t: torch.stack([t[:, 0], t[:, 1], t[:, 2].abs(), t[:, 3].abs(), t[:, 4]], 1)  # noqa: E731
    f_ref, f_is = fold(ref[500:]), fold(prop)
    mean_is = (w[:, None] * f_is).sum(0)
    sd_is = ((w[:, None] * (f_is - mean_is) ** 2).sum(0)).sqrt()
    se = sd_is * math.sqrt(1 / len(f_ref) + 1 / ess)
    assert torch.all((f_ref.mean(0) - mean_is).abs() < 4 * se), (f_ref.mean(0), mean_is, se)
    torch.testing.assert_close(f_ref.std(0), sd_is, rtol=0.06, atol=0)
    # sign symmetry of the reference itself
    for j in (2, 3):
        assert abs(float((ref[:, j] > 0).double().mean()) - 0.5) < 4 * math.sqrt(0.25 / len(ref))
    # SIR draws from the weighted proposals against held-out reference samples
    sir = prop[torch.multinomial(w, 2000, replacement=True, generator=torch.Generator().manual_seed(2))]
    acc = c2st(ref[500:2500], sir)
    assert acc < 0.56, acc


@pytest.mark.slow
@pytest.mark.parametrize("theta_obs", [[-2.64, 1.63, 0.05, 0.57, 2.33], [0.65, 2.47, -1.36, 0.04, 1.84]])
def test_slcp_reference_near_degenerate_observations(theta_obs):
    # θ3 or θ4 ≈ 0: a point spread comparable to sbibm's ε = 1e-6 covariance jitter
    task = SLCP()
    x_obs = _obs(task, seed=1, theta=theta_obs)
    ref = task.reference_posterior(x_obs, 6000, seed=0).double()
    prop, w, ess = _slcp_importance(task, x_obs, ref[:500], 400_000, seed=1)
    assert ess > 2000, ess
    sir = prop[torch.multinomial(w, 2000, replacement=True, generator=torch.Generator().manual_seed(2))]
    assert c2st(ref[500:2500], sir) < 0.56


@pytest.mark.slow
@pytest.mark.parametrize("name", ["two_moons", "slcp", "gaussian_mixture"])
def test_simulation_based_calibration(name):
    """θ* ~ prior, x ~ simulator(θ*): the rank of θ* among reference samples is uniform."""
    task = get_task(name)
    g = torch.Generator().manual_seed(11)
    n_obs, n_post = 300, 99
    theta = task.prior.sample((n_obs,)).double()
    x = task.simulate(theta, generator=g)
    ranks = torch.stack([(task.reference_posterior(x[i], n_post, seed=i) < theta[i]).sum(0) for i in range(n_obs)])
    for j in range(ranks.shape[1]):
        counts = np.bincount(ranks[:, j].numpy() // 10, minlength=10)
        assert stats.chisquare(counts).pvalue > 1e-3, (j, counts)
