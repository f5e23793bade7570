"""2D wavefunctions: the snake-ordered RNN with U(1), the Marshall sign and translation symmetrisation on
small tori, checked by enumeration (normalisation, invariance, exact sampling), the de-duplicated
evaluation paths, and VMC against exact diagonalization."""

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from physgen.quantum.exact import ground_state_energy, sector_states
from physgen.quantum.hamiltonians import Heisenberg, TransverseFieldIsing
from physgen.quantum.lattice import Square
from physgen.quantum.rnn import RNNWavefunction
from physgen.quantum.symmetry import SymmetrizedWavefunction, SymmetryGroup
from physgen.quantum.vmc import VMC, exact_variational_energy


def _sector(n: int) -> tuple[np.ndarray, torch.Tensor]:
    states = sector_states(n, n // 2)
    cfg = torch.as_tensor((states[:, None] >> np.arange(n - 1, -1, -1)[None, :]) & 1, dtype=torch.float64)
    return states, cfg


def _model(lat: Square, **kw) -> SymmetrizedWavefunction:
    torch.manual_seed(0)
    m = RNNWavefunction(lat.n_sites, hidden=8, lattice=lat, ordering="snake", u1=True, marshall=True, **kw)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.5)  # conditionals far from uniform
    return SymmetrizedWavefunction(m, SymmetryGroup(lat))


@pytest.mark.parametrize("shape", [(2, 2), (2, 4)])
def test_symmetrised_snake_rnn_is_normalised_invariant_and_sampled_exactly(shape):
    lat = Square(*shape)
    n = lat.n_sites
    s = _model(lat, phase=True)
    assert len(s.group) == n
    states, cfg = _sector(n)
    with torch.no_grad():
        lp = s.log_psi(cfg)
        p = torch.exp(2 * lp.real).numpy()
        assert abs(p.sum() - 1) < 1e-10  # exactly normalised on the Sz = 0 sector
        for img in s.group.apply(cfg):
            assert torch.allclose(s.log_psi(img).real, lp.real, atol=1e-12)
    x = s.sample(20000, generator=torch.Generator().manual_seed(0))
    assert (x.sum(1) == n // 2).all()
    idx = (x.long() * (2 ** torch.arange(n - 1, -1, -1))).sum(1).numpy()
    counts = np.array([(idx == k).sum() for k in states])
    assert counts.sum() == len(idx)
    assert chisquare(counts, p / p.sum() * counts.sum()).pvalue > 1e-3


def test_deduplicated_evaluation_equals_the_direct_one():
    """Without gradients the symmetrised model evaluates each distinct image once, and the local energy each
    distinct connected configuration once; the values equal the direct evaluation."""
    lat = Square(2, 4)
    s = _model(lat, phase=True)
    _, cfg = _sector(8)
    cfg = torch.cat([cfg, cfg[:10]])  # repeated rows
    with torch.no_grad():
        fast = s.log_psi(cfg)
    direct = s.log_psi(cfg).detach()  # grad enabled: the direct path
    assert torch.allclose(fast, direct, atol=1e-12)
    H = Heisenberg(lat)
    e = H.local_energy(s, cfg)
    dense = H.matrix_in_basis(sector_states(8, 4)).toarray()
    psi = torch.exp(direct[:-10]).numpy()
    assert np.allclose(e[:-10].numpy(), (dense @ psi) / psi, atol=1e-9)


def test_vmc_symmetrised_snake_rnn_heisenberg_2x4_matches_exact_diagonalization():
    lat = Square(2, 4)
    H = Heisenberg(lat)
    torch.manual_seed(0)
    m = RNNWavefunction(8, hidden=8, lattice=lat, ordering="snake", u1=True, marshall=True)
    s = SymmetrizedWavefunction(m, SymmetryGroup(lat))
    VMC(H, s, n_samples=256, lr=0.05, diag_shift=1e-3, seed=0).run(40)
    e0 = ground_state_energy(H)
    assert abs(exact_variational_energy(s, H) - e0) / abs(e0) < 1e-3


def test_heisenberg_4x4_exact_energy_and_units():
    """The ED oracle: 4x4 torus, Pauli units (4 S.S); E0/N = -0.7017802 in S.S units (Schulz et al. 1996)."""
    H = Heisenberg(Square(4, 4))
    e0 = ground_state_energy(H)
    assert abs(e0 / 16 / 4 - (-0.7017802)) < 2e-7
    assert abs(e0 - 4 * (-11.2284832084)) < 1e-6


def test_tfim_torus_symmetry_group_includes_reflections():
    lat = Square(3, 3)
    H = TransverseFieldIsing(lat, h=3.0)
    g = SymmetryGroup(lat, reflections=True, spin_flip=True)
    assert len(g) == 9 * 4 * 2
    x = torch.randint(0, 2, (5, 9)).double()
    imgs = g.apply(x)
    for img in imgs:  # every element leaves the energy's diagonal unchanged
        assert torch.allclose(H.diagonal(img), H.diagonal(x))
