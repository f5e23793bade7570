"""physgen.mcmc: the emcee reference against closed forms, convergence checks, the batched sampler.

Exact oracles: the analytic gaussian_linear posterior and the exact two_moons reference (C2ST,
slow); posterior moments against the closed form (default suite); batched Metropolis on a batch
of Gaussians with known means and covariances.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from physgen.mcmc import Convergence, batched_metropolis, check_convergence, draws, log_posterior, reference_posterior
from simulators.sbibm import GaussianLinear, TwoMoons

THETA_GL = [0.3, -0.2, 0.1, 0.5, -0.4, 0.0, 0.2, -0.1, 0.6, -0.3]


def _obs(task, theta, seed=0):
    return task.simulate(torch.tensor(theta), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- log_posterior
def test_log_posterior_is_prior_plus_likelihood_and_minus_inf_outside_support():
    task = TwoMoons()
    x = _obs(task, [0.3, -0.1])
    lp = log_posterior(task, x)
    theta = torch.tensor([[0.2, -0.3], [1.5, 0.0], [0.0, -1.01]])
    out = lp(theta)
    assert out.shape == (3,)
    assert torch.isneginf(out[1:]).all()
    expected = task.prior.log_prob(theta[:1]) + task.log_likelihood(theta[:1], x)
    assert torch.allclose(out[:1], expected)
    assert lp(theta[None]).shape == (1, 3)  # any batch shape


def test_log_posterior_never_evaluates_likelihood_outside_support():
    class Strict(TwoMoons):
        def log_likelihood(self, theta, x):
            assert bool((theta.abs() <= 1).all()), "likelihood called outside the support"
            return super().log_likelihood(theta, x)

    lp = log_posterior(Strict(), torch.tensor([0.1, 0.2]))
    out = lp(torch.tensor([[2.0, 0.0], [0.1, 0.1]]))
    assert torch.isneginf(out[0]) and torch.isfinite(out[1])


def test_simulator_without_log_likelihood_raises_a_clear_error():
    class NoLikelihood:
        name = "black_box"
        prior = TwoMoons().prior

    with pytest.raises(ValueError, match=r"black_box.*no log_likelihood.*calibration"):
        log_posterior(NoLikelihood(), torch.zeros(2))
    with pytest.raises(ValueError, match="black_box"):
        reference_posterior(NoLikelihood(), torch.zeros(2), num_samples=10)


# ---------------------------------------------------------------- check_convergence
def _ar1(rng, chains, n, d, rho=0.5):
    z = rng.standard_normal((chains, n, d))
    out = np.empty_like(z)
    out[:, 0] = z[:, 0]
    for t in range(1, n):
        out[:, t] = rho * out[:, t - 1] + math.sqrt(1 - rho**2) * z[:, t]
    return out


def test_check_convergence_passes_good_chains():
    good = _ar1(np.random.default_rng(0), 4, 2000, 2)
    verdict = check_convergence(good)
    assert isinstance(verdict, Convergence)
    assert verdict.converged, verdict.messages
    assert verdict.rhat_max < 1.01 and verdict.ess_bulk_min > 400 and verdict.ess_tail_min > 400
    assert verdict.messages == []


def test_check_convergence_flags_chains_stuck_in_different_modes():
    chains = _ar1(np.random.default_rng(1), 4, 2000, 2)
    chains[:2] += 3.0  # two chains in one mode, two in another, 3 sd apart
    verdict = check_convergence(torch.from_numpy(chains))
    assert not verdict.converged
    assert verdict.rhat_max > 1.5
    assert any("R-hat" in m for m in verdict.messages)


def test_check_convergence_flags_too_few_effective_draws():
    sticky = _ar1(np.random.default_rng(2), 4, 400, 1, rho=0.99)
    verdict = check_convergence(sticky, ess_min=400)
    assert not verdict.converged and any("bulk ESS" in m for m in verdict.messages)
    with pytest.raises(ValueError, match="chains, draws, D"):
        check_convergence(np.zeros((10, 2)))


# ---------------------------------------------------------------- reference_posterior
def test_reference_posterior_gaussian_linear_matches_closed_form_moments():
    task = GaussianLinear(dim=3)
    x = _obs(task, [0.3, -0.2, 0.1])
    idata = reference_posterior(task, x, num_samples=2000, seed=0, num_runs=2, num_walkers=16)
    s = draws(idata)
    attrs = idata.attrs
    assert s.shape[0] >= 2000 and s.shape[1] == 3 and s.dtype == torch.float64
    assert idata.posterior["theta_0"].dims == ("chain", "draw") and idata.posterior.sizes["chain"] == 2
    assert attrs["sampler"] == "emcee" and attrs["thin"] >= 1 and attrs["autocorr_time"] > 1
    post = task.posterior(x)
    ess = attrs["ess_bulk_min"]
    se = math.sqrt(0.05 / ess)  # Monte-Carlo error of the mean
    assert torch.allclose(s.mean(0), post.loc.double(), atol=5 * se)
    # variance within Monte-Carlo error (relative sd of a variance estimate ~ sqrt(2 / ESS))
    assert torch.allclose(s.var(0), torch.full((3,), 0.05, dtype=torch.float64), rtol=5 * math.sqrt(2 / ess))
    # same seed, same draws (a short run: max_steps too small for a reliable τ, hence the warning)
    with pytest.warns(RuntimeWarning):
        a, b, c = (draws(reference_posterior(task, x, num_samples=100, seed=sd, num_runs=2, num_walkers=16,
                                             max_steps=100)) for sd in (3, 3, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_reference_posterior_starts_from_given_points_and_validates_them():
    task = TwoMoons()
    x = _obs(task, [0.3, -0.1])
    with pytest.raises(ValueError, match="finite log posterior"):
        reference_posterior(task, x, num_samples=100, initial=torch.full((100, 2), 5.0))
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        reference_posterior(task, x, num_samples=100, initial=torch.zeros(100, 3))
    start = task.reference_posterior(x, 64, seed=3)
    with pytest.warns(RuntimeWarning, match="max_steps"):  # too short on purpose: the result says so
        idata = reference_posterior(task, x, num_samples=500, num_runs=2, num_walkers=32, initial=start, max_steps=600)
    assert draws(idata).shape[0] >= 500
    assert "unreliable" in idata.attrs["messages"]


@pytest.mark.slow
def test_reference_posterior_gaussian_linear_c2st():
    from physgen.diagnostics import c2st

    task = GaussianLinear()
    x = _obs(task, THETA_GL)
    idata = reference_posterior(task, x, num_samples=10_000, seed=0)
    assert idata.attrs["converged"] == 1
    s = draws(idata)[:10_000]
    assert c2st(s, task.reference_posterior(x, 10_000, seed=1)) <= 0.52


@pytest.mark.slow
def test_reference_posterior_two_moons_c2st():
    from physgen.diagnostics import c2st

    task = TwoMoons()
    x = _obs(task, [0.3, -0.1])
    idata = reference_posterior(task, x, num_samples=10_000, seed=0)
    assert idata.attrs["converged"] == 1
    s = draws(idata)[:10_000]
    assert c2st(s, task.reference_posterior(x, 10_000, seed=1)) <= 0.53


# ---------------------------------------------------------------- batched_metropolis
def _gaussian_batch():
    g = torch.Generator().manual_seed(0)
    B, D = 3, 2
    mu = torch.tensor([[0.0, 0.0], [5.0, -3.0], [-2.0, 10.0]], dtype=torch.float64)
    scales = torch.tensor([[1.0, 0.5], [0.1, 0.2], [3.0, 1.0]], dtype=torch.float64)
    corr = torch.tensor([0.0, 0.8, -0.6], dtype=torch.float64)
    cov = torch.zeros(B, D, D, dtype=torch.float64)
    cov[:, 0, 0], cov[:, 1, 1] = scales[:, 0] ** 2, scales[:, 1] ** 2
    cov[:, 0, 1] = cov[:, 1, 0] = corr * scales[:, 0] * scales[:, 1]
    dist = torch.distributions.MultivariateNormal(mu, covariance_matrix=cov)
    initial = mu + 2 * torch.randn(32, B, D, generator=g, dtype=torch.float64) * scales
    return dist, mu, cov, initial


def test_batched_metropolis_recovers_a_batch_of_gaussians():
    dist, mu, cov, initial = _gaussian_batch()
    samples, acc = batched_metropolis(dist.log_prob, initial, num_steps=1500, burn_in=1000,
                                      generator=torch.Generator().manual_seed(1))
    assert samples.shape == (1500, 32, 3, 2) and acc.shape == (32, 3)
    assert bool(((acc > 0.1) & (acc < 0.5)).all())
    for b in range(3):
        chains = samples[:, :, b].permute(1, 0, 2).numpy()  # (chain, draw, D)
        verdict = check_convergence(chains)
        assert verdict.converged, verdict.messages
        flat = torch.from_numpy(chains.reshape(-1, 2))
        sd = cov[b].diagonal().sqrt()
        assert torch.all((flat.mean(0) - mu[b]).abs() < 5 * sd / math.sqrt(verdict.ess_bulk_min)), (b, flat.mean(0))
        emp = torch.cov(flat.T)
        # covariance within Monte-Carlo error (relative error of a variance ~ sqrt(2 / ESS))
        tol = 6 * math.sqrt(2 / verdict.ess_bulk_min)
        assert torch.allclose(emp.diagonal(), cov[b].diagonal(), rtol=tol)
        corr_emp = emp[0, 1] / emp.diagonal().prod().sqrt()
        corr_true = cov[b, 0, 1] / cov[b].diagonal().prod().sqrt()
        assert abs(float(corr_emp - corr_true)) < tol, (b, corr_emp, corr_true)


def test_batched_metropolis_is_reproducible_and_validates_input():
    dist, _, _, initial = _gaussian_batch()
    run = lambda seed: batched_metropolis(dist.log_prob, initial, num_steps=50, burn_in=50, thin=5,  # noqa: E731
                                          generator=torch.Generator().manual_seed(seed))
    a, acc_a = run(7)
    b, acc_b = run(7)
    c, _ = run(8)
    assert a.shape == (10, 32, 3, 2)
    assert torch.equal(a, b) and torch.equal(acc_a, acc_b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match=r"\(C chains, B observations, D\)"):
        batched_metropolis(dist.log_prob, initial[:, 0], num_steps=10)
    far = initial.clone()
    far[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        batched_metropolis(dist.log_prob, far, num_steps=10)
    outside = lambda th: torch.where(th[..., 0] > 100, 0.0, -math.inf) + 0 * th[..., 1]  # noqa: E731
    with pytest.raises(ValueError, match="inside the support"):
        batched_metropolis(outside, initial, num_steps=10)


def test_batched_metropolis_without_adaptation_keeps_the_target():
    dist, mu, cov, _ = _gaussian_batch()
    eps = torch.randn(64, 3, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    start = mu + torch.einsum("bij,cbj->cbi", torch.linalg.cholesky(cov), eps)  # already stationary
    samples, _ = batched_metropolis(dist.log_prob, start, num_steps=400, burn_in=0, adapt=False,
                                    generator=torch.Generator().manual_seed(2))
    flat = samples[:, :, 1].reshape(-1, 2)
    assert torch.allclose(flat.mean(0), mu[1], atol=5 * 0.2 / math.sqrt(400))


def test_reference_posterior_starts_from_an_amortized_posterior():
    task = GaussianLinear(dim=2)
    x = _obs(task, [0.3, -0.2])
    calls = []

    class ExactPosterior:  # the duck type of physgen's Posterior: sample(n, x, seed=) -> (n, D)
        def sample(self, n, x_obs, *, seed=None):
            calls.append((n, seed))
            return task.reference_posterior(x_obs, n, seed=seed % 2**31)

    with pytest.warns(RuntimeWarning):  # max_steps is too short for a reliable τ on purpose (speed)
        idata = reference_posterior(task, x, num_samples=400, num_runs=2, num_walkers=8, initial=ExactPosterior(),
                                    max_steps=300)
    assert len(calls) == 2 and calls[0][0] >= 8 and calls[0][1] != calls[1][1]  # one call per run, own seeds
    assert draws(idata).shape == (idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"], 2)


# ---------------------------------------------------------------- batched reference (sampler="batched")
def test_batched_reference_gaussian_linear_matches_closed_form_moments():
    task = GaussianLinear(dim=3)
    x = _obs(task, [0.3, -0.2, 0.1])
    idata = reference_posterior(task, x, num_samples=4000, seed=0, sampler="batched", num_chains=64)
    s = draws(idata)
    attrs = idata.posterior.attrs
    assert attrs["sampler"] == "batched_metropolis" and attrs["converged"] == 1 and attrs["num_groups"] == 4
    assert idata.posterior.sizes["chain"] == 4 and s.shape[0] >= 4000
    ess = attrs["ess_bulk_min"]
    assert 400 <= ess <= s.shape[0]  # per-chain ESS: autocorrelation counted, never more than the draws
    post = task.posterior(x)
    se = math.sqrt(0.05 / ess)
    assert torch.allclose(s.mean(0), post.loc.double(), atol=5 * se)
    assert torch.allclose(s.var(0), torch.full((3,), 0.05, dtype=torch.float64), rtol=5 * math.sqrt(2 / ess))
    a, b = (draws(reference_posterior(task, x, num_samples=500, seed=7, sampler="batched", num_chains=16)) for _ in range(2))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="sampler must be 'emcee' or 'batched'"):
        reference_posterior(task, x, sampler="nuts")


def test_batched_reference_flags_a_run_that_is_too_short():
    task = GaussianLinear(dim=3)
    x = _obs(task, [0.3, -0.2, 0.1])
    with pytest.warns(RuntimeWarning, match="max_steps"):
        idata = reference_posterior(task, x, num_samples=100, seed=0, sampler="batched", num_chains=8, burn_in=0,
                                    thin=1, max_steps=100, ess_min=5000)
    assert idata.posterior.attrs["converged"] == 0 and "ESS" in idata.posterior.attrs["messages"]


def test_batched_reference_field_likelihood_matches_emcee():
    """32x32 Gaussian field, exact likelihood: the batched reference converges in seconds and agrees with emcee."""
    from simulators.cosmology import GaussianField

    sim = GaussianField(32, 256.0, 2)
    x = sim.simulate(torch.tensor([0.3, 0.8]), generator=torch.Generator().manual_seed(1))
    b = reference_posterior(sim, x, num_samples=2000, seed=0, sampler="batched")
    e = reference_posterior(sim, x, num_samples=2000, seed=0, num_runs=2, max_steps=4000)
    assert b.posterior.attrs["converged"] == 1
    sb, se_ = draws(b), draws(e)
    torch.testing.assert_close(sb.mean(0), se_.mean(0), atol=0.25 * float(se_.std(0).min()), rtol=0)
    torch.testing.assert_close(sb.std(0), se_.std(0), rtol=0.15, atol=0)
