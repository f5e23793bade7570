"""VMC: small systems converge to exact diagonalization; divergence handling; configs; checkpoints."""

import json
import math

import pytest
import torch

from physgen.io import load_file
from physgen.quantum.exact import ground_state_energy, tfim_chain_energy
from physgen.quantum.hamiltonians import Heisenberg, TransverseFieldIsing
from physgen.quantum.lattice import Chain, Square
from physgen.quantum.metropolis import MetropolisSampler
from physgen.quantum.rbm import RBMWavefunction
from physgen.quantum.rnn import RNNWavefunction
from physgen.quantum.sr import per_sample_log_psi_grads, sr_direction
from physgen.quantum.transformer import TransformerWavefunction
from physgen.quantum.vmc import VMC, VMCDivergenceError, exact_variational_energy
from physgen.cli.vmc import run_vmc_config
from physgen.config import load_config


def test_tfim_chain_rnn_minsr_converges():
    torch.manual_seed(0)
    H = TransverseFieldIsing(Chain(6), h=1.0)
    m = RNNWavefunction(6, hidden=8)
    v = VMC(H, m, n_samples=256, optimizer="minsr", lr=0.1, lr_final=0.02, seed=0)
    v.run(60)
    e0 = tfim_chain_energy(6)
    ev = exact_variational_energy(m, H)
    assert ev >= e0 - 1e-9  # variational
    assert (ev - e0) / abs(e0) < 3e-3
    assert v.history[-1]["v_score"] < v.history[0]["v_score"]


def test_heisenberg_u1_marshall_transformer_converges():
    torch.manual_seed(0)
    lat = Chain(6)
    H = Heisenberg(lat)
    m = TransformerWavefunction(6, d_model=8, heads=2, n_layers=1, lattice=lat, u1=True, marshall=True)
    v = VMC(H, m, n_samples=256, optimizer="sr", lr=0.1, lr_final=0.02, seed=1)
    v.run(60)
    e0 = ground_state_energy(H)
    assert (exact_variational_energy(m, H) - e0) / abs(e0) < 5e-3


def test_rbm_metropolis_2d_converges():
    lat = Square(2, 3, periodic=False)
    H = TransverseFieldIsing(lat, h=2.0)
    m = RBMWavefunction(6, alpha=2, seed=0)
    smp = MetropolisSampler(m, n_chains=32, burn_in=10, generator=torch.Generator().manual_seed(0))
    v = VMC(H, m, n_samples=256, optimizer="minsr", lr=0.05, diag_shift=1e-2, sampler=smp)
    v.run(40)
    e0 = ground_state_energy(H)
    assert (exact_variational_energy(m, H) - e0) / abs(e0) < 3e-3
    est = v.estimate(1024)
    assert abs(est["energy"] - e0) < 5 * est["error"] + 0.02 and est["rhat"] < 1.1


def test_adam_reduces_energy():
    torch.manual_seed(0)
    H = TransverseFieldIsing(Chain(6, periodic=False), h=0.5)
    m = RNNWavefunction(6, hidden=8, cell="lstm")
    e_start = exact_variational_energy(m, H)
    VMC(H, m, n_samples=256, optimizer="adam", lr=0.02).run(40)
    e0 = tfim_chain_energy(6, h=0.5, periodic=False)
    assert exact_variational_energy(m, H) - e0 < 0.2 * (e_start - e0)


def test_minsr_equals_cg_sr():
    torch.manual_seed(0)
    m = RNNWavefunction(4, hidden=3, phase=True)
    s = m.sample(64, generator=torch.Generator().manual_seed(0))
    H = TransverseFieldIsing(Chain(4))
    e = H.local_energy(m, s)
    O = per_sample_log_psi_grads(m, s)
    assert O.is_complex() and O.shape == (64, sum(p.numel() for p in m.parameters()))
    # per-sample gradient of the real part equals autograd on one sample
    m.zero_grad()
    m.log_psi(s[:1]).real.sum().backward()
    g = torch.cat([p.grad.reshape(-1) for p in m.parameters()])
    assert torch.allclose(O[0].real, g, atol=1e-10)
    d1 = sr_direction(O, e, diag_shift=1e-2, method="minsr")
    d2 = sr_direction(O, e, diag_shift=1e-2, method="cg", cg_tol=1e-13, cg_max_iter=2000)
    assert torch.allclose(d1, d2, atol=1e-7 * max(1.0, float(d1.abs().max())))


