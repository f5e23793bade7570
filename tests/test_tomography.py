"""Quantum state tomography: measurement simulation, likelihood, training, config, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from physgen.cli.tomography import run_tomography_config
from physgen.quantum import build_wavefunction as build_model
from physgen.config import load_config
from physgen.quantum import tomography as T
from physgen.quantum.measurements import (
    MeasurementRecords,
    basis_unitary,
    enumerate_configs,
    parse_bases,
    rotate_dense,
)
from simulators.quantum_data import (
    born_probabilities,
    ghz_state,
    measure,
    pair_bases,
    random_bases,
    tfim_ground_state,
    w_state,
)


def _random_state(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=2**n) + 1j * rng.normal(size=2**n)
    return v / np.linalg.norm(v)


class _Table(nn.Module):
    """A dense, unnormalised wavefunction: one complex log-amplitude per configuration (oracle)."""

    def __init__(self, psi: np.ndarray) -> None:
        super().__init__()
        self.n_sites = int(round(math.log2(len(psi))))
        lp = np.log(np.asarray(psi, dtype=np.complex128)) + 0.3  # deliberately unnormalised
        self.re = nn.Parameter(torch.tensor(lp.real))
        self.im = nn.Parameter(torch.tensor(lp.imag))

    def log_psi(self, sigma: torch.Tensor) -> torch.Tensor:
        w = 2 ** torch.arange(self.n_sites - 1, -1, -1)
        idx = (sigma.long() * w).sum(-1)
        return torch.complex(self.re[idx], self.im[idx])


def _rnn(n: int, seed: int = 0, **kw) -> nn.Module:
    return build_model("rnn", n, {"hidden": 16, "dtype": "float64", **kw}, seed=seed)


# -- measurement simulation -------------------------------------------------------------------


def test_rotate_dense_equals_kronecker_product():
    psi = _random_state(3, 0)
    for basis in ["XZY", "YYX", "ZZZ"]:
        mat = np.kron(np.kron(*[basis_unitary(c).numpy() for c in basis[:2]]), basis_unitary(basis[2]).numpy())
        got = rotate_dense(torch.tensor(psi), basis).numpy()
        np.testing.assert_allclose(got, mat @ psi, atol=1e-13)


def test_closed_form_expectations():
    n, phi = 5, 0.7
    psi = ghz_state(n, phase=phi)
    parity = (1 - 2 * enumerate_configs(n).numpy()).prod(1)
    assert born_probabilities(psi, "X" * n) @ parity == pytest.approx(math.cos(phi), abs=1e-12)
    assert born_probabilities(psi, "Y" + "X" * (n - 1)) @ parity == pytest.approx(math.sin(phi), abs=1e-12)
    # any basis with fewer than N non-Z sites is blind to the GHZ phase
    np.testing.assert_allclose(born_probabilities(psi, "XXYXZ"), born_probabilities(ghz_state(n), "XXYXZ"), atol=1e-14)
    p_w = born_probabilities(w_state(4), "ZZZZ")
    assert p_w[[8, 4, 2, 1]] == pytest.approx([0.25] * 4)


@pytest.mark.parametrize("basis", ["ZZZZ", "XYZX", "YYYY"])
def test_measurement_frequencies_match_born_probabilities(basis):
    psi = _random_state(4, 1)
    rec = measure(psi, basis, 20000, seed=3)
    idx = (rec.outcomes.numpy() * 2 ** np.arange(3, -1, -1)).sum(1)
    counts = np.bincount(idx, minlength=16)
    p = born_probabilities(psi, basis)
    chi2, pval = stats.chisquare(counts, 20000 * p)
    assert pval > 1e-3, (basis, chi2, pval)
    assert (rec.bases == parse_bases(basis, 4)).all()
    # same seed, same records
    assert torch.equal(measure(psi, basis, 20000, seed=3).outcomes, rec.outcomes)


def test_tfim_state_and_observables_reproduce_the_energy():
    n, h = 6, 0.8
    energy, psi = tfim_ground_state(n, h=h, periodic=False)
    assert psi.min() >= 0 and np.linalg.norm(psi) == pytest.approx(1.0)
    obs = T.observables(psi)
    e_obs = -sum(obs["zz"][i, i + 1] for i in range(n - 1)) - h * obs["mx"].sum()
    assert e_obs == pytest.approx(energy, abs=1e-9)


def test_basis_schemes():
    rb = random_bases(8, 50, max_non_z=3, seed=0)
    k = [sum(c != "Z" for c in b) for b in rb]
    assert min(k) >= 1 and max(k) <= 3 and len(rb) == 50
    assert len(pair_bases(5)) == 16 and all(sum(c != "Z" for c in b) == 2 for b in pair_bases(5))


def test_records_roundtrip(tmp_path):
    rec = measure(ghz_state(4), ["ZZZZ", "XXXX"], [7, 5], seed=0)
    rec.save(tmp_path / "r.safetensors")
    back = MeasurementRecords.load(tmp_path / "r.safetensors")
    assert torch.equal(back.outcomes, rec.outcomes) and torch.equal(back.bases, rec.bases)
    assert back.basis_counts() == {"ZZZZ": 7, "XXXX": 5}


# -- likelihood --------------------------------------------------------------------------------


def test_local_and_dense_likelihoods_agree_with_born_rule():
    psi = _random_state(5, 2)
    model = _Table(psi)
    bases = random_bases(5, 10, max_non_z=3, seed=1) + ["XXXXX", "YXYXZ", "ZZZZZ"]
    rec = measure(psi, bases, 20, seed=4)
    a = T.rotated_log_psi(model, rec, method="local")
    b = T.rotated_log_psi(model, rec, method="dense")
    assert torch.allclose(a, b, atol=1e-12)
    p_model = torch.exp(2 * a.real - T.log_partition(model)).detach().numpy()
    idx = (rec.outcomes.numpy() * 2 ** np.arange(4, -1, -1)).sum(1)
    p_true = np.array([born_probabilities(psi, bs)[i] for bs, i in zip(np.repeat(bases, 20), idx)])
    np.testing.assert_allclose(p_model, p_true, atol=1e-12)
    assert T.fidelity(model, psi) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("kind", ["rnn", "transformer"])
def test_rotated_autoregressive_model_is_normalised_in_every_basis(kind):
    opts = {"hidden": 16} if kind == "rnn" else {"d_model": 16, "n_layers": 1}
    model = build_model(kind, 4, {**opts, "phase": True, "dtype": "float64"}, seed=0)
    allc = enumerate_configs(4)
    for basis in ["ZZZZ", "XYZX", "YYYY"]:
        rec = MeasurementRecords(allc, basis)
        p = torch.exp(2 * T.rotated_log_psi(model, rec).real).detach()
        assert float(p.sum()) == pytest.approx(1.0, abs=1e-10)


# -- training ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rnn", "rbm"])
def test_small_tfim_tomography_from_z_basis(kind):
    n = 6
    _, psi = tfim_ground_state(n, h=1.0, periodic=False)
    rec = measure(psi, "Z" * n, 3000, seed=0)
    opts = {"hidden": 16} if kind == "rnn" else {"alpha": 1, "init_std": 0.05}
    model = build_model(kind, n, {**opts, "dtype": "float64"}, seed=0)
    epochs, lr = (8, 1e-2) if kind == "rnn" else (10, 3e-2)
    res = T.fit_tomography(model, rec, epochs=epochs, batch_size=200, lr=lr, psi_exact=psi,
                           generator=torch.Generator().manual_seed(0))
    assert res.fidelity > 0.99, res.history
    assert T.observable_errors(model, psi)["zz"] < 0.1


def test_small_ghz_tomography_learns_the_phase():
    n, phi = 4, math.pi / 2
    psi = ghz_state(n, phase=phi)
    rec = measure(psi, ["Z" * n, "X" * n, "Y" + "X" * (n - 1)], [1000, 500, 500], seed=0)
    model = _rnn(n, phase=True)
    res = T.fit_tomography(model, rec, epochs=10, batch_size=200, lr=3e-2, psi_exact=psi,
                           generator=torch.Generator().manual_seed(0))
    assert res.fidelity > 0.97, res.history
    # a positive state (no phase) cannot exceed |(1 + e^{i phi})/2|^2 = 0.5 here
    assert T.fidelity(ghz_state(n), psi) == pytest.approx(0.5, abs=1e-12)


def test_config_runner(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'name = "t"\n[state]\nkind = "w"\nn_sites = 4\n[measurement]\nz_shots = 2000\n'
        '[model]\nkind = "rnn"\n[model.options]\nhidden = 16\ndtype = "float64"\n'
        "[train]\nepochs = 10\nbatch_size = 200\nlr = 3e-2\nprogress = false\n"
    )
    res = run_tomography_config(str(cfg), str(tmp_path / "out"))
    assert res["fidelity"] > 0.98 and res["n_shots"] == 2000
    assert abs(res["nll"] - res["nll_exact"]) < 0.05
    assert (tmp_path / "out" / "result.json").is_file()
    assert len(MeasurementRecords.load(tmp_path / "out" / "records.safetensors")) == 2000


# -- bad input ---------------------------------------------------------------------------------


def test_bad_records_are_rejected_with_clear_errors():
    with pytest.raises(ValueError, match="3 letters but the system has 4 sites"):
        measure(ghz_state(4), "ZZZ", 10, seed=0)
    with pytest.raises(ValueError, match="invalid letter 'Q'"):
        measure(ghz_state(4), "ZQZZ", 10, seed=0)
    with pytest.raises(ValueError, match="invalid basis code 3"):
        MeasurementRecords(torch.zeros(2, 4), torch.full((2, 4), 3))
    with pytest.raises(ValueError, match=r"must be 0 .* or 1"):
        MeasurementRecords(torch.tensor([[0, 2, 1, 0]]), "ZZZZ")
    with pytest.raises(ValueError, match=r"must be 0 .* or 1"):
        MeasurementRecords(torch.tensor([[0.0, 0.5, 1.0, 0.0]]), "ZZZZ")
    with pytest.raises(ValueError, match="5 letters but the system has 4"):
        MeasurementRecords(torch.zeros(3, 4), "ZZZZZ")
    with pytest.raises(ValueError, match="outcome rows but"):
        MeasurementRecords(torch.zeros(3, 4), torch.zeros(2, 4))
    rec = MeasurementRecords(torch.zeros(3, 5), "ZZZZZ")
    with pytest.raises(ValueError, match="5 sites per shot but the model has 4"):
        T.nll(_rnn(4), rec)
    with pytest.raises(ValueError, match="norm"):
        measure(np.ones(16), "ZZZZ", 10, seed=0)
    with pytest.raises(ValueError, match="not 2\\*\\*N"):
        measure(np.ones(6) / math.sqrt(6), "ZZZZ", 10, seed=0)


def test_bad_config_is_rejected(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[state]\nkind = "ghz"\nn_site = 4\n')
    with pytest.raises(ValueError, match="unknown key 'n_site' in \\[state\\]; allowed keys: kind, n_sites"):
        load_config(str(cfg), "tomography")
    cfg.write_text("[train]\nepochs = 1.5\n")
    with pytest.raises(ValueError, match=r"epochs = 1\.5 should be of type int"):
        load_config(str(cfg), "tomography")
    cfg.write_text('[state]\nkind = "bell"\n')
    with pytest.raises(ValueError, match="allowed: 'tfim', 'ghz', 'w'"):
        load_config(str(cfg), "tomography")


# -- must-reach accuracy runs (slow: python -m pytest tests/test_tomography.py -m slow) ---------


@pytest.mark.slow
@pytest.mark.parametrize(
    "config, threshold",
    [
        ("examples/quantum/tomography_tfim.toml", 0.99),
        ("examples/quantum/tomography_tfim_rbm.toml", 0.99),
        ("examples/quantum/tomography_ghz.toml", 0.95),
    ],
)
def test_must_reach_n10(config, threshold):
    from pathlib import Path

    res = run_tomography_config(str(Path(__file__).parents[1] / config))
    assert res["n_sites"] == 10
    assert res["n_shots"] <= 20000
    assert res["fidelity"] >= threshold, res["history"]
