"""Field-level cosmology workflows: the example configs load and fit together, bad input is refused before
simulating, and (slow) the small demo runs end to end with its report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from physgen.config import ConfigError, load_config
from physgen.pipeline import check_encoder

WORKFLOWS = Path(__file__).resolve().parents[1] / "examples" / "workflows"
FIELD_CONFIGS = ["gaussian_field.toml", "gaussian_field_cnn_pk.toml", "gaussian_field_pk.toml", "lognormal_field.toml", "convergence_map.toml", "convergence_map_cnn_pk.toml"]


@pytest.mark.parametrize("name", FIELD_CONFIGS)
def test_field_workflow_configs_load_and_their_encoder_fits(name):
    from physgen.config import resolve_simulator

    cfg = load_config(WORKFLOWS / name, "run")
    sim = resolve_simulator(cfg.simulator.name, cfg.simulator.options)
    assert sim.x_shape == (32, 32) and sim.x_kind == "field"
    check_encoder(cfg, sim)  # builds the encoder for x of shape (32, 32): no error
    assert cfg.validate.mcmc["sampler"] == "batched" and cfg.simulation.n <= 20_000


def test_demo_config_is_a_valid_workflow(tmp_path):
    from physgen.config import resolve_simulator
    from physgen.demo import _FIELD_TOML

    path = tmp_path / "demo.toml"
    path.write_text(_FIELD_TOML.format(n=500, seed=0, max_time=5.0))
    cfg = load_config(path, "run")
    check_encoder(cfg, resolve_simulator(cfg.simulator.name, cfg.simulator.options))
    from physgen.demo import demo

    with pytest.raises(ValueError, match="unknown demo 'ising'; choose one of gaussian_field, two_moons"):
        demo("ising")


def test_point_encoder_on_a_field_is_refused_before_simulating(tmp_path):
    from physgen.config import resolve_simulator

    text = (WORKFLOWS / "gaussian_field.toml").read_text().replace('name = "cnn"', 'name = "deepsets"')
    text = text.replace('options = { periodic = true, pooling = "moments", channels = [8, 16, 32], out_features = 16 }',
                        "options = {}")
    path = tmp_path / "bad.toml"
    path.write_text(text)
    cfg = load_config(path, "run")
    with pytest.raises(ConfigError, match=r"deepsets.*points.*field"):
        check_encoder(cfg, resolve_simulator(cfg.simulator.name, cfg.simulator.options))


def test_observation_of_the_wrong_grid_size_names_the_expected_shape():
    from physgen.nn import encoder_for
    from simulators.cosmology import GaussianField

    sim = GaussianField(32, 256.0, 2)
    with pytest.raises(ValueError, match=r"\(\*B, 32, 32\)"):
        sim.log_likelihood(torch.tensor([0.3, 0.8]), torch.zeros(64, 64))
    for name in ("cnn", "power_spectrum"):
        with pytest.raises(ValueError, match=r"32, 32"):
            encoder_for(name, (32, 32))(torch.zeros(2, 31, 31))


@pytest.mark.slow
def test_field_demo_end_to_end(tmp_path):
    """The demo at a reduced size: a report with C2ST against the converged batched reference, and calibration."""
    from physgen.demo import run_field_demo

    torch.set_num_threads(1)
    m = run_field_demo(tmp_path / "demo", num_simulations=2000, max_train_seconds=20, progress=False)
    assert Path(m["report"]).is_file()
    metrics = json.loads((tmp_path / "demo" / "report" / "metrics.json").read_text())
    assert all(o["reference"]["converged"] for o in metrics["observations"])
    assert 0.5 <= metrics["c2st_mean"] <= 1.0 and len(metrics["std_ratio_mean"]) == 2
