"""Calibration diagnostics (SBC, expected coverage, TARP, z-scores, PPC) and MMD on exact oracles.

The oracle is sbibm's gaussian_linear (D = 10), whose posterior N(x/2, 0.05·I) is known in closed form.
The exact posterior must pass all three calibration checks; the same posterior made too narrow (0.5×
width), too wide (2×) or shifted by one posterior standard deviation in every component must fail each.
"""

from __future__ import annotations

import math

import pytest
import torch

from physgen.diagnostics import (
    calibration,
    coverage_from_log_probs,
    expected_coverage,
    mmd,
    mmd_test,
    posterior_draws,
    posterior_predictive_check,
    sbc,
    sbc_from_samples,
    tarp,
    tarp_from_samples,
    z_scores,
)
from physgen.priors import sample_prior
from simulators.sbibm import GaussianLinear

N_PAIRS, N_DRAWS = 500, 1000


class ExactGaussianPosterior:
    """The closed-form gaussian_linear posterior, optionally rescaled in width or shifted (in posterior sds).

    Follows the Posterior contract: sample(n, x (B, D), *, generator) -> (n, B, D); log_prob broadcasts.
    """

    def __init__(self, task: GaussianLinear, width: float = 1.0, shift: float = 0.0):
        vp, vn = task.prior_variance, task.noise_variance
        self.gain, self.sd = vp / (vp + vn), math.sqrt(1.0 / (1.0 / vp + 1.0 / vn))
        self.width, self.shift, self.prior = width, shift, task.prior
        self.calls = 0

    def _loc_scale(self, x):
        return self.gain * x + self.shift * self.sd, self.width * self.sd

    def sample(self, n, x, *, generator=None):
        self.calls += 1
        loc, scale = self._loc_scale(x)
        return loc + scale * torch.randn((n, *x.shape), generator=generator, dtype=x.dtype, device=x.device)

    def log_prob(self, theta, x):
        loc, scale = self._loc_scale(x)
        return (-0.5 * ((theta - loc) / scale) ** 2 - math.log(scale) - 0.5 * math.log(2 * math.pi)).sum(-1)


@pytest.fixture(scope="module")
def task():
    return GaussianLinear()


@pytest.fixture(scope="module")
def pairs(task):
    g = torch.Generator().manual_seed(1)
    theta = sample_prior(task.prior, (N_PAIRS,), generator=g)
    return theta, task.simulate(theta, generator=g)


def test_exact_posterior_passes_all_three(task, pairs):
    theta, x = pairs
    post = ExactGaussianPosterior(task)
    for seed in (0, 1):
        r = calibration(post, theta, x, num_posterior_samples=N_DRAWS, seed=seed)
        assert r.sbc.passed and r.coverage.passed and r.tarp.passed, r.as_dict()
        assert r.sbc.p_values.min() > 0.01 / 10
        assert (r.coverage.coverage - r.coverage.levels).abs().max() < 0.08
        assert abs(r.tarp.atc) < 0.03
        assert post.calls == seed + 1  # one sample call for all 500 observations


@pytest.mark.parametrize("defect", [{"width": 0.5}, {"width": 2.0}, {"shift": 1.0}], ids=["narrow", "wide", "shifted"])
def test_miscalibrated_posterior_fails_each(task, pairs, defect):
    theta, x = pairs
    r = calibration(ExactGaussianPosterior(task, **defect), theta, x, num_posterior_samples=N_DRAWS, seed=0)
    assert not r.sbc.passed and r.sbc.p_values.max() < 1e-6
    assert not r.coverage.passed
    assert not r.tarp.passed and r.tarp.ks_pvalue < 1e-6
    dev = r.coverage.coverage - r.coverage.levels
    if defect.get("width") == 2.0:  # too wide: over-covers, ATC > 0
        assert dev.min() > 0 and r.tarp.atc > 0.05
    else:  # too narrow or shifted: under-covers
        assert dev.max() < 0
    if defect.get("width") == 0.5:
        assert r.tarp.atc < -0.05


