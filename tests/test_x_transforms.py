"""The emulator's pointwise map of x (``x_transform``): the density is the change of variables (it integrates
to one on x's support, and equals the model-space density minus Σ ln(x + s)), samples stay inside the
support, the map survives save/load and the config, and x outside the support is an error at training and
-inf in log_prob."""

from __future__ import annotations

import math

import pytest
import torch

import physgen
from physgen.config import load_config
from physgen.data import SimulationSet
from physgen.emulation import _fingerprints
from physgen.inference import Emulator

FLOW = {"model": "nsf", "model_options": {"transforms": 2, "hidden_features": [16, 16]}, "max_epochs": 15,
        "batch_size": 64, "seed": 0}


def _lognormal(n: int = 600, dim: int = 2) -> SimulationSet:
    """x = e^(θ + 0.3 z) - 1 per element (x > -1), θ ~ U(-0.5, 0.5)^dim."""
    g = torch.Generator().manual_seed(0)
    theta = torch.rand(n, dim, generator=g) - 0.5
    return SimulationSet(theta, torch.expm1(theta + 0.3 * torch.randn(n, dim, generator=g)))


def test_log1p_density_is_the_model_space_density_minus_the_log_jacobian():
    emu = physgen.fit_emulator(_lognormal(), x_transform="log1p", **FLOW)
    plain = Emulator(emu.model, emu.encoder, 2, (2,))  # the same network and standardisation, no map
    plain.load_state_dict(emu.state_dict())
    x, theta = _lognormal(8).x, torch.zeros(8, 2)
    expected = plain.log_prob(torch.log1p(x), theta) - torch.log1p(x).sum(-1)
    torch.testing.assert_close(emu.log_prob(x, theta), expected)


def test_the_emulated_density_integrates_to_one_over_the_support():
    g = torch.Generator().manual_seed(1)
    theta = torch.rand(600, 1, generator=g) - 0.5
    data = SimulationSet(theta, torch.exp(theta + 0.3 * torch.randn(600, 1, generator=g)))  # x > 0
    emu = physgen.fit_emulator(data, x_transform="log", **{**FLOW, "model_options": {"transforms": 2,
                                                                                      "hidden_features": [16]}})
    u = torch.linspace(-4.0, 3.0, 20_001)  # a grid uniform in ln x: ∫ q(x) dx = ∫ q(e^u) e^u du
    x = torch.exp(u)[:, None]
    q = torch.exp(emu.log_prob(x, torch.zeros(len(u), 1)).double()) * x[:, 0].double()
    mass = float(torch.trapezoid(q.detach(), u.double()))
    assert abs(mass - 1.0) < 0.01, mass
    # the identity map would put mass on x <= 0; this one has none there
    assert emu.log_prob(torch.tensor([[0.0], [-0.5]]), torch.zeros(2, 1)).eq(-math.inf).all()


def test_samples_stay_inside_the_support_and_the_map_survives_save_and_load(tmp_path):
    emu = physgen.fit_emulator(_lognormal(), x_transform="log1p", **FLOW)
    draws = emu.sample(500, torch.tensor([0.4, -0.4]), seed=0)
    assert draws.shape == (500, 2) and bool((draws > -1).all())
    # the draws follow the lognormal's shape: ln(1 + x) has about the simulator's mean and spread
    u = torch.log1p(draws)
    torch.testing.assert_close(u.mean(0), torch.tensor([0.4, -0.4]), atol=0.12, rtol=0)
    torch.testing.assert_close(u.std(0), torch.full((2,), 0.3), atol=0.1, rtol=0)
    emu.save(tmp_path / "e.safetensors")
    again = physgen.load(tmp_path / "e.safetensors")
    assert again.x_transform == "log1p"
    x, theta = _lognormal(5).x, torch.zeros(5, 2)
    torch.testing.assert_close(again.log_prob(x, theta), emu.log_prob(x, theta))
    torch.testing.assert_close(again.sample(4, theta[0], seed=3), emu.sample(4, theta[0], seed=3))


def test_a_field_emulator_learns_the_log_density_and_returns_fields_above_minus_one():
    g = torch.Generator().manual_seed(0)
    theta = torch.rand(64, 2, generator=g) + 0.5
    x = torch.expm1(0.5 * theta[:, :1, None, None] * torch.randn(64, 1, 8, 8, generator=g))
    emu = physgen.fit_emulator(
        SimulationSet(theta, x), model="flow_matching", x_transform="log1p", max_epochs=2, batch_size=32,
        model_options={"channels": [8, 16], "embedding_features": 16, "groups": 4, "periodic": True},
    )
    out = emu.sample(3, torch.tensor([[1.0, 1.0], [0.7, 0.9]]), seed=0)
    assert out.shape == (3, 2, 1, 8, 8) and bool((out > -1).all()) and bool(torch.isfinite(out).all())


def test_x_outside_the_support_and_unknown_maps_are_errors_that_say_what_to_do():
    data = _lognormal(50)
    data.x[7, 1] = -1.0
    with pytest.raises(ValueError, match=r"x_transform='log1p' needs x > -1.*1 training rows.*first row 7.*'none'"):
        physgen.fit_emulator(data, x_transform="log1p", **FLOW)
    with pytest.raises(ValueError, match=r"x_transform must be one of \['log', 'log1p', 'none'\]; got 'sqrt'"):
        physgen.fit_emulator(_lognormal(50), x_transform="sqrt", **FLOW)
    with pytest.raises(ValueError, match=r"needs x > 0"):
        physgen.fit_likelihood(_lognormal(50), x_transform="log", **FLOW)


def test_the_emulate_config_takes_the_map_and_old_runs_keep_their_training_stage(tmp_path):
    text = """
[simulator]
name = "gaussian_linear"
[model]
name = "nsf"
x_transform = "{}"
"""
    (tmp_path / "a.toml").write_text(text.format("log1p"))
    (tmp_path / "b.toml").write_text(text.format("none"))
    (tmp_path / "c.toml").write_text(text.format("sqrt"))
    a, b = load_config(tmp_path / "a.toml", "emulate"), load_config(tmp_path / "b.toml", "emulate")
    assert a.model.x_transform == "log1p" and b.model.x_transform == "none"
    assert _fingerprints(a)["train"] != _fingerprints(b)["train"]
    assert _fingerprints(a)["simulate"] == _fingerprints(b)["simulate"]
    import dataclasses
    import hashlib
    import json

    legacy = dataclasses.asdict(b.model)
    del legacy["x_transform"]  # a config written before the key existed fingerprints as before
    sim_fp = _fingerprints(b)["simulate"]
    old = {"after": sim_fp, "model": legacy, "train": dataclasses.asdict(b.train)}
    assert _fingerprints(b)["train"] == hashlib.sha256(json.dumps(old, sort_keys=True, default=str).encode()).hexdigest()[:16]
    with pytest.raises(Exception, match=r"x_transform.*sqrt"):
        load_config(tmp_path / "c.toml", "emulate")


def test_a_training_batch_outside_the_support_stops_training_with_the_reason():
    """Rows a lazily read store holds past the standardisation's are checked batch by batch."""
    data = _lognormal(64)
    emu = physgen.fit_emulator(data, x_transform="log1p", **{**FLOW, "max_epochs": 1})
    bad = data.x.clone()
    bad[3, 0] = -2.0
    with pytest.raises(ValueError, match=r"needs x > -1.*1 rows of a training batch.*first row 3"):
        emu.loss(data.theta, bad)
