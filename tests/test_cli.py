import json
import signal
import subprocess
import sys
import time

import pytest

from physgen.cli import main
from physgen.config import ConfigError, load_config

CONFIG = """
[simulator]
name = "two_moons"

[simulation]
n = {n}
seed = 0
batch_size = 200

[model]
name = "nsf"
options = {{ transforms = 2, hidden_features = [16, 16] }}

[train]
max_epochs = {epochs}
patience = 1000
batch_size = 100

[sample]
n = 300
"""


def write(tmp_path, n=600, epochs=3, extra=""):
    path = tmp_path / "cfg.toml"
    path.write_text(CONFIG.format(n=n, epochs=epochs) + extra)
    return path


def test_unknown_key_names_allowed_keys(tmp_path):
    path = write(tmp_path)
    path.write_text(path.read_text().replace("patience = 1000", "patinece = 1000"))
    with pytest.raises(ConfigError, match=r"cfg.toml: unknown key 'patinece' in \[train\]; allowed keys: batch_size, lr"):
        load_config(path, "train")
    path.write_text(CONFIG.format(n=10, epochs=1) + "\n[extra]\na = 1\n")
    with pytest.raises(ConfigError, match=r"unknown section \[extra\]; allowed sections: simulator, simulation, encoder, model, train, "
                                          r"sample, cluster$"):
        load_config(path, "train")


def test_wrong_type_names_key(tmp_path):
    path = write(tmp_path)
    path.write_text(path.read_text().replace("n = 600", 'n = "many"'))
    with pytest.raises(ConfigError, match=r"\[simulation\] n = 'many' should be of type int; got string"):
        load_config(path, "simulate")
    assert main(["simulate", str(path), "--run-dir", str(tmp_path / "r")]) == 2


def test_simulate_train_sample_end_to_end(tmp_path, capsys):
    import arviz as az

    path = write(tmp_path)
    run = tmp_path / "run"
    assert main(["simulate", str(path), "--run-dir", str(run), "--quiet"]) == 0
    assert main(["train", str(path), "--run-dir", str(run), "--quiet"]) == 0
    assert main(["sample", str(path), "--run-dir", str(run)]) == 0
    idata = az.from_netcdf(str(run / "samples.nc"))
    assert idata.posterior["theta_0"].shape == (1, 300)
    hist = json.loads((run / "train_history.json").read_text())
    assert [h["epoch"] for h in hist["history"]] == [0, 1, 2]


def test_killed_train_resumes(tmp_path):
    path = write(tmp_path, n=2000, epochs=40)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "physgen.cli", "train", str(path), "--run-dir", str(run), "--quiet"]
    proc = subprocess.Popen(cmd)
    ckpt = run / "checkpoints" / "checkpoint.safetensors"
    deadline = time.time() + 120
    from physgen.io import load_file

    epochs_before = 0
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists():
            try:
                epochs_before = len(load_file(ckpt)[1]["config"]["result"]["history"])
            except Exception:
                epochs_before = 0
            if epochs_before >= 3:
                break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 3 <= epochs_before < 40, "the run should have been killed mid-training"
    _, meta = load_file(ckpt)
    before = meta["config"]["result"]["history"]
    assert subprocess.run(cmd, timeout=600).returncode == 0
    hist = json.loads((run / "train_history.json").read_text())["history"]
    assert [h["epoch"] for h in hist] == list(range(40))
    # the epochs finished before the kill are kept as they were, not redone
    assert hist[: len(before)] == before


@pytest.mark.parametrize("example", ["examples/two_moons.toml", "examples/two_moons_fm_fast.toml"])
def test_example_configs_parse(example):
    from pathlib import Path

    from physgen.models import MODELS, PRESETS

    cfg = load_config(Path(__file__).resolve().parents[1] / example, "train")
    assert cfg.model.name in [*MODELS, *PRESETS]


def test_train_leaves_unset_options_to_the_family(tmp_path, monkeypatch):
    """lr = 0 / batch_size = 0 / max_epochs = 0 (the defaults) reach fit_posterior as absent, so the family's
    fit_defaults apply (flow_matching_fast: lr 2e-3, batch 512); given values are passed through."""
    import physgen

    seen = {}

    def fake_fit_posterior(data, **kw):
        seen.update(kw)
        raise SystemExit(0)

    monkeypatch.setattr(physgen, "fit_posterior", fake_fit_posterior)
    path = tmp_path / "cfg.toml"
    path.write_text(CONFIG.format(n=200, epochs=3).replace('name = "nsf"', 'name = "flow_matching_fast"')
                    .replace("options = { transforms = 2, hidden_features = [16, 16] }", "")
                    .replace("batch_size = 100", "lr = 0.0"))
    with pytest.raises(SystemExit):
        main(["train", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"])
    assert seen["model"] == "flow_matching_fast"
    assert "lr" not in seen and "batch_size" not in seen
    assert seen["max_epochs"] == 3


def test_vmc_and_tomography_commands(tmp_path, capsys):
    vmc = tmp_path / "vmc.toml"
    vmc.write_text('[lattice]\nn = 4\n[model]\ntype = "rnn"\nhidden = 4\n[vmc]\nn_steps = 3\nn_samples = 32\n'
                   "eval_samples = 64\ncheckpoint_every = 1\n")
    assert main(["vmc", str(vmc), "--run-dir", str(tmp_path / "vmc")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 3 and summary["config"]["lattice"]["n"] == 4 and "relative_error" in summary
    assert json.loads((tmp_path / "vmc" / "vmc_summary.json").read_text())["energy"] == summary["energy"]
    assert (tmp_path / "vmc" / "vmc_checkpoint.safetensors").is_file()
    assert main(["vmc", str(vmc)]) == 0  # default output folder: <config stem>_out beside the config
    assert (tmp_path / "vmc_out" / "vmc_summary.json").is_file()
    capsys.readouterr()

    tomo = tmp_path / "tomo.toml"
    tomo.write_text('name = "t"\n[state]\nkind = "ghz"\nn_sites = 3\n[measurement]\nz_shots = 100\nscheme = "global"\n'
                    "shots_per_basis = 50\n[model]\nkind = \"rnn\"\n[model.options]\nhidden = 4\nphase = true\n"
                    "[train]\nepochs = 2\nprogress = false\n")
    assert main(["tomography", str(tomo), "--run-dir", str(tmp_path / "tomo")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_shots"] == 200 and result["n_bases"] == 3 and 0 <= result["fidelity"] <= 1
    assert {p.name for p in (tmp_path / "tomo").iterdir()} == {"result.json", "records.safetensors", "model.safetensors"}
    tomo.write_text(tomo.read_text().replace("shots_per_basis = 50\n", ""))
    assert main(["tomography", str(tomo)]) == 2
    assert capsys.readouterr().err.strip() == (f"physgen: config error: {tomo}: [measurement] extra bases are requested "
                                               "but shots_per_basis = 0; set shots_per_basis")
