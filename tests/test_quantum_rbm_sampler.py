"""RBMSampler (cached angles): exact Born distribution, cache = full RBM, numba = torch, VMC use."""

import pytest
import torch
from scipy.stats import chisquare

from physgen.quantum.exact import all_configs, ground_state_energy
from physgen.quantum.hamiltonians import TransverseFieldIsing
from physgen.quantum.lattice import Chain
from physgen.quantum.rbm import RBMWavefunction
from physgen.quantum.rbm_kernels import HAVE_NUMBA
from physgen.quantum.rbm_sampler import RBMSampler
from physgen.quantum.rnn import RNNWavefunction
from physgen.quantum.vmc import VMC, exact_variational_energy

BACKENDS = ["torch"] + (["numba"] if HAVE_NUMBA else [])
# the Born-distribution test runs the default backend; the torch path makes the same moves (tested below)
DEFAULT_BACKEND = ["numba" if HAVE_NUMBA else "torch"]


def _counts(s, N):
    idx = (s.long() * (2 ** torch.arange(N - 1, -1, -1))).sum(1)
    return torch.bincount(idx, minlength=2**N).double().numpy()


@pytest.mark.parametrize("backend", DEFAULT_BACKEND)
@pytest.mark.parametrize("move,complex_", [("flip", False), ("flip", True), ("exchange", False), ("exchange", True)])
def test_rbm_sampler_reproduces_born_distribution(backend, move, complex_):
    N = 6
    lat = Chain(N)
    m = RBMWavefunction(N, alpha=2, complex=complex_, init_std=0.2, seed=1, lattice=lat, marshall=True)
    cfg = torch.as_tensor(all_configs(N), dtype=torch.float64)
    with torch.no_grad():
        p = torch.exp(2 * m.log_psi(cfg).real).numpy()
    smp = RBMSampler(
        m,
        n_chains=100,
        move=move,
        lattice=lat if move == "exchange" else None,
        burn_in=20,
        thin=5,
        generator=torch.Generator().manual_seed(0),
        backend=backend,
    )
    s = smp.sample(20000)
    assert s.shape == (20000, N)
    counts = _counts(s, N)
    if move == "exchange":
        sel = cfg.sum(1).numpy() == N // 2
        assert counts[~sel].sum() == 0  # exchanges never leave Sz = 0
        p, counts = p[sel], counts[sel]
    p = p / p.sum()
    stat, pval = chisquare(counts, p * counts.sum())
    assert pval > 1e-3, (stat, pval)
    assert 0.05 < smp.last_acceptance < 1.0
    assert smp.last_rhat < 1.05


@pytest.mark.parametrize("init_std", [0.5, 30.0])  # 30: the product of ratios would overflow; summed logs
@pytest.mark.parametrize("move", ["flip", "exchange"])
def test_cached_log_psi_equals_full_rbm(init_std, move):
    """After many accepted moves the cached log|psi| still equals a fresh RBM evaluation (no drift)."""
    N = 10
    for backend in BACKENDS:
        m = RBMWavefunction(N, alpha=3, complex=True, init_std=init_std / 10, seed=3)
        with torch.no_grad():
            m.W[0].normal_(0, init_std, generator=torch.Generator().manual_seed(5))
        smp = RBMSampler(
            m, n_chains=32, move=move, burn_in=30, generator=torch.Generator().manual_seed(2), backend=backend
        )
        smp.sample(32 * 20)
        if init_std > 10:
            assert not smp._safe
        with torch.no_grad():
            full = m.log_psi(smp.state).real
        d = smp._lp - full
        assert float((d - d.mean()).abs().max()) < 1e-8 * max(1.0, float(full.abs().max()))


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
@pytest.mark.parametrize("move", ["flip", "exchange"])
def test_numba_and_torch_make_the_same_moves(move):
    m = RBMWavefunction(8, alpha=2, init_std=0.4, seed=0)
    out = []
    for backend in ("numba", "torch"):
        smp = RBMSampler(
            m, n_chains=20, move=move, burn_in=3, generator=torch.Generator().manual_seed(7), backend=backend
        )
        out.append((smp.sample(400), smp.last_acceptance))
    assert torch.equal(out[0][0], out[1][0])
    assert out[0][1] == out[1][1]


def test_vmc_with_rbm_sampler_reaches_ground_state():
    N = 6
    H = TransverseFieldIsing(Chain(N), h=1.0)
    m = RBMWavefunction(N, alpha=2, seed=0)
    smp = RBMSampler(m, n_chains=64, burn_in=10, generator=torch.Generator().manual_seed(1))
    VMC(H, m, n_samples=512, optimizer="minsr", lr=0.05, diag_shift=1e-2, sampler=smp, seed=0).run(80)
    e0 = ground_state_energy(H)
    assert abs(exact_variational_energy(m, H) - e0) / abs(e0) < 5e-3


def test_rbm_sampler_bad_input():
    with pytest.raises(TypeError, match="RBMWavefunction"):
        RBMSampler(RNNWavefunction(4, hidden=4))
    with pytest.raises(ValueError, match="backend"):
        RBMSampler(RBMWavefunction(4, seed=0), backend="cuda")
    with pytest.raises(ValueError, match="even number of sites"):
        RBMSampler(RBMWavefunction(5, seed=0), move="exchange")
