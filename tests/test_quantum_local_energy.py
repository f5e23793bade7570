"""Local energy against the dense Hamiltonian: E_loc = <sigma|H|psi> / <sigma|psi>, N <= 8."""

import numpy as np
import pytest
import torch

from physgen.quantum.exact import all_configs
from physgen.quantum.hamiltonians import Heisenberg, TransverseFieldIsing, as_log_psi
from physgen.quantum.lattice import Chain, Square
from physgen.quantum.rbm import RBMWavefunction
from physgen.quantum.rnn import RNNWavefunction

CASES = [
    TransverseFieldIsing(Chain(6, periodic=True), J=1.0, h=0.7),
    TransverseFieldIsing(Chain(7, periodic=False), J=-0.5, h=1.3),
    TransverseFieldIsing(Square(2, 4, periodic=True), J=1.0, h=3.0),
    TransverseFieldIsing(Square(2, 3, periodic=False), J=0.8, h=0.4),
    Heisenberg(Chain(8, periodic=True), J=1.0),
    Heisenberg(Chain(5, periodic=False), J=0.7),
    Heisenberg(Square(2, 4, periodic=True), J=1.0),
    Heisenberg(Square(2, 3, periodic=False), J=1.0, J2=0.4),
    Heisenberg(Chain(6, periodic=True), J=1.0, J2=0.5),
]


@pytest.mark.parametrize("H", CASES, ids=repr)
@pytest.mark.parametrize("kind", ["rbm_complex", "rnn_phase"])
def test_local_energy_matches_dense(H, kind):
    N = H.n_sites
    torch.manual_seed(0)
    if kind == "rbm_complex":
        m = RBMWavefunction(N, alpha=2, complex=True, seed=1, init_std=0.3)
    else:
        m = RNNWavefunction(N, hidden=6, phase=True)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.3 * torch.randn_like(p))
    cfg = torch.as_tensor(all_configs(N), dtype=torch.float64)
    with torch.no_grad():
        psi = torch.exp(m.log_psi(cfg)).numpy()
    Hd = H.to_dense()
    expected = (Hd @ psi) / psi
    e_loc = H.local_energy(m, cfg).numpy()
    assert np.max(np.abs(e_loc - expected)) < 1e-9 * max(1.0, np.max(np.abs(expected)))
    # chunked evaluation and long inputs give the same numbers
    e2 = H.local_energy(m.log_psi, cfg.long(), chunk_size=37).numpy()
    assert np.max(np.abs(e2 - expected)) < 1e-9 * max(1.0, np.max(np.abs(expected)))


def test_local_energy_modulus_and_sign_interface():
    H = Heisenberg(Chain(6), J=1.0)
    cfg = torch.as_tensor(all_configs(6), dtype=torch.float64)
    rng = np.random.default_rng(0)
    amp = torch.as_tensor(rng.normal(size=64))

    def log_psi(s):  # (log|psi|, sign) from a lookup table
        idx = (s.long() * (2 ** torch.arange(5, -1, -1))).sum(1)
        return torch.log(amp[idx].abs()), torch.sign(amp[idx])

    expected = (H.to_dense() @ amp.numpy()) / amp.numpy()
    assert np.allclose(H.local_energy(log_psi, cfg).real.numpy(), expected, atol=1e-10)
    assert torch.allclose(as_log_psi(torch.zeros(2)), torch.zeros(2, dtype=torch.complex64))


def test_eigenstate_has_constant_local_energy():
    from physgen.quantum.exact import ground_state

    H = TransverseFieldIsing(Chain(8), h=1.0)
    e0, psi = ground_state(H)
    table = torch.as_tensor(np.log(psi))

    def log_psi(s):
        return table[(s.long() * (2 ** torch.arange(7, -1, -1))).sum(1)]

    cfg = torch.as_tensor(all_configs(8), dtype=torch.float64)
    assert torch.allclose(H.local_energy(log_psi, cfg).real, torch.full((256,), e0, dtype=torch.float64), atol=1e-8)


def test_lattice_and_input_mismatch_errors():
    H = TransverseFieldIsing(Chain(6))
    m = RNNWavefunction(8, hidden=4)
    with pytest.raises(ValueError, match="must match"):
        H.local_energy(m, torch.zeros(2, 8))
    with pytest.raises(ValueError, match="N >= 2"):
        Chain(1)
    with pytest.raises(TypeError, match="Lattice"):
        TransverseFieldIsing(6)


@pytest.mark.parametrize("kw", [{}, {"cell": "lstm", "phase": True}, {"phase": True, "marshall": True, "ordering": "snake"}])
def test_rnn_prefix_shared_flips_match_generic_path(kw):
    from physgen.quantum.hamiltonians import SpinHamiltonian

    torch.manual_seed(0)
    lat = Square(2, 4)
    m = RNNWavefunction(8, hidden=6, lattice=lat, **kw)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    s = (torch.rand(40, 8) < 0.5).double()
    H = TransverseFieldIsing(lat, h=0.7)
    fast = H.local_energy(m, s, chunk_size=64)
    generic = SpinHamiltonian.local_energy(H, m, s)
    assert torch.allclose(fast, generic, atol=1e-12)
    assert RNNWavefunction(8, hidden=4, layers=2).log_psi_single_flips(s) is None  # falls back