def test_standalone_functions_agree_with_calibration(task, pairs):
    theta, x = pairs
    post = ExactGaussianPosterior(task, width=0.8)
    r = calibration(post, theta, x, num_posterior_samples=200, seed=3)
    s = sbc(post, theta, x, num_posterior_samples=200, seed=3)
    c = expected_coverage(post, theta, x, num_posterior_samples=200, seed=3)
    t = tarp(post, theta, x, num_posterior_samples=200, seed=3)
    assert torch.equal(s.ranks, r.sbc.ranks)
    assert torch.equal(c.coverage, r.coverage.coverage)
    assert torch.equal(t.ecp, r.tarp.ecp)
    assert s.ranks.shape == (N_PAIRS, 10) and s.ranks.dtype == torch.long
    assert int(s.ranks.min()) >= 0 and int(s.ranks.max()) <= 200
    assert c.levels.shape == c.coverage.shape == c.lower.shape == c.upper.shape == (20,)
    assert 0.68 in [round(v, 2) for v in c.levels.tolist()]
    assert bool((c.lower <= c.levels).all() and (c.levels <= c.upper).all())
    assert t.alpha.shape == t.ecp.shape == (101,) and float(t.ecp[0]) == 0.0 and float(t.ecp[-1]) == 1.0
    for res in (s, c, t, r):
        assert isinstance(res.as_dict(), dict)


def test_batch_size_splits_the_sample_calls(task, pairs):
    theta, x = pairs
    post = ExactGaussianPosterior(task)
    draws = posterior_draws(post, x, 50, seed=0, batch_size=128)
    assert draws.shape == (50, N_PAIRS, 10) and post.calls == 4
    r = sbc(post, theta, x, num_posterior_samples=1000, seed=0, batch_size=200)
    assert r.passed


def test_sbc_ranks_by_hand():
    samples = torch.tensor([[[0.0, 1.0]], [[2.0, -1.0]], [[1.0, 5.0]]])  # (S=3, N=1, D=2)
    theta = torch.tensor([[1.5, 0.0]])
    r = sbc_from_samples(samples.expand(3, 4, 2), theta.expand(4, 2))
    assert r.ranks.tolist() == [[2, 1]] * 4


def test_coverage_from_log_probs_by_hand():
    # credibility r_i = fraction of draws with higher log q than the truth: 0.0, 0.5, 1.0
    lq_s = torch.tensor([[1.0, 3.0, 5.0], [2.0, 1.0, 6.0]])
    lq_t = torch.tensor([4.0, 2.0, 0.0])
    c = coverage_from_log_probs(lq_s, lq_t, levels=torch.tensor([0.25, 0.75]))
    assert c.hpd_levels.tolist() == [0.0, 0.5, 1.0]
    assert c.coverage.tolist() == [1 / 3, 2 / 3]


def test_tarp_references_from_the_prior_differ_from_theta(task, pairs):
    theta, _ = pairs
    samples = torch.randn(10, N_PAIRS, 10, generator=torch.Generator().manual_seed(0))
    a = tarp_from_samples(samples, theta, prior=task.prior, seed=1)  # theta was drawn with seed 1 too
    b = tarp_from_samples(samples, theta, seed=1)  # uniform over the box of theta
    assert a.credibility.shape == b.credibility.shape == (N_PAIRS,)
    assert not torch.equal(a.credibility, b.credibility)


def test_shape_errors(task, pairs):
    theta, x = pairs
    post = ExactGaussianPosterior(task)
    with pytest.raises(ValueError, match=r"x must have shape \(N, \*x_shape\) with the N=500"):
        sbc(post, theta, x[:-1])
    with pytest.raises(ValueError, match=r"theta must have shape \(N, D\)"):
        expected_coverage(post, theta[0], x[0])
    with pytest.raises(ValueError, match=r"\(S, N, D\)"):
        sbc_from_samples(torch.zeros(5, 3, 10), theta)
    with pytest.raises(ValueError, match="num_references"):
        tarp(post, theta, x, num_references=10)
    with pytest.raises(ValueError, match="levels"):
        expected_coverage(post, theta, x, levels=[0.5, 1.0], num_posterior_samples=10)

    class Wrong(ExactGaussianPosterior):
        def sample(self, n, x, *, generator=None):
            return super().sample(n, x, generator=generator)[:, 0]

    with pytest.raises(ValueError, match=r"must return \(n, B, D\)"):
        sbc(Wrong(task), theta, x)


