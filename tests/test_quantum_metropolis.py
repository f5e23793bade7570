"""Metropolis sampler: chi-square against |psi|^2 by enumeration, Sz conservation, R-hat (arviz's)."""

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from physgen.quantum.exact import all_configs
from physgen.quantum.lattice import Chain, Square
from physgen.quantum.metropolis import MetropolisSampler, split_rhat
from physgen.quantum.rbm import RBMWavefunction


def _counts(s, N):
    idx = (s.long() * (2 ** torch.arange(N - 1, -1, -1))).sum(1)
    return torch.bincount(idx, minlength=2**N).double().numpy()


@pytest.mark.parametrize("move,lattice", [("flip", None), ("exchange", Chain(6)), ("exchange", None)])
def test_metropolis_reproduces_born_distribution(move, lattice):
    N = 6
    m = RBMWavefunction(N, alpha=2, complex=True, init_std=0.2, seed=1)
    cfg = torch.as_tensor(all_configs(N), dtype=torch.float64)
    with torch.no_grad():
        p = torch.exp(2 * m.log_psi(cfg).real).numpy()
    smp = MetropolisSampler(m, n_chains=100, move=move, lattice=lattice, burn_in=20, thin=2,
                            generator=torch.Generator().manual_seed(0))
    s = smp.sample(10000)
    assert s.shape == (10000, N)
    counts = _counts(s, N)
    if move == "exchange":
        sel = cfg.sum(1).numpy() == N // 2
        assert counts[~sel].sum() == 0  # exchange moves never leave Sz = 0
        p, counts = p[sel], counts[sel]
    p = p / p.sum()
    stat, pval = chisquare(counts, p * counts.sum())
    assert pval > 1e-3, (stat, pval)
    assert 0.05 < smp.last_acceptance < 1.0
    assert smp.last_rhat < 1.05


def test_exchange_moves_keep_sz_on_square_lattice():
    lat = Square(2, 4)
    m = RBMWavefunction(8, alpha=1, init_std=0.5, seed=0)
    smp = MetropolisSampler(m, n_chains=16, move="exchange", lattice=lat, generator=torch.Generator().manual_seed(2))
    s = smp.sample(800)
    assert torch.all(s.sum(1) == 4)
    # a flip sampler started anywhere visits several magnetisations
    smp2 = MetropolisSampler(m, n_chains=16, move="flip", generator=torch.Generator().manual_seed(2))
    assert len(torch.unique(smp2.sample(800).sum(1))) > 3


def test_split_rhat_separates_mixed_from_stuck_chains():
    rng = np.random.default_rng(0)
    good = rng.normal(size=(400, 8))
    assert split_rhat(good) < 1.01
    assert split_rhat(good + np.arange(8)[None, :] * 2.0) > 1.5  # chains stuck at different levels
    drift = good + np.linspace(0, 3, 400)[:, None]  # every chain drifts: the split halves disagree
    assert split_rhat(drift) > 1.1
    assert split_rhat(np.ones((10, 4))) == 1.0  # one configuration everywhere (a peaked state)
    assert split_rhat(np.ones((10, 4)) * np.arange(4)) == float("inf")  # frozen chains, different values
    with pytest.raises(ValueError, match="n_draws >= 4"):
        split_rhat(np.ones((3, 4)))


def test_sampler_errors():
    m = RBMWavefunction(5, seed=0)
    with pytest.raises(ValueError, match="even number of sites"):
        MetropolisSampler(m, move="exchange")
    with pytest.raises(ValueError, match="must match"):
        MetropolisSampler(RBMWavefunction(6, seed=0), move="exchange", lattice=Chain(8))
    with pytest.raises(ValueError, match="move"):
        MetropolisSampler(m, move="swap")
