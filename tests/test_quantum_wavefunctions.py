"""Autoregressive wavefunctions: exact normalisation, autoregressive property, masking, signs."""

import math

import pytest
import torch

from physgen.quantum.exact import all_configs
from physgen.quantum.lattice import Chain, Square
from physgen.quantum.rbm import RBMWavefunction, log_cosh
from physgen.quantum.rnn import RNNWavefunction
from physgen.quantum.transformer import TransformerWavefunction


def _models(N, lattice=None, **kw):
    torch.manual_seed(0)
    return [
        RNNWavefunction(N, hidden=8, cell="gru", lattice=lattice, **kw),
        RNNWavefunction(N, hidden=8, layers=2, cell="lstm", lattice=lattice, **kw),
        TransformerWavefunction(N, d_model=8, heads=2, n_layers=2, lattice=lattice, **kw),
    ]


def _perturb(m):
    # random, non-trivial weights so that conditionals are far from uniform
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return m


@pytest.mark.parametrize("kw", [{}, {"phase": True}, {"u1": True}, {"u1": True, "marshall": True, "phase": True}])
@pytest.mark.parametrize("N", [6, 10])
def test_exact_normalisation(N, kw):
    lat = Chain(N)
    cfg = torch.as_tensor(all_configs(N), dtype=torch.float64)
    for m in _models(N, lattice=lat, **kw):
        _perturb(m)
        lp = m.log_psi(cfg)
        assert lp.dtype == torch.complex128
        total = torch.exp(2 * lp.real).sum().item()
        assert abs(total - 1.0) < 1e-5, (type(m).__name__, total)
        assert torch.allclose(m.log_prob(cfg), 2 * lp.real)
        if kw.get("u1"):
            outside = cfg.sum(1) != N // 2
            assert torch.exp(2 * lp.real[outside]).max() < 1e-30


def test_normalisation_2d_snake_ordering():
    lat = Square(2, 4, periodic=False)
    cfg = torch.as_tensor(all_configs(8), dtype=torch.float64)
    for m in _models(8, lattice=lat, ordering="snake"):
        _perturb(m)
        assert m.order.tolist() == [0, 1, 2, 3, 7, 6, 5, 4]
        assert abs(torch.exp(m.log_prob(cfg)).sum().item() - 1) < 1e-5


@pytest.mark.parametrize("ordering", ["chain", "snake"])
def test_autoregressive_property(ordering):
    """d logp_t / d x_s = 0 for s >= t (Jacobian of the conditionals w.r.t. continuous inputs)."""
    N = 8
    lat = Square(2, 4)
    for m in _models(N, lattice=lat, ordering=ordering, phase=True):
        _perturb(m)
        x = torch.rand(3, N, dtype=torch.float64)

        def cond(x, m=m):
            logits, phases = m._logits(x)
            return torch.cat([logits, phases], -1).sum(0)  # (N, 4)

        if isinstance(m, TransformerWavefunction):
            # the transformer embeds discrete tokens: perturb one input at a time instead
            xb = (torch.rand(1, N) < 0.5).double()
            base = torch.cat(m._logits(xb), -1)[0]
            for s in range(N):
                xp = xb.clone()
                xp[0, s] = 1 - xp[0, s]
                new = torch.cat(m._logits(xp), -1)[0]
                changed = (new - base).abs().amax(-1) > 0
                assert not changed[: s + 1].any(), f"output t <= {s} depends on input {s}"
                if s < N - 1:
                    assert changed[s + 1 :].any()
            continue
        J = torch.autograd.functional.jacobian(cond, x)  # (N, 4, 3, N)
        dep = J.abs().sum((1, 2))  # (t, s)
        upper = torch.triu(torch.ones(N, N, dtype=torch.bool))  # s >= t
        assert dep[upper].max() == 0
        assert dep[~upper].min() > 0


