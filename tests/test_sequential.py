"""Sequential options for one observation: TSNPE (truncated prior proposals) and SNLE rounds, on
gaussian_linear where the posterior is N(x/2, 0.05 I)."""

import math

import pytest
import torch

import physgen
from physgen.inference.posterior import SamplingError
from physgen.inference.rounds import check_rounds, simulate_round
from physgen.inference.snle import fit_likelihood_sequential
from physgen.inference.tsnpe import fit_posterior_truncated, truncated_prior_sample
from simulators.sbibm import GaussianLinear

SMALL = {"model_options": {"transforms": 3, "hidden_features": [32, 32]}, "max_epochs": 40}
X_O = torch.tensor([0.4, -0.3])


def test_tsnpe_truncates_and_recovers_posterior():
    task = GaussianLinear(dim=2)
    eps = 0.1  # the region must bite: with 1e-4 the HPD region of N(x/2, 0.05 I) holds ~97% of the prior
    res = fit_posterior_truncated(task, X_O, rounds=2, simulations_per_round=800, epsilon=eps, seed=0, **SMALL)
    assert [r["round"] for r in res.rounds] == [1, 2]
    assert len(res.data) == 1600
    # oracle: the prior mass of the exact posterior's (1 - eps) HPD region {|θ - x/2|² <= r²}, r² = -2 ln(eps)·0.05
    prior_draws = task.prior.sample((200_000,))
    exact = float((((prior_draws - X_O / 2) ** 2).sum(-1) <= -2 * torch.log(torch.tensor(eps)) * 0.05).double().mean())
    assert abs(res.rounds[1]["prior_mass"] - exact) < 0.1, (res.rounds[1], exact)
    theta2 = res.data.theta[800:]
    assert theta2.std(0).max() < task.prior.stddev.max() * 0.9  # round 2 concentrates on the posterior
    draws = res.estimator.sample(2000, X_O, seed=0)
    assert torch.allclose(draws.mean(0), X_O / 2, atol=0.08), draws.mean(0)
    assert bool(((draws.var(0) > 0.03) & (draws.var(0) < 0.08)).all()), draws.var(0)


def test_truncated_samples_lie_in_region():
    task = GaussianLinear(dim=2)
    post = physgen.fit_posterior(physgen.simulate(task, 500, seed=0), seed=0, **SMALL)
    gen = torch.Generator().manual_seed(0)
    theta, tau, mass = truncated_prior_sample(post, task.prior, X_O, 300, epsilon=1e-2, generator=gen)
    assert theta.shape == (300, 2)
    assert bool((post.log_prob(theta, X_O, normalize=False) >= tau).all())
    assert 0.0 < mass < 1.0


def test_snle_rounds_propose_from_posterior():
    task = GaussianLinear(dim=2)
    mcmc = {"num_chains": 64, "burn_in": 150, "thin": 2, "max_steps": 1500}
    res = fit_likelihood_sequential(task, X_O, rounds=2, simulations_per_round=600, seed=0, mcmc=mcmc, **SMALL)
    assert len(res.data) == 1200 and len(res.rounds) == 2
    assert res.rounds[1]["proposal_converged"] is True
    theta2 = res.data.theta[600:]
    assert torch.allclose(theta2.mean(0), X_O / 2, atol=0.08), theta2.mean(0)
    assert theta2.var(0).max() < 0.08  # posterior variance 0.05, prior variance 0.1
    draw = res.estimator.sample_posterior(X_O, 1000, seed=1, **mcmc)
    assert draw.converged
    assert torch.allclose(draw.samples.mean(0).float(), X_O / 2, atol=0.08)


def test_snle_warm_start_trains_on_from_round_one_and_keeps_its_standardization():
    task = GaussianLinear(dim=2)
    mcmc = {"num_chains": 64, "burn_in": 150, "thin": 2, "max_steps": 1500}
    small = {**SMALL, "max_epochs": 10}
    res = fit_likelihood_sequential(task, X_O, rounds=2, simulations_per_round=600, seed=0, mcmc=mcmc,
                                    warm_start=True, **small)
    first = physgen.fit_likelihood(res.data.split(600)[0], prior=task.prior, seed=0, **small)  # round 1 as it ran
    assert torch.equal(res.estimator.target_shift, first.target_shift)  # round 1's standardization kept
    assert torch.equal(res.estimator.context_shift, first.context_shift)
    cold = fit_likelihood_sequential(task, X_O, rounds=2, simulations_per_round=600, seed=0, mcmc=mcmc, **small)
    assert torch.equal(cold.data.theta[:600], res.data.theta[:600])  # the same prior round
    assert not torch.equal(cold.estimator.target_shift, res.estimator.target_shift)
    draw = res.estimator.sample_posterior(X_O, 1000, seed=1, **mcmc)
    assert draw.converged and torch.allclose(draw.samples.mean(0).float(), X_O / 2, atol=0.08)


