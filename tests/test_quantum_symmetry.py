"""Symmetry groups and symmetrised wavefunctions: group orders, lattice checks, exact normalisation,
invariance, exact sampling, Metropolis on the symmetrised RBM, VMC against exact diagonalisation."""

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from physgen.quantum.exact import all_configs, ground_state_energy
from physgen.quantum.hamiltonians import TransverseFieldIsing
from physgen.quantum.lattice import Chain, Square
from physgen.quantum.metropolis import MetropolisSampler
from physgen.quantum.rbm import RBMWavefunction
from physgen.quantum.rnn import RNNWavefunction
from physgen.quantum.symmetry import SymmetrizedWavefunction, SymmetryGroup
from physgen.quantum.vmc import VMC, exact_variational_energy


def test_group_orders():
    assert len(SymmetryGroup(Chain(6))) == 6
    assert len(SymmetryGroup(Chain(6), reflections=True)) == 12
    assert len(SymmetryGroup(Chain(6), reflections=True, spin_flip=True)) == 24
    assert len(SymmetryGroup(Square(3, 4))) == 12
    assert len(SymmetryGroup(Square(4, 4), reflections=True)) == 64
    assert len(SymmetryGroup(Chain(5, periodic=False), translations=False, reflections=True)) == 2


def test_group_that_does_not_match_the_lattice():
    with pytest.raises(ValueError, match=r"open lattice Chain\(6, periodic=False\)"):
        SymmetryGroup(Chain(6, periodic=False))  # translations on an open chain
    with pytest.raises(ValueError, match=r"symmetry of Chain\(6, periodic=True\) must be a permutation of its 6 sites"):
        SymmetryGroup(Chain(6), translations=False, permutations=[[1, 2, 3, 4, 5, 6, 0]])  # wrong length
    with pytest.raises(ValueError, match=r"not a symmetry of Chain\(6, periodic=False\)"):  # a translation, open chain
        SymmetryGroup(Chain(6, periodic=False), translations=False, permutations=[[1, 2, 3, 4, 5, 0]])
    with pytest.raises(ValueError, match=r"acts on Chain\(8, periodic=True\)"):
        SymmetrizedWavefunction(RNNWavefunction(6, hidden=4), SymmetryGroup(Chain(8)))
    with pytest.raises(ValueError, match="samples itself"):
        SymmetrizedWavefunction(RBMWavefunction(6, seed=0), SymmetryGroup(Chain(6)), mode="probability")


def _enumerate(model, n):
    cfg = torch.as_tensor(all_configs(n), dtype=torch.float64)
    with torch.no_grad():
        return cfg, model.log_psi(cfg)


def test_symmetrised_autoregressive_is_normalised_invariant_and_sampled_exactly():
    lat = Chain(6)
    g = SymmetryGroup(lat, reflections=True, spin_flip=True)
    torch.manual_seed(0)
    s = SymmetrizedWavefunction(RNNWavefunction(6, hidden=8, phase=True, dtype=torch.float64), g)
    cfg, lp = _enumerate(s, 6)
    p = torch.exp(2 * lp.real).numpy()
    assert abs(p.sum() - 1) < 1e-10
    with torch.no_grad():
        for img in g.apply(cfg):
            assert torch.allclose(s.log_psi(img).real, lp.real, atol=1e-12)
    x = s.sample(20000, generator=torch.Generator().manual_seed(0))
    counts = np.bincount((x.long() * (2 ** torch.arange(5, -1, -1))).sum(1).numpy(), minlength=64)
    assert chisquare(counts, p / p.sum() * counts.sum()).pvalue > 1e-3


def test_symmetrised_rbm_is_invariant_and_metropolis_samples_it():
    lat = Chain(6)
    g = SymmetryGroup(lat)
    s = SymmetrizedWavefunction(RBMWavefunction(6, alpha=1, complex=True, init_std=0.3, seed=0), g)
    assert s.mode == "amplitude"
    cfg, lp = _enumerate(s, 6)
    with torch.no_grad():
        for img in g.apply(cfg):
            assert torch.allclose(s.log_psi(img).real, lp.real, atol=1e-12)
    p = torch.exp(2 * (lp.real - lp.real.max())).numpy()
    smp = MetropolisSampler(s, n_chains=100, burn_in=20, thin=3, generator=torch.Generator().manual_seed(0))
    x = smp.sample(10000)
    counts = np.bincount((x.long() * (2 ** torch.arange(5, -1, -1))).sum(1).numpy(), minlength=64)
    assert chisquare(counts, p / p.sum() * counts.sum()).pvalue > 1e-3


def test_vmc_with_symmetrised_rnn_matches_exact_diagonalisation():
    lat = Chain(6)
    H = TransverseFieldIsing(lat, h=1.0)
    torch.manual_seed(0)
    s = SymmetrizedWavefunction(RNNWavefunction(6, hidden=8, dtype=torch.float64), SymmetryGroup(lat, spin_flip=True))
    VMC(H, s, n_samples=256, lr=0.05, diag_shift=1e-3, seed=0).run(40)
    e0 = ground_state_energy(H)
    assert abs(exact_variational_energy(s, H) - e0) / abs(e0) < 1e-3