class _NaNAfter(TransverseFieldIsing):
    def __init__(self, lattice, bad_from):
        super().__init__(lattice, h=1.0)
        self.calls = 0
        self.bad_from = bad_from

    def local_energy(self, *a, **k):
        self.calls += 1
        e = super().local_energy(*a, **k)
        return e * float("nan") if self.calls > self.bad_from else e


def test_nan_energy_stops_and_keeps_last_good_checkpoint(tmp_path):
    torch.manual_seed(0)
    H = _NaNAfter(Chain(6), bad_from=4)
    m = RNNWavefunction(6, hidden=4)
    v = VMC(H, m, n_samples=64, optimizer="minsr", lr=0.05)
    ck = tmp_path / "ck.safetensors"
    with pytest.raises(VMCDivergenceError, match="not finite"):
        v.run(10, checkpoint=ck, checkpoint_every=1)
    tensors, meta = load_file(ck, kind="vmc")
    assert meta["config"]["step"] == 4
    assert all(math.isfinite(h["energy"]) for h in meta["config"]["history"])
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())
    # parameters were not touched by the bad step: they equal the checkpoint
    for k, p in m.state_dict().items():
        assert torch.equal(p, tensors[f"model.{k}"])
    # resume from the checkpoint
    m2 = RNNWavefunction(6, hidden=4)
    v2 = VMC(TransverseFieldIsing(Chain(6)), m2, n_samples=64, optimizer="minsr", lr=0.05)
    v2.load_checkpoint(ck)
    assert v2.step_count == 4 and len(v2.history) == 4
    v2.run(2)
    assert v2.step_count == 6


def test_nan_gradient_stops_adam(tmp_path):
    torch.manual_seed(0)
    m = RNNWavefunction(6, hidden=4)
    v = VMC(TransverseFieldIsing(Chain(6)), m, n_samples=64, optimizer="adam", lr=0.01)
    ck = tmp_path / "ck.safetensors"
    v.run(2, checkpoint=ck, checkpoint_every=1)
    before = {k: t.clone() for k, t in m.state_dict().items()}
    m.head.weight.register_hook(lambda g: g * float("nan"))
    with pytest.raises(VMCDivergenceError, match="gradient"):
        v.run(3, checkpoint=ck, checkpoint_every=1)
    for k, t in m.state_dict().items():
        assert torch.equal(t, before[k])
    assert load_file(ck, kind="vmc")[1]["config"]["step"] == 2


def test_diverging_energy_is_detected():
    torch.manual_seed(0)
    H = TransverseFieldIsing(Chain(6))
    m = RNNWavefunction(6, hidden=4)
    v = VMC(H, m, n_samples=64, divergence_threshold=0.0)
    v.step()
    v._best = -1e6  # pretend a far lower energy was reached: the next one counts as diverged
    with pytest.raises(VMCDivergenceError, match="diverged"):
        v.step()


def test_bad_inputs():
    with pytest.raises(ValueError, match="sites"):
        VMC(TransverseFieldIsing(Chain(6)), RNNWavefunction(8, hidden=4))
    with pytest.raises(ValueError, match="does not conserve Sz"):
        VMC(TransverseFieldIsing(Chain(6)), RNNWavefunction(6, hidden=4, u1=True))
    with pytest.raises(ValueError, match="sampler"):
        VMC(TransverseFieldIsing(Chain(6)), RBMWavefunction(6, seed=0))
    with pytest.raises(ValueError, match="optimizer"):
        VMC(TransverseFieldIsing(Chain(6)), RNNWavefunction(6, hidden=4), optimizer="lbfgs")


def test_toml_config_run_and_unknown_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[lattice]\ntype = "chain"\nn = 6\n[hamiltonian]\ntype = "heisenberg"\n'
        '[model]\ntype = "rnn"\nhidden = 8\nu1 = true\nmarshall = true\ndtype = "float64"\n'
        '[vmc]\nn_steps = 40\nn_samples = 256\nlr = 0.1\nlr_final = 0.02\neval_samples = 2000\ncheckpoint_every = 10\n'
    )
    s = run_vmc_config(str(cfg), str(tmp_path / "out"))
    assert s["steps"] == 40 and s["relative_error"] < 1e-2
    assert json.loads((tmp_path / "out" / "vmc_summary.json").read_text())["steps"] == 40
    # resume continues from the checkpoint up to n_steps
    cfg.write_text(cfg.read_text().replace("n_steps = 40", "n_steps = 45\nresume = true"))
    assert run_vmc_config(str(cfg), str(tmp_path / "out"))["steps"] == 45

    bad = tmp_path / "bad.toml"
    bad.write_text("[vmc]\nlearning_rate = 0.1\n")
    with pytest.raises(ValueError, match=r"unknown key 'learning_rate' in \[vmc\]; allowed keys: optimizer, lr"):
        load_config(bad, "vmc")
    bad.write_text("[optim]\nlr = 0.1\n")
    with pytest.raises(ValueError, match=r"unknown section \[optim\]"):
        load_config(bad, "vmc")
    bad.write_text('[lattice]\nn = 7\n[hamiltonian]\ntype = "heisenberg"\n[model]\nu1 = true\n')
    with pytest.raises(ValueError, match="even number of sites"):
        run_vmc_config(str(bad), str(tmp_path / "o2"))