class _SometimesNaN:
    name = "nan_sim"

    def __init__(self):
        self.inner = GaussianLinear(dim=2)
        self.prior = self.inner.prior
        self.x_shape = (2,)

    def simulate(self, theta, *, generator=None):
        x = self.inner.simulate(theta, generator=generator)
        x[theta[:, 0] > 0.3] = float("nan")
        return x


def test_nan_rows_dropped_and_counted():
    sim = _SometimesNaN()
    theta = torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.1, 0.1], [0.9, 0.2]])
    with pytest.warns(RuntimeWarning, match="2 of 4 simulations"):
        data, dropped = simulate_round(sim, theta, torch.Generator().manual_seed(0), None)
    assert dropped == 2 and len(data) == 2 and bool(torch.isfinite(data.x).all())


def test_round_arguments_checked():
    with pytest.raises(ValueError, match="rounds must be"):
        check_rounds(0, 100)
    with pytest.raises(ValueError, match="simulations_per_round"):
        check_rounds(2, 1)
    with pytest.raises(ValueError, match="epsilon"):
        fit_posterior_truncated(GaussianLinear(dim=2), X_O, epsilon=1.5)


class _NarrowGaussian:
    """A stand-in posterior N(m, s² I) (the Posterior methods truncated_prior_sample calls): its (1 - ε)
    HPD region is the disc |θ - m|² <= -2 ln(ε) s², whose prior mass is known in closed form here."""

    def __init__(self, m, s):
        self.m, self.s = torch.as_tensor(m, dtype=torch.float32), float(s)

    def sample(self, n, x, seed=0):
        return self.m + self.s * torch.randn(n, len(self.m), generator=torch.Generator().manual_seed(seed))

    def log_prob(self, theta, x, normalize=False):
        return -0.5 * ((theta - self.m) ** 2).sum(-1) / self.s**2


@pytest.mark.parametrize("prior_name", ["box", "lognormal"])
def test_truncated_prior_tiny_region_proposes_inside_box(prior_name):
    """A region of prior mass ~1e-5: plain rejection would need ~1e8 draws; the box proposal gives prior
    draws in the region and the region's prior mass (disc area × prior density at its centre)."""
    from physgen.priors import BoxUniform, LogNormal

    m, s, eps = torch.tensor([0.3, 0.7]), 1e-3, 1e-4
    prior = BoxUniform([-1.0, -1.0], [1.0, 1.0]) if prior_name == "box" else LogNormal([0.0, 0.0], [0.5, 0.5])
    r2 = -2 * math.log(eps) * s**2
    exact = math.pi * r2 * float(prior.log_prob(m).exp())  # the density is flat across a disc this small
    gen = torch.Generator().manual_seed(0)
    theta, _, mass = truncated_prior_sample(_NarrowGaussian(m, s), prior, X_O, 2000, epsilon=eps, generator=gen)
    assert theta.shape == (2000, 2)
    d2 = ((theta - m) ** 2).sum(-1)
    assert bool((d2 <= r2 * (1 + 1e-4)).all())
    assert abs(float(d2.mean()) / (r2 / 2) - 1) < 0.06  # uniform on the disc: E|θ - m|² = r² / 2
    assert abs(mass / exact - 1) < 0.1, (mass, exact)
    with pytest.raises(SamplingError, match="raise max_draws"):  # a prior without independent components
        mvn = torch.distributions.MultivariateNormal(torch.zeros(2), torch.tensor([[1.0, 0.5], [0.5, 1.0]]))
        truncated_prior_sample(_NarrowGaussian(m, s), mvn, X_O, 100, epsilon=eps, generator=gen, max_draws=10**5)