def test_z_scores_and_contraction(task, pairs):
    theta, x = pairs
    samples = posterior_draws(ExactGaussianPosterior(task), x, 1000, seed=0)
    z = z_scores(samples, theta, task.prior)
    assert z.z.shape == z.contraction.shape == (N_PAIRS, 10)
    assert abs(float(z.z.mean())) < 0.05 and abs(float(z.z.std()) - 1.0) < 0.05
    # var_post / var_prior = 0.05 / 0.1
    assert abs(float(z.contraction.mean()) - 0.5) < 0.01
    wide = z_scores(posterior_draws(ExactGaussianPosterior(task, width=2.0), x, 1000, seed=0), theta, task.prior)
    assert abs(float(wide.z.std()) - 0.5) < 0.05 and float(wide.contraction.mean()) < -0.9


def test_posterior_predictive_check(task, pairs):
    theta, x = pairs
    good = posterior_predictive_check(ExactGaussianPosterior(task), task, x[:50], num_samples=200, seed=0)
    assert good.p_values.shape == good.two_sided.shape == (50, 10) and good.statistic_rep.shape == (200, 50, 10)
    assert good.passed
    assert abs(float(good.p_values.mean()) - 0.5) < 0.05  # predictive p-values of the exact posterior
    one = posterior_predictive_check(ExactGaussianPosterior(task), task, x[0], num_samples=200, seed=0,
                                     statistic=lambda v: v.mean(-1, keepdim=True))
    assert one.p_values.shape == (1, 1)
    bad = posterior_predictive_check(ExactGaussianPosterior(task, shift=10.0), task, x[:50], num_samples=200, seed=0)
    assert not bad.passed and float(bad.p_values.mean()) > 0.99  # replicates lie above x_o: upper-tail p near 1
    assert float(bad.two_sided.max()) < 0.05
    with pytest.raises(ValueError, match="x_obs must have shape"):
        posterior_predictive_check(ExactGaussianPosterior(task), task, x[:, :3])


def test_mmd_same_and_shifted():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(500, 3, generator=g), torch.randn(400, 3, generator=g)
    assert abs(mmd(a, b)) < 0.01
    shifted = b + 0.5
    assert mmd(a, shifted) > 0.03  # noise level of the estimate here: about 0.003
    assert mmd_test(a, b, num_permutations=200, seed=0).p_value > 0.05
    res = mmd_test(a, shifted, num_permutations=200, seed=0)
    assert res.p_value <= 1 / 201 + 1e-12 and not res.passed
    assert res.mmd == pytest.approx(mmd(a, shifted), rel=1e-9)


def test_mmd_matches_the_formula():
    g = torch.Generator().manual_seed(1)
    a, b, h = torch.randn(30, 2, generator=g), torch.randn(20, 2, generator=g) + 1.0, 0.7
    k = lambda u, v: math.exp(-float(((u - v) ** 2).sum()) / (2 * h * h))  # noqa: E731
    sxx = sum(k(a[i], a[j]) for i in range(30) for j in range(30) if i != j) / (30 * 29)
    syy = sum(k(b[i], b[j]) for i in range(20) for j in range(20) if i != j) / (20 * 19)
    sxy = sum(k(a[i], b[j]) for i in range(30) for j in range(20)) / 600
    assert mmd(a, b, bandwidth=h) == pytest.approx(sxx + syy - 2 * sxy, rel=1e-6)
    assert mmd_test(a, b, bandwidth=h, num_permutations=50).mmd == pytest.approx(sxx + syy - 2 * sxy, rel=1e-6)


def test_mmd_errors():
    with pytest.raises(ValueError, match="same number of columns"):
        mmd(torch.zeros(5, 2), torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"shape \(n, D\)"):
        mmd(torch.zeros(5), torch.zeros(5, 1))
    with pytest.raises(ValueError, match="NaN"):
        mmd(torch.full((5, 1), float("nan")), torch.zeros(5, 1))