def test_sampling_matches_probabilities_and_u1():
    N = 6
    cfg = torch.as_tensor(all_configs(N), dtype=torch.float64)
    weights = 2 ** torch.arange(N - 1, -1, -1)
    for kw in ({}, {"u1": True}):
        for m in _models(N, **kw):
            _perturb(m)
            s = m.sample(8000, generator=torch.Generator().manual_seed(1))
            assert s.shape == (8000, N)
            if kw:
                assert torch.all(s.sum(1) == N // 2)
            counts = torch.bincount((s.long() * weights).sum(1), minlength=2**N).double()
            p = torch.exp(m.log_prob(cfg)).detach()
            # chi-square against exact probabilities (cells with expected >= 5)
            exp = p * 8000
            keep = exp >= 5
            chi2 = (((counts - exp) ** 2 / exp)[keep]).sum().item()
            dof = int(keep.sum()) - 1
            assert chi2 < dof + 6 * math.sqrt(2 * dof), (chi2, dof)
            rare_obs, rare_exp = counts[~keep].sum().item(), exp[~keep].sum().item()
            assert abs(rare_obs - rare_exp) < 5 * math.sqrt(rare_exp) + 5


def test_sampling_is_seeded():
    m = _models(6)[0]
    a = m.sample(50, generator=torch.Generator().manual_seed(3))
    b = m.sample(50, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_marshall_sign():
    N = 6
    lat = Chain(N)
    cfg = torch.as_tensor(all_configs(N), dtype=torch.float64)
    m = RNNWavefunction(N, hidden=4, lattice=lat, u1=True, marshall=True)
    m0 = RNNWavefunction(N, hidden=4, lattice=lat, u1=True)
    m0.load_state_dict(m.state_dict())
    sign = torch.exp(1j * m.log_psi(cfg).imag).real
    expected = (-1.0) ** cfg[:, 1::2].sum(1)
    assert torch.allclose(sign, expected)
    assert torch.allclose(m.log_psi(cfg).real, m0.log_psi(cfg).real)
    rbm = RBMWavefunction(N, lattice=lat, marshall=True, seed=0)
    assert torch.allclose(torch.exp(1j * rbm.log_psi(cfg).imag).real, expected)
    with pytest.raises(ValueError, match="bipartite"):
        RNNWavefunction(5, lattice=Chain(5), marshall=True)


def test_bad_inputs():
    with pytest.raises(ValueError, match="even number of sites"):
        RNNWavefunction(7, u1=True)
    with pytest.raises(ValueError, match="even number of sites"):
        TransformerWavefunction(7, d_model=8, heads=2, u1=True)
    with pytest.raises(ValueError, match="must match"):
        RNNWavefunction(8, lattice=Chain(6))
    with pytest.raises(ValueError, match="must match"):
        RBMWavefunction(8, lattice=Square(3, 3))
    with pytest.raises(ValueError, match="2D lattice"):
        RNNWavefunction(6, ordering="snake")
    m = RNNWavefunction(6, hidden=4)
    with pytest.raises(ValueError, match=r"shape \(B, 6\)"):
        m.log_psi(torch.zeros(3, 5))


def test_rbm_log_cosh_and_complex():
    z = torch.tensor([0.3, -50.0, 800.0], dtype=torch.float64)
    assert torch.allclose(log_cosh(z), torch.tensor([math.log(math.cosh(0.3)), 50 - math.log(2), 800 - math.log(2)], dtype=torch.float64))
    zc = torch.tensor([0.3 + 0.2j, -2.0 + 1.0j], dtype=torch.complex128)
    assert torch.allclose(log_cosh(zc), torch.log(torch.cosh(zc)))
    m = RBMWavefunction(4, alpha=2, complex=True, seed=0, init_std=0.3)
    cfg = torch.as_tensor(all_configs(4), dtype=torch.float64)
    s = 1 - 2 * cfg
    a = torch.complex(m.a[0], m.a[1]).detach()
    b = torch.complex(m.b[0], m.b[1]).detach()
    W = torch.complex(m.W[0], m.W[1]).detach()
    ref = s.to(a.dtype) @ a + torch.log(torch.cosh(s.to(a.dtype) @ W.T + b)).sum(-1)
    diff = m.log_psi(cfg).detach() - ref
    # equal up to 2 pi i multiples in the phase
    assert torch.allclose(diff.real, torch.zeros(16, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(torch.exp(1j * diff.imag), torch.ones(16, dtype=torch.complex128), atol=1e-10)
