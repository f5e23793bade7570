"""Must-reach accuracy of NPE (default settings, 10,000 simulations) against exact reference posteriors.

These train full-size models (a minute or more each on 2 cores), so they are marked slow:
    pytest -m slow tests/test_npe_accuracy.py
"""

import pytest
import torch

import physgen
from physgen.diagnostics import c2st
from physgen.priors import sample_prior


def mean_c2st(task, posterior, n_obs: int, n_samples: int = 10_000, seed: int = 1000) -> list[float]:
    gen = torch.Generator().manual_seed(seed)
    theta_o = sample_prior(task.prior, (n_obs,), generator=gen)
    x_o = task.simulate(theta_o, generator=gen)
    scores = []
    for i in range(n_obs):
        ref = task.reference_posterior(x_o[i], n_samples, seed=i)
        scores.append(c2st(ref, posterior.sample(n_samples, x_o[i], seed=i), seed=i))
    return scores


@pytest.mark.slow
def test_two_moons_nsf_c2st():
    from simulators.sbibm import TwoMoons

    task = TwoMoons()
    post = physgen.fit_posterior(physgen.simulate(task, 10_000, seed=0))
    scores = mean_c2st(task, post, n_obs=5)
    print("two_moons C2ST", scores)
    assert sum(scores) / len(scores) <= 0.55, scores


@pytest.mark.slow
def test_gaussian_linear_nsf_c2st():
    from simulators.sbibm import GaussianLinear

    task = GaussianLinear()
    post = physgen.fit_posterior(physgen.simulate(task, 10_000, seed=0))
    scores = mean_c2st(task, post, n_obs=3)
    print("gaussian_linear C2ST", scores)
    assert sum(scores) / len(scores) <= 0.53, scores
