"""sbi's own diagnostics accept a physgen Posterior (sample_batched / log_prob_batched) and give physgen's numbers.

sbi draws with torch's global RNG; ``Posterior.sample_batched`` without a seed does too, so after the same
``torch.manual_seed`` both sides hold the same draws and the ranks, HPD levels and TARP curves must agree
exactly (the last point of sbi's TARP grid included).
"""

from __future__ import annotations

import warnings

import pytest
import torch

import physgen
from physgen.diagnostics import coverage_from_samples, sbc_from_samples, tarp_from_samples
from physgen.priors import sample_prior
from simulators.sbibm import TwoMoons

N, S = 120, 100


@pytest.fixture(scope="module")
def trained():
    task = TwoMoons()
    data = physgen.simulate(task, 1000, seed=0)
    post = physgen.fit_posterior(data, seed=0, max_epochs=2, progress=False)
    g = torch.Generator().manual_seed(7)
    theta = sample_prior(task.prior, (N,), generator=g)
    return post, theta, task.simulate(theta, generator=g)


def _draws(post, x, seed):
    torch.manual_seed(seed)
    return post.sample_batched((S,), x=x, show_progress_bars=False)


def test_sample_batched_and_log_prob_batched_shapes(trained):
    post, theta, x = trained
    s = post.sample_batched((4, 5), x=x[:3], seed=0)
    assert s.shape == (4, 5, 3, 2)
    lp = post.log_prob_batched(s.reshape(20, 3, 2), x[:3])
    assert lp.shape == (20, 3) and bool(torch.isfinite(lp).all())
    # normalize=False: the support-mass estimate is Monte Carlo per set of distinct observations
    one = post.log_prob(s.reshape(20, 3, 2)[:, 1], x[1], normalize=False)
    assert torch.allclose(post.log_prob_batched(s.reshape(20, 3, 2), x[:3], norm_posterior=False)[:, 1], one, atol=1e-5)
    with pytest.raises(ValueError, match="same B"):
        post.log_prob_batched(s.reshape(20, 3, 2), x[:2])


def test_sbi_run_sbc_gives_physgen_ranks(trained):
    from sbi.diagnostics import run_sbc

    post, theta, x = trained
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(3)
        ranks, _ = run_sbc(theta, x, post, num_posterior_samples=S, show_progress_bar=False)
    ours = sbc_from_samples(_draws(post, x, 3), theta)
    assert torch.equal(ranks.long(), ours.ranks)


def test_sbi_expected_coverage_gives_physgen_hpd_levels(trained):
    from sbi.diagnostics import run_sbc

    post, theta, x = trained
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(4)
        # sbi's expected coverage: reduce_fns=posterior.log_prob; normalize=False skips the Monte Carlo estimate
        # of the support mass (a constant per observation, which changes no rank) as physgen's coverage does
        ranks, _ = run_sbc(theta, x, post, num_posterior_samples=S, show_progress_bar=False,
                           reduce_fns=lambda t, xo: post.log_prob(t, xo, normalize=False))
    ours = coverage_from_samples(post, _draws(post, x, 4), theta, x)
    # sbi's rank counts draws with lower log q than the truth; physgen's level is the fraction with higher log q
    assert torch.allclose(S * (1.0 - ours.hpd_levels), ranks[:, 0].double(), rtol=0, atol=1e-9)


def test_sbi_run_tarp_gives_physgen_ecp(trained):
    from sbi.diagnostics import check_tarp, run_tarp

    post, theta, x = trained
    refs = sample_prior(TwoMoons().prior, (N,), generator=torch.Generator().manual_seed(11))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(5)
        ecp, alpha = run_tarp(theta, x, post, references=refs, num_posterior_samples=S, show_progress_bar=False)
    atc, _ = check_tarp(ecp, alpha)
    ours = tarp_from_samples(_draws(post, x, 5), theta, references=refs, alpha=alpha)
    assert torch.allclose(ours.ecp.float(), ecp.float(), atol=1e-6)  # sbi: cumsum of a histogram density
    assert ours.atc == pytest.approx(atc, abs=1e-5)
