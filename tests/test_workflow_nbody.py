"""The N-body workflow (docs/workflow_nbody.md): both configs load, share their simulations, validate by calibration
only, and a shortened version runs end to end (CNN run, then the P(k) run on the CNN run's copied store)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from physgen.config import load_config, resolve_simulator
from physgen.pipeline import _fingerprints, check_encoder, run

WORKFLOWS = Path(__file__).resolve().parents[1] / "examples" / "workflows"
CONFIGS = ("nbody_cnn.toml", "nbody_pk.toml")
FULL_OPTIONS = 'options = { n_particles = 32, n_mesh = 32, box_size = 128.0, n_steps = 5, z_init = 10.0, output = "projection" }'
TINY_OPTIONS = 'options = { n_particles = 8, n_mesh = 16, box_size = 64.0, n_steps = 2, z_init = 10.0, output = "projection" }'


def test_nbody_configs_load_share_their_simulations_and_validate_without_reference():
    cfgs = [load_config(WORKFLOWS / name, "run") for name in CONFIGS]
    for cfg in cfgs:
        sim = resolve_simulator(cfg.simulator.name, cfg.simulator.options)
        assert sim.x_shape == (32, 32) and sim.x_kind == "field" and sim.output == "projection"
        check_encoder(cfg, sim)  # the encoder is built for x of shape (32, 32)
        assert cfg.validate.reference == "none" and cfg.validate.num_test >= 500
        assert cfg.train.max_epochs > 0  # stopped by epochs, not by the machine's load
        lo, hi = sim.prior.low.tolist(), sim.prior.high.tolist()
        assert [round(v, 6) for v in lo + hi] == [0.1, 0.6, 0.5, 1.0]
    assert [c.encoder.name for c in cfgs] == ["cnn", "power_spectrum"]
    # the same simulate-stage fingerprint: the P(k) run can reuse the CNN run's store (and the same seed would
    # make the same simulations anyway)
    fps = [_fingerprints(c) for c in cfgs]
    assert fps[0]["simulate"] == fps[1]["simulate"] and fps[0]["train"] != fps[1]["train"]


def _tiny(name: str, tmp_path: Path) -> Path:
    text = (WORKFLOWS / name).read_text()
    assert FULL_OPTIONS in text, "the config's simulator options changed: update FULL_OPTIONS"
    for old, new in ((FULL_OPTIONS, TINY_OPTIONS), ("n = 10000", "n = 256"), ("max_epochs = 60", "max_epochs = 2"),
                     ("max_epochs = 200", "max_epochs = 2"), ("num_test = 500", "num_test = 30"),
                     ("num_posterior_samples = 1000", "num_posterior_samples = 64"),
                     ("num_observations = 5", "num_observations = 1"),
                     ("bins = 16, out_features", "bins = 8, out_features")):  # a 16x16 map has 8 |k| shells
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text)
    return path


def test_tiny_nbody_workflow_end_to_end_with_the_store_reused(tmp_path):
    torch.set_num_threads(1)
    cnn_dir, pk_dir = tmp_path / "cnn", tmp_path / "pk"
    run(_tiny("nbody_cnn.toml", tmp_path), cnn_dir)
    (pk_dir / "stages").mkdir(parents=True)
    shutil.copytree(cnn_dir / "simulations", pk_dir / "simulations")
    shutil.copy(cnn_dir / "stages" / "simulate.json", pk_dir / "stages" / "simulate.json")
    lines: list[str] = []
    run(_tiny("nbody_pk.toml", tmp_path), pk_dir, log=lines.append)
    assert "simulate: skipped (up to date)" in lines
    for d in (cnn_dir, pk_dir):
        m = json.loads((d / "report" / "metrics.json").read_text())["metrics"]
        cal = m["calibration"]
        assert cal["num_test"] == 30 and len(cal["sbc"]["p_values"]) == 2
        assert len(cal["coverage"]["levels"]) == len(cal["coverage"]["coverage"]) > 5
        assert "tarp" in cal and "c2st_mean" not in m  # no reference: calibration only
        assert len(m["posterior_std_mean"]) == 2
    # the two runs score the same held-out pairs: the same simulator and [validate] seed
    zc = [json.loads((d / "report" / "metrics.json").read_text())["metrics"]["calibration"]["z_scores"]
          for d in (cnn_dir, pk_dir)]
    assert zc[0]["prior_variance"] == zc[1]["prior_variance"]


def test_the_emulator_config_reuses_the_workflows_simulations():
    """examples/emulate/nbody_map.toml says: copy runs/nbody_cnn/simulations into its run folder. That holds only
    while its [simulator] and [simulation] sections (the simulate stage's fingerprint) equal nbody_cnn.toml's."""
    import dataclasses

    from physgen.run_folder import config_hash

    def simulate_fingerprint(path, kind):
        cfg = load_config(path, kind)
        return config_hash({"simulator": dataclasses.asdict(cfg.simulator),
                            "simulation": dataclasses.asdict(cfg.simulation)})

    assert simulate_fingerprint(WORKFLOWS.parent / "emulate" / "nbody_map.toml", "emulate") == simulate_fingerprint(
        WORKFLOWS / "nbody_cnn.toml", "run")