# ----- must-reach accuracy runs (minutes each; deselected by default, run with -m slow) -------------
def _train(H, m, budget_s, **kw):
    """Train for ``budget_s`` seconds of this process's CPU time (= wall time on an idle core;
    on a shared machine wall time is longer), decaying lr geometrically over the expected steps."""
    import time

    lr0, lrf = kw.pop("lr", 0.05), kw.pop("lr_final", None)
    v = VMC(H, m, lr=lr0, **kw)
    t0 = time.process_time()
    n_est = None
    while time.process_time() - t0 < budget_s:
        if lrf is not None and n_est:
            v._lr_now = lr0 * (lrf / lr0) ** min(v.step_count / n_est, 1.0)
        v.step()
        if v.step_count == 10:
            n_est = int(budget_s / ((time.process_time() - t0) / 10))
    return v


@pytest.mark.slow
def test_slow_tfim_chain_20_rnn_reaches_1e4_in_10_minutes():
    torch.manual_seed(0)
    H = TransverseFieldIsing(Chain(20), h=1.0)
    m = RNNWavefunction(20, hidden=32, dtype=torch.float32)
    _train(H, m, 600, n_samples=1000, optimizer="minsr", lr=0.05, lr_final=0.005, diag_shift=1e-3)
    e0 = tfim_chain_energy(20)
    assert abs(exact_variational_energy(m, H) - e0) / abs(e0) <= 1e-4


@pytest.mark.slow
def test_slow_heisenberg_chain_20_reaches_1e3():
    torch.manual_seed(0)
    lat = Chain(20)
    H = Heisenberg(lat)
    m = RNNWavefunction(20, hidden=32, lattice=lat, u1=True, marshall=True, dtype=torch.float32)
    _train(H, m, 600, n_samples=1000, optimizer="minsr", lr=0.05, lr_final=0.005, diag_shift=1e-3)
    from physgen.quantum.exact import heisenberg_chain_bethe_energy

    e0 = heisenberg_chain_bethe_energy(20)
    assert abs(exact_variational_energy(m, H) - e0) / abs(e0) <= 1e-3


@pytest.mark.slow
def test_slow_tfim_square_4x4_h3_reaches_1e3():
    torch.manual_seed(0)
    lat = Square(4, 4)
    H = TransverseFieldIsing(lat, h=3.0)
    m = RNNWavefunction(16, hidden=32, lattice=lat, ordering="snake", dtype=torch.float32)
    _train(H, m, 600, n_samples=1000, optimizer="minsr", lr=0.05, lr_final=0.005, diag_shift=1e-3)
    e0 = ground_state_energy(H)
    assert abs(exact_variational_energy(m, H) - e0) / abs(e0) <= 1e-3


@pytest.mark.slow
def test_slow_rbm_metropolis_tfim_chain_20_reaches_1e3():
    H = TransverseFieldIsing(Chain(20), h=1.0)
    m = RBMWavefunction(20, alpha=2, seed=0)
    smp = MetropolisSampler(m, n_chains=100, burn_in=20, generator=torch.Generator().manual_seed(1))
    _train(H, m, 600, n_samples=1000, optimizer="minsr", lr=0.05, diag_shift=1e-2, sampler=smp)
    e0 = tfim_chain_energy(20)
    assert abs(exact_variational_energy(m, H) - e0) / abs(e0) <= 1e-3


