"""The point-cloud workflows (examples/workflows/thomas_*.toml, cox_*.toml): configs, encoders, a small run end to end."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from physgen.config import ConfigError, load_config, resolve_simulator

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted(p.name for p in (ROOT / "examples" / "workflows").glob("*.toml")
                   if p.name.startswith(("thomas_", "cox_")))


def test_there_are_point_cloud_workflows():
    assert {"thomas_deepsets.toml", "thomas_set_transformer.toml", "thomas_pair_correlation.toml"} <= set(WORKFLOWS)
    assert any(w.startswith("cox_") for w in WORKFLOWS)


@pytest.mark.parametrize("name", WORKFLOWS)
def test_workflow_config_builds_its_encoder_for_the_simulator(name):
    from physgen.nn import check_accepts, encoder_for

    cfg = load_config(ROOT / "examples" / "workflows" / name, "run")
    sim = resolve_simulator(cfg.simulator.name, cfg.simulator.options)
    assert sim.x_kind == "points"
    check_accepts(cfg.encoder.name, sim.x_kind, sim.x_shape)
    enc = encoder_for(cfg.encoder.name, sim.x_shape, **cfg.encoder.options)
    x = sim.simulate(sim.prior.sample((3,)), generator=torch.Generator().manual_seed(0))
    if hasattr(enc, "standardize_from"):
        enc.standardize_from(x)
    out = enc(x)
    assert out.shape == (3, enc.out_features) and bool(torch.isfinite(out).all())
    # calibration-only validation on at least 500 held-out simulations (the bar)
    assert cfg.validate.reference == "none" and cfg.validate.num_test >= 500


def test_cnn_on_point_sets_is_refused_before_any_simulation(tmp_path):
    from physgen.pipeline import run

    text = (ROOT / "examples" / "workflows" / "thomas_deepsets.toml").read_text()
    bad = re.sub(r'name = "deepsets"\noptions = \{.*\}', 'name = "cnn"\noptions = {}', text)
    assert 'name = "cnn"' in bad
    path = tmp_path / "bad.toml"
    path.write_text(bad)
    with pytest.raises(ConfigError, match="takes field or lattice data, but the simulator ThomasProcess gives points"):
        run(path, tmp_path / "run")
    assert not (tmp_path / "run" / "simulations").exists()


def test_compare_widths_prints_the_ratio(tmp_path):
    def metrics(std, cov_shift):
        levels = [0.05 * k for k in range(1, 20)]
        return {"metrics": {"calibration": {
            "num_test": 500, "sbc": {"min_p_value": 0.3}, "passed": True,
            "coverage": {"levels": levels, "coverage": [lv + cov_shift for lv in levels]},
            "z_scores": {"prior_variance": [4.0, 1.0], "contraction_mean": [1 - std[0] ** 2 / 4.0, 1 - std[1] ** 2]}},
            "posterior_std_mean": list(std)}}

    for run, std in (("a", (0.5, 0.2)), ("b", (1.0, 0.4))):
        (tmp_path / run / "report").mkdir(parents=True)
        (tmp_path / run / "report" / "metrics.json").write_text(json.dumps(metrics(std, 0.01)))
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "workflows" / "compare_widths.py"),
                          str(tmp_path / "a"), str(tmp_path / "b")], capture_output=True, text=True, check=True).stdout
    assert "width ratio A/B (rms std over test pairs): [0.5, 0.5]; mean 0.500" in out
    assert "68%: 0.690" in out and "max |dev| 0.010" in out


@pytest.mark.slow
def test_small_thomas_deepsets_run_end_to_end(tmp_path):
    """The DeepSets workflow at a small size: simulate, train, validate by calibration (about a minute)."""
    from physgen.pipeline import run

    text = (ROOT / "examples" / "workflows" / "thomas_deepsets.toml").read_text()
    text = (text.replace("n = 20000", "n = 1500").replace("max_time = 540", "max_time = 20")
            .replace("num_test = 500", "num_test = 60").replace("num_posterior_samples = 500", "num_posterior_samples = 100")
            .replace("num_observations = 5", "num_observations = 1"))
    path = tmp_path / "small.toml"
    path.write_text(text)
    run(path, tmp_path / "run")
    m = json.loads((tmp_path / "run" / "report" / "metrics.json").read_text())["metrics"]
    assert m["calibration"]["num_test"] == 60 and len(m["calibration"]["sbc"]["p_values"]) == 3


def test_posterior_takes_point_sets_of_any_length(tmp_path):
    # shorter sets are padded, longer ones with only padding beyond N_max are cut, and a set with more real
    # points than N_max goes through the mask with a warning naming the n_max that would cover it
    import physgen
    from simulators.galaxies import ThomasProcess

    sim = ThomasProcess(1.0, 2, bounds={"kappa": (5.0, 10.0), "mu": (2.0, 4.0)}, n_max=120)
    data = physgen.simulate(sim, 64, seed=0)
    post = physgen.fit_posterior(data, encoder="deepsets", encoder_options={"hidden_features": [8, 8]},
                                 max_epochs=1, batch_size=32, seed=0)
    x = data.x[0]
    k = int(x[:, -1].sum())
    short, long_pad = x[: k + 1], torch.cat([x, torch.zeros(30, 3)])
    ref = post.sample(5, x, seed=1)
    torch.testing.assert_close(post.sample(5, short, seed=1), ref)
    torch.testing.assert_close(post.sample(5, long_pad, seed=1), ref)
    big = torch.cat([torch.rand(130, 2), torch.ones(130, 1)], 1)
    with pytest.warns(RuntimeWarning, match=r"130 points, more than N_max = 120.*n_max >= 130"):
        out = post.sample(5, big, seed=1)
    assert out.shape == (5, 3) and bool(torch.isfinite(out).all())
    with pytest.raises(ValueError, match=r"\(120, 3\)"):
        post.sample(5, torch.rand(50, 4))