def test_resumed_run_continues_the_lr_schedule(tmp_path):
    """With total_steps, an interrupted run resumes the lr_final decay where it stopped, and (same seed, same
    checkpointed sampler state) gives the same parameters as the run without interruption."""

    def driver(seed_model: int) -> VMC:
        torch.manual_seed(seed_model)
        return VMC(TransverseFieldIsing(Chain(6)), RNNWavefunction(6, hidden=4), n_samples=64, optimizer="minsr",
                   lr=0.1, lr_final=0.01, seed=0)

    def rates(v: VMC, n: int, **kw) -> list[float]:
        seen = []
        step = v.step
        v.step = lambda: seen.append(v._lr_now) or step()
        v.run(n, **kw)
        del v.step
        return seen

    whole = driver(0)
    lr_whole = rates(whole, 8, total_steps=8)
    assert lr_whole[0] == pytest.approx(0.1) and lr_whole[-1] == pytest.approx(0.01)
    first = driver(0)
    ck = tmp_path / "ck.safetensors"
    lr_a = rates(first, 3, total_steps=8, checkpoint=ck)
    resumed = driver(1)  # other initial weights: the checkpoint must overwrite them
    resumed.load_checkpoint(ck)
    lr_b = rates(resumed, 5, total_steps=8)
    assert lr_a + lr_b == pytest.approx(lr_whole)
    for k, p in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], p), k


@pytest.mark.parametrize("optimizer", ["adam", "minsr"])
def test_resumed_metropolis_run_is_bit_identical(tmp_path, optimizer):
    """The checkpoint carries the Adam state, both generators and the Metropolis chains: a run stopped after
    3 steps and resumed in a fresh driver ends with the same weights as 6 uninterrupted steps."""

    def driver() -> VMC:
        m = RBMWavefunction(6, alpha=1, seed=0)
        smp = MetropolisSampler(m, n_chains=8, burn_in=5, generator=torch.Generator().manual_seed(3))
        return VMC(TransverseFieldIsing(Chain(6)), m, n_samples=64, optimizer=optimizer, lr=0.02, sampler=smp, seed=0)

    whole = driver()
    whole.run(6)
    first = driver()
    ck = tmp_path / "ck.safetensors"
    first.run(3, checkpoint=ck)
    resumed = driver()
    resumed.load_checkpoint(ck)
    resumed.run(3)
    for k, p in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], p), k
    assert [h["energy"] for h in resumed.history] == [h["energy"] for h in whole.history]


def test_toml_symmetric_models(tmp_path):
    """``translations``/``reflections``/``spin_flip`` in [model]: a tied RBM, a symmetrised RNN, a clear error."""
    from physgen.cli.vmc import build_lattice, build_wavefunction
    from physgen.config.vmc import LatticeSection, WavefunctionSection
    from physgen.quantum import SymmetrizedWavefunction

    lat = build_lattice(LatticeSection(type="chain", n=8))
    rbm = build_wavefunction(
        WavefunctionSection(type="rbm", alpha=2, translations=True, reflections=True, spin_flip=True), lat
    )
    assert sum(p.numel() for p in rbm.parameters() if p.requires_grad) < 8 * 16  # tied: fewer than a dense RBM
    # configurations are 0/1; the spin flip is 1 - sigma
    sigma = torch.randint(0, 2, (5, 8), generator=torch.Generator().manual_seed(0)).float()
    torch.testing.assert_close(rbm.log_psi(sigma), rbm.log_psi(1 - sigma.roll(3, dims=1).flip(1)))
    assert not torch.allclose(rbm.log_psi(sigma), rbm.log_psi(sigma[:, [1, 0, 2, 3, 4, 5, 6, 7]]))
    rnn = build_wavefunction(WavefunctionSection(type="rnn", hidden=4, translations=True), lat)
    assert isinstance(rnn, SymmetrizedWavefunction)

    cfg = tmp_path / "sym.toml"
    cfg.write_text(
        '[lattice]\nn = 8\n[hamiltonian]\ntype = "heisenberg"\n'
        '[model]\ntype = "rbm"\nalpha = 2\nmarshall = true\ndtype = "float64"\n'
        "translations = true\nreflections = true\nspin_flip = true\n"
        '[sampler]\nmove = "exchange"\nburn_in = 10\n'
        "[vmc]\nn_steps = 60\nn_samples = 500\nlr = 0.05\ndiag_shift = 0.1\ndiag_shift_final = 1e-3\n"
        "eval_samples = 4000\n"
    )
    s = run_vmc_config(str(cfg), str(tmp_path / "out"))
    assert s["relative_error"] < 5e-3
    cfg.write_text('[lattice]\nn = 8\nperiodic = false\n[model]\ntype = "rbm"\ntranslations = true\n')
    with pytest.raises(ValueError, match="open lattice Chain"):
        run_vmc_config(str(cfg), str(tmp_path / "o2"))
