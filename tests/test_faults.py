"""Fault injection: concurrent writers, damaged stores and files, changed settings, bad values and inputs, the CLI.

Each fault expects a clear one-line error naming the fix, or an exact resume (bit-identical to an uninterrupted
run). The default part runs in about a minute; SIGKILL at random points of simulate, train and run over
several seeds is marked slow (``pytest -m slow tests/test_faults.py``).
"""

import json
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import physgen
import physgen.checks as C
import physgen.pipeline
import physgen.data as D
from physgen.checks import FIT_DOMAINS
from physgen.cli import main
from physgen.config import ConfigError, load_config
from physgen.data import SimulationError, SimulationSet, load_simulations, simulate
from physgen.inference import SamplingError
from physgen.io import CheckpointError, load_file
from physgen.lock import FolderLockedError
from physgen.train import TrainingError, fit
from physgen.train.checkpoint import load_checkpoint

from test_data import Toy

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "OMP_NUM_THREADS": "1"}

# a custom simulator module, imported by the CLI from the current directory ("slowsim:Slow")
SLOWSIM = textwrap.dedent(
    """
    import time
    import torch
    from physgen.priors import BoxUniform

    class Slow:
        name = "slow"
        x_shape = (3,)

        def __init__(self, delay=0.1, noise=0.1):
            self.prior = BoxUniform([-1.0, -1.0], [1.0, 1.0])
            self.delay, self.noise = delay, noise

        def simulate(self, theta, *, generator=None):
            time.sleep(self.delay)
            x = torch.cat([theta, theta.sum(-1, keepdim=True)], -1)
            return x + self.noise * torch.randn(x.shape, generator=generator)
    """
)
RUN_CONFIG = """
[simulator]
name = "{name}"
options = {options}

[simulation]
n = {n}
seed = 0
batch_size = {batch}

[model]
name = "nsf"
options = {{ transforms = 2, hidden_features = [16, 16] }}

[train]
max_epochs = {epochs}
patience = 1000
batch_size = 100
lr = {lr}

[sample]
n = 100
"""


def config(tmp_path, *, name="two_moons", options="{}", n=600, batch=200, epochs=2, lr=0.001, extra="",
           file="cfg.toml") -> Path:
    path = tmp_path / file
    path.write_text(RUN_CONFIG.format(name=name, options=options, n=n, batch=batch, epochs=epochs, lr=lr) + extra)
    return path


def cli(args, cwd, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "physgen.cli", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def flip(path: Path, at: float = 0.5) -> None:
    blob = bytearray(path.read_bytes())
    blob[int(len(blob) * at)] ^= 0xFF
    path.write_bytes(bytes(blob))


# ------------------------------------------------------------------------------------------- one writer
def test_second_writer_is_refused_naming_the_first_and_the_store_stays_whole(tmp_path, monkeypatch):
    (tmp_path / "slowsim.py").write_text(SLOWSIM)
    cfg = config(tmp_path, name="slowsim:Slow", options="{ delay = 1.0 }", n=4000, batch=100)
    first = subprocess.Popen([sys.executable, "-m", "physgen.cli", "simulate", str(cfg), "--run-dir", "run",
                              "--quiet"], cwd=tmp_path, env=ENV, stderr=subprocess.PIPE, text=True)
    prog = tmp_path / "run" / "simulations" / "progress.json"
    deadline = time.time() + 60
    while not (prog.exists() and json.loads(prog.read_text())["rows"] > 0) and time.time() < deadline:
        time.sleep(0.05)
    second = cli(["simulate", str(cfg), "--run-dir", "run"], tmp_path)
    assert first.poll() is None, "the first writer should still be running"
    assert second.returncode == 1
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"in use by process {first.pid}" in lines[0] and "physgen simulate" in lines[0]
    sys.path.insert(0, str(tmp_path))
    try:
        import slowsim

        with pytest.raises(FolderLockedError, match=f"process {first.pid}"):
            simulate(slowsim.Slow(delay=1.0), 4000, seed=0, batch_size=100, path=tmp_path / "run")
        first.send_signal(signal.SIGKILL)  # the first writer dies mid-campaign; the same campaign then resumes
        first.wait()
        monkeypatch.setattr(slowsim.time, "sleep", lambda s: None)
        done = simulate(slowsim.Slow(delay=1.0), 4000, seed=0, batch_size=100, path=tmp_path / "run" / "simulations")
        fresh = simulate(slowsim.Slow(delay=0.0), 4000, seed=0, batch_size=100)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("slowsim", None)
    assert torch.equal(done.x, fresh.x) and torch.equal(done.theta, fresh.theta)
    assert load_simulations(tmp_path / "run" / "simulations").meta["complete"]


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    script = (f"from physgen.lock import folder_lock\nimport time\nwith folder_lock({str(tmp_path)!r}, 'holder'):\n"
              "    print('held', flush=True)\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], env=ENV, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(FolderLockedError, match=rf"process {proc.pid} \('holder'"):
        simulate(Toy(), 100, seed=0, path=tmp_path)
    cfg = config(tmp_path, file="../cfg.toml")
    with pytest.raises(FolderLockedError, match=f"process {proc.pid}"):
        physgen.pipeline.run(cfg, tmp_path)
    for command in ("simulate", "train"):
        assert main([command, str(cfg), "--run-dir", str(tmp_path)]) == 1
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(simulate(Toy(), 100, seed=0, path=tmp_path)) == 100


def test_a_kill_during_the_first_batch_write_resumes(tmp_path):
    """A kill after the first batch's zarr data was (partly) written but before it was committed."""
    store = tmp_path / "s"
    simulate(Toy(), 300, seed=2, batch_size=100, path=store)
    state = json.loads((store / "progress.json").read_text())
    state.update(rows=0, done={}, batches={})
    (store / "progress.json").write_text(json.dumps(state))
    (store / "simulations.zarr" / "x" / "zarr.json").write_text("{ half-written")
    resumed = simulate(Toy(), 300, seed=2, batch_size=100, path=store)
    assert torch.equal(resumed.x, simulate(Toy(), 300, seed=2, batch_size=100).x)


# ---------------------------------------------------------------------------------------- damaged data
@pytest.mark.parametrize("fault", ["flip", "delete", "truncate", "theta"])
def test_a_damaged_chunk_is_named_and_repaired_exactly(tmp_path, monkeypatch, fault):
    monkeypatch.setattr(D, "CHUNK_BYTES", 12 * 64)  # x: 64 rows per chunk; theta: 96
    fresh = simulate(Toy(), 1000, seed=0, batch_size=100)
    simulate(Toy(), 1000, seed=0, batch_size=100, path=tmp_path)
    chunk = tmp_path / "simulations.zarr" / ("theta/c/4/0" if fault == "theta" else "x/c/5/0")  # rows 384.., 320..
    if fault in ("flip", "theta"):
        flip(chunk)
    elif fault == "delete":
        chunk.unlink()
    else:
        chunk.write_bytes(chunk.read_bytes()[:10])
    with pytest.raises(SimulationError, match=r"batches .* do not match the progress record.*--repair") as info:
        load_simulations(tmp_path)
    named = {int(k) for k in str(info.value).split("batches ")[1].split(" do not")[0].split(", ")}
    assert named and named <= ({3, 4} if fault == "theta" else {3})  # the batches whose rows the chunk holds
    with pytest.raises(SimulationError, match="--repair"):
        simulate(Toy(), 1000, seed=0, batch_size=100, path=tmp_path)
    repaired = simulate(Toy(), 1000, seed=0, batch_size=100, path=tmp_path, repair=True)
    assert torch.equal(repaired.x, fresh.x) and torch.equal(repaired.theta, fresh.theta)
    assert torch.equal(load_simulations(tmp_path).x, fresh.x)


def test_progress_record_faults_are_named(tmp_path):
    simulate(Toy(), 500, seed=1, batch_size=100, path=tmp_path)
    prog = tmp_path / "progress.json"
    good = prog.read_text()
    prog.write_text(good[: len(good) // 2])
    with pytest.raises(SimulationError, match="progress record progress.json is unreadable.*--restart"):
        load_simulations(tmp_path)
    state = json.loads(good)
    state["rows"] += 50
    prog.write_text(json.dumps(state))
    with pytest.raises(SimulationError, match="counts 550 rows, but its batches hold 500"):
        simulate(Toy(), 500, seed=1, batch_size=100, path=tmp_path)
    state = json.loads(good)
    state["batches"]["2"][1] = 150
    state["done"]["2"] = 150
    prog.write_text(json.dumps(state))
    with pytest.raises(SimulationError, match="gives batch 2 150 rows, more than its size 100"):
        load_simulations(tmp_path)
    prog.write_text(good)  # a store cut short (rows deleted): the missing batches are named and repaired
    import zarr

    group = zarr.open_group(str(tmp_path / "simulations.zarr"), mode="r+")
    for name in ("theta", "x", "batch"):
        group[name].resize((420, *group[name].shape[1:]))
    with pytest.raises(SimulationError, match=r"batches 4 .*missing"):
        load_simulations(tmp_path)
    repaired = simulate(Toy(), 500, seed=1, batch_size=100, path=tmp_path, repair=True)
    assert torch.equal(repaired.x, simulate(Toy(), 500, seed=1, batch_size=100).x)
    prog.write_text("{")
    assert len(simulate(Toy(), 500, seed=1, batch_size=100, path=tmp_path, restart=True)) == 500


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def loss(self, x, y):
        return (self.lin(x) - y).pow(2).mean()


def regression_data(n=200):
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    return x, x.sum(1, keepdim=True)


def test_damaged_checkpoints_and_posteriors_are_refused(tmp_path):
    data = regression_data()
    fit(Regressor(), data, max_epochs=2, progress=False, checkpoint_dir=tmp_path)
    ckpt = tmp_path / "checkpoint.safetensors"
    good = ckpt.read_bytes()
    flip(ckpt, 0.97)  # in the tensor bytes, past the JSON header
    with pytest.raises(CheckpointError, match="damaged: its tensors do not match the checksum"):
        load_checkpoint(ckpt, kind="checkpoint")
    with pytest.raises(CheckpointError, match="damaged"):
        fit(Regressor(), data, max_epochs=3, progress=False, checkpoint_dir=tmp_path, resume=True)
    ckpt.write_bytes(good[: len(good) - 100])
    with pytest.raises(CheckpointError):
        load_checkpoint(ckpt, kind="checkpoint")
    res = fit(Regressor(), data, max_epochs=3, progress=False, checkpoint_dir=tmp_path, resume=True, restart=True)
    assert res.epochs == 3
    sims = simulate(Toy(), 300, seed=0)
    post = physgen.fit_posterior(sims, model="nsf", max_epochs=1, model_options={"transforms": 1})
    path = post.save(tmp_path / "post.safetensors")
    flip(path, 0.9)
    with pytest.raises(CheckpointError, match="damaged"):
        physgen.load(path)


# ---------------------------------------------------------------------------------------- fingerprints
class Noisy:
    """A custom simulator without a ``config`` attribute: its attributes are its identity."""

    name = "noisy"
    x_shape = (2,)

    def __init__(self, noise: float):
        self.prior = physgen.priors.BoxUniform([-1.0, -1.0], [1.0, 1.0])
        self.noise = noise

    def simulate(self, theta, *, generator=None):
        return theta + self.noise * torch.randn(theta.shape, generator=generator)


def test_custom_simulator_options_are_part_of_the_store_identity(tmp_path):
    simulate(Noisy(0.1), 400, seed=0, batch_size=100, path=tmp_path)
    with pytest.raises(SimulationError, match=r"another campaign \(config: stored \{.*\"noise\": 0.1\}, requested "
                                              r"\{.*\"noise\": 5.0\}\).*--restart"):
        simulate(Noisy(5.0), 400, seed=0, batch_size=100, path=tmp_path)
    again = simulate(Noisy(5.0), 400, seed=0, batch_size=100, path=tmp_path, restart=True)
    assert torch.equal(again.x, simulate(Noisy(5.0), 400, seed=0, batch_size=100).x)


@pytest.mark.parametrize("change, named", [({"lr": 1e-2}, "lr: 0.001 -> 0.01"), ({"seed": 1}, "seed: 0 -> 1"),
                                           ({"batch_size": 32}, "batch_size: 256 -> 32"),
                                           ({"clip_norm": 1.0}, "clip_norm: 5.0 -> 1.0")])
def test_a_changed_training_setting_is_refused_naming_it(tmp_path, change, named):
    data = regression_data()
    fit(Regressor(), data, max_epochs=2, progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(TrainingError, match=f"other settings \\({named}\\).*--restart"):
        fit(Regressor(), data, max_epochs=2, progress=False, checkpoint_dir=tmp_path, resume=True, **change)
    torch.manual_seed(0)
    m1 = Regressor()
    torch.manual_seed(0)
    m2 = Regressor()
    fit(m1, data, max_epochs=2, progress=False, checkpoint_dir=tmp_path, resume=True, restart=True, **change)
    fit(m2, data, max_epochs=2, progress=False, **change)
    assert torch.equal(m1.lin.weight, m2.lin.weight)  # restart = a fresh run with the new settings


def test_changed_data_is_refused(tmp_path):
    x, y = regression_data()
    fit(Regressor(), (x, y), max_epochs=2, progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(TrainingError, match="other settings \\(data: "):
        fit(Regressor(), (x, y + 1), max_epochs=2, progress=False, checkpoint_dir=tmp_path, resume=True)


def test_cli_train_refuses_a_changed_lr_and_restarts_on_request(tmp_path, capsys):
    cfg = config(tmp_path)
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    cfg = config(tmp_path, lr=0.01)
    capsys.readouterr()
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lr: 0.001 -> 0.01" in err[0] and "--restart" in err[0]
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "run"), "--quiet", "--restart"]) == 0
    cfg = config(tmp_path, lr=0.01, n=800)  # another campaign in the store: refused naming n, then replaced
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 1
    assert "n_requested: stored 600, requested 800" in capsys.readouterr().err
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "run"), "--quiet", "--restart"]) == 0


# --------------------------------------------------------------------------------------- value domains
@pytest.mark.parametrize("section, key, value", [
    ("train", "clip_norm", "-1"), ("train", "batch_size", "-1"), ("train", "max_epochs", "-3"),
    ("train", "lr", "-0.1"), ("train", "lr", "nan"), ("train", "ema", "1.5"), ("train", "validation_fraction", "0"),
    ("train", "validation_fraction", "1.0"), ("train", "patience", "-1"), ("train", "weight_decay", "-1e-3"),
    ("train", "max_time", "-5"), ("train", "seed", "-1"), ("simulation", "n", "0"), ("simulation", "batch_size", "0"),
    ("sample", "n", "-5"), ("train", "schedule", '"linear"'),
])
def test_a_value_outside_its_domain_names_the_key(tmp_path, section, key, value):
    cfg = config(tmp_path)
    cfg.write_text(_dedupe(cfg.read_text().replace(f"[{section}]\n", f"[{section}]\n{key} = {value}\n", 1)))
    with pytest.raises(ConfigError, match=rf"cfg.toml: \[{section}\] {key} = .*(must be|allowed|finite)"):
        load_config(cfg, "train")


def _dedupe(text: str) -> str:
    """The first value of each key in each table (a test config with a key set twice is invalid TOML)."""
    out, seen, table = [], set(), ""
    for line in text.splitlines():
        if line.startswith("["):
            table = line
        key = line.split("=")[0].strip() if "=" in line and not line.startswith("[") else None
        if key is not None and (table, key) in seen:
            continue
        if key is not None:
            seen.add((table, key))
        out.append(line)
    return "\n".join(out) + "\n"


def test_a_bad_value_stops_the_cli_before_any_simulation(tmp_path, capsys):
    cfg = config(tmp_path)
    cfg.write_text(cfg.read_text().replace("patience = 1000", "patience = 1000\nclip_norm = -1"))
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("physgen: config error:") and "[train] clip_norm = -1.0" in err[0]
    assert not (tmp_path / "run" / "simulations").exists()


@pytest.mark.parametrize("name, value", [
    ("batch_size", -1), ("batch_size", 0), ("lr", -1.0), ("lr", math.nan), ("max_epochs", -3), ("patience", 0),
    ("clip_norm", -1.0), ("clip_norm", 0.0), ("validation_fraction", 1.0), ("ema", 1.0), ("weight_decay", -0.1),
    ("min_delta", -1.0), ("max_time", 0.0), ("seed", -1), ("warm_start_rows", 0),
])
def test_fit_checks_the_same_domains_naming_the_argument(name, value):
    assert name in FIT_DOMAINS
    with pytest.raises(ValueError, match=rf"^{name} must be .*; got"):
        fit(Regressor(), regression_data(), progress=False, **{name: value})


def test_an_empty_config_is_an_error_showing_a_minimal_one(tmp_path, capsys):
    empty = tmp_path / "empty.toml"
    empty.write_text("# nothing yet\n")
    for command in ("simulate", "train", "run"):
        with pytest.raises(ConfigError, match=r"empty\.toml: the file is empty.*minimal config: \[simulator\] name"):
            load_config(empty, command)
    assert main(["simulate", str(empty), "--run-dir", str(tmp_path / "run")]) == 2
    assert "minimal config" in capsys.readouterr().err
    assert not (tmp_path / "run" / "simulations").exists()


# ------------------------------------------------------------------------------ inputs of sample and log_prob
@pytest.fixture(scope="module")
def posteriors():
    sims = simulate(Toy(), 400, seed=0)
    out = {}
    for model, options in [("nsf", {"transforms": 1}), ("maf", {}), ("flow_matching", {}), ("diffusion", {})]:
        out[model] = physgen.fit_posterior(sims, model=model, max_epochs=1, model_options=options)
    out["nsf_none"] = physgen.fit_posterior(sims, model="nsf", max_epochs=1, transform="none",
                                            model_options={"transforms": 1})
    return sims, out


def test_n_zero_is_an_empty_tensor_for_every_family(posteriors):
    sims, posts = posteriors
    for name, post in posts.items():
        assert post.sample(0, sims.x[0]).shape == (0, 2), name
        assert post.sample(0, sims.x[:3]).shape == (0, 3, 2), name
    emu = physgen.fit_emulator(sims, model="nsf", max_epochs=1, model_options={"transforms": 1})
    assert emu.sample(0, sims.theta[0]).shape == (0, 3) and emu.sample(0, sims.theta[:4]).shape == (0, 4, 3)


def test_bad_n_and_non_finite_x_are_immediate_errors(posteriors):
    sims, posts = posteriors
    post = posts["nsf_none"]
    for n, err in [(-1, ValueError), (2.0, ValueError), (True, TypeError), ("3", TypeError)]:
        with pytest.raises(err, match="n must be an int >= 0"):
            post.sample(n, sims.x[0])
    for bad in (math.nan, math.inf, -math.inf):
        x = sims.x[0].clone()
        x[1] = bad
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match=r"x holds NaN or inf at 1 \(of shape \(3,\)\)"):
            post.sample(10, x)
        with pytest.raises(ValueError, match="x holds NaN or inf"):
            post.log_prob(sims.theta[:1], x)
        assert time.perf_counter() - t0 < 1
    with pytest.raises(ValueError, match="theta holds NaN or inf"):
        post.log_prob(torch.tensor([math.nan, 0.0]), sims.x[0])


def test_a_huge_request_is_refused_with_its_size(posteriors, monkeypatch):
    sims, posts = posteriors
    with pytest.raises(ValueError, match=r"n=10000000000 .* 74.5 GiB .* budget"):
        posts["nsf"].sample(10**10, sims.x[0])
    monkeypatch.setattr(C, "MAX_SAMPLE_BYTES", 1000)
    with pytest.raises(ValueError, match="budget"):
        posts["nsf"].sample(200, sims.x[:2])


def test_an_x_far_outside_the_training_data_warns_and_never_spins(posteriors):
    sims, posts = posteriors
    for name in ("nsf", "nsf_none"):
        t0 = time.perf_counter()
        with pytest.warns(UserWarning, match="far outside the training data"):
            try:
                posts[name].sample(5, sims.x[0] * 1e6)
            except SamplingError as err:  # rejection sampling gives up, saying why
                assert "standard deviations from the training mean" in str(err)
        assert time.perf_counter() - t0 < 20


def test_nan_weights_raise_at_once_and_log_prob_never_returns_nan(posteriors):
    sims, posts = posteriors
    import copy

    for name in ("nsf", "nsf_none"):
        post = copy.deepcopy(posts[name])
        with torch.no_grad():
            next(post.model.parameters()).fill_(math.nan)
        t0 = time.perf_counter()
        with pytest.raises(SamplingError, match="weights or standardisation hold NaN/inf"):
            post.sample(10, sims.x[0])
        with pytest.raises(SamplingError, match="log_prob is NaN"):
            post.log_prob(sims.theta[:4], sims.x[:4])
        assert time.perf_counter() - t0 < 5


def test_nan_training_data_is_an_error_naming_the_rows():
    sims = simulate(Toy(), 200, seed=0)
    x = sims.x.clone()
    x[7, 1] = math.nan
    x[42, 0] = math.inf
    bad = SimulationSet(sims.theta, x, dict(sims.meta))
    with pytest.raises(ValueError, match=r"NaN or inf in rows 7, 42 of"):
        physgen.fit_posterior(bad, model="nsf", max_epochs=1)


# ------------------------------------------------------------------------------------------------- CLI
def test_cli_errors_are_one_line_with_their_exit_status(tmp_path, capsys, monkeypatch):
    cfg = config(tmp_path)
    assert main(["sample", str(cfg), "--run-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train first" in err[0]
    with pytest.raises(SystemExit) as usage:
        main(["sample", str(cfg), "--run-dir", str(tmp_path / "none"), "-n", "0"])
    assert usage.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "argument -n: invalid positive_int value: '0'" in err[0]
    bad = tmp_path / "bad.toml"
    bad.write_text("[simulator\n")
    assert main(["simulate", str(bad), "--run-dir", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    import physgen.cli.sbi as sbi

    def boom(args):
        raise KeyError("an internal bug")

    monkeypatch.setattr(sbi, "cmd_simulate", boom)
    assert main(["simulate", str(cfg), "--run-dir", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error: KeyError" in err[0] and "--debug" in err[0]
    with pytest.raises(KeyError):
        main(["simulate", str(cfg), "--run-dir", str(tmp_path / "r"), "--debug"])


def test_a_full_disk_and_a_read_only_folder(tmp_path, monkeypatch, capsys):
    import physgen.store as S

    real, calls = S.atomic_write, []

    def full_disk(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(S, "atomic_write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        simulate(Toy(), 1000, seed=3, batch_size=100, path=tmp_path / "s")
    monkeypatch.setattr(S, "atomic_write", real)  # space freed: the same call resumes exactly
    resumed = simulate(Toy(), 1000, seed=3, batch_size=100, path=tmp_path / "s")
    assert torch.equal(resumed.x, simulate(Toy(), 1000, seed=3, batch_size=100).x)

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(args[0]))

    monkeypatch.setattr(S, "atomic_write", read_only)
    cfg = config(tmp_path)
    assert main(["simulate", str(cfg), "--run-dir", str(tmp_path / "ro")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Permission denied" in err[0]


def test_ctrl_c_prints_one_line_and_the_run_resumes(tmp_path):
    (tmp_path / "slowsim.py").write_text(SLOWSIM)
    cfg = config(tmp_path, name="slowsim:Slow", options="{ delay = 0.3 }", n=900, batch=100)
    proc = subprocess.Popen([sys.executable, "-m", "physgen.cli", "simulate", str(cfg), "--run-dir", "run",
                             "--quiet"], cwd=tmp_path, env=ENV, stderr=subprocess.PIPE, text=True)
    prog = tmp_path / "run" / "simulations" / "progress.json"
    deadline = time.time() + 60
    while not (prog.exists() and json.loads(prog.read_text())["rows"] > 0) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["physgen: interrupted; what was committed is kept: run the same command "
                                        "again to resume"]
    done = cli(["simulate", str(cfg), "--run-dir", "run", "--quiet"], tmp_path)
    assert done.returncode == 0, done.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        from slowsim import Slow

        fresh = simulate(Slow(delay=0.0), 900, seed=0, batch_size=100)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("slowsim", None)
    assert torch.equal(load_simulations(tmp_path / "run" / "simulations").x, fresh.x)


def test_repr_of_public_objects(tmp_path, posteriors):
    sims, posts = posteriors
    lazy = simulate(Toy(), 100, seed=0, path=tmp_path, lazy=True)
    objects = [sims, lazy, lazy.x, posts["nsf"], posts["flow_matching"], posts["nsf"].fit_result, FIT_DOMAINS["lr"],
               physgen.fit_emulator(sims, model="nsf", max_epochs=1, model_options={"transforms": 1}),
               load_config(config(tmp_path), "train"), ConfigError("x", "f.toml"), Toy().prior]
    for obj in objects:
        text = repr(obj)
        assert text and len(text) < 20_000, type(obj)
    assert repr(sims).startswith("SimulationSet(n=400, theta=(400, 2), x=(400, 3)")
    assert "theta_dim=2, x_shape=(3,)" in repr(posts["nsf"])


def test_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        simulate(Toy(), 200, seed=0, path=tmp_path / "s")
        fit(Regressor(), regression_data(), max_epochs=1, progress=False, checkpoint_dir=tmp_path / "c")
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 5
    for p in files:
        assert p.stat().st_mode & 0o027 == 0, (p, oct(p.stat().st_mode))


# ------------------------------------------------------------------------- SIGKILL at random points (slow)
def _kill_at_random(args, cwd, seconds: float):
    proc = subprocess.Popen([sys.executable, "-m", "physgen.cli", *args], cwd=cwd, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(seconds)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_sigkill_at_random_points_of_simulate_then_an_exact_resume(tmp_path, seed):
    (tmp_path / "slowsim.py").write_text(SLOWSIM)
    cfg = config(tmp_path, name="slowsim:Slow", options="{ delay = 0.05 }", n=3000, batch=100)
    rng = random.Random(seed)
    for _ in range(3):
        _kill_at_random(["simulate", str(cfg), "--run-dir", "run", "--quiet"], tmp_path, rng.uniform(1.5, 4.0))
    done = cli(["simulate", str(cfg), "--run-dir", "run", "--quiet"], tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        from slowsim import Slow

        fresh = simulate(Slow(delay=0.0), 3000, seed=0, batch_size=100)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("slowsim", None)
    assert torch.equal(load_simulations(tmp_path / "run" / "simulations").x, fresh.x)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("command", ["train", "run"])
def test_sigkill_at_random_points_of_train_and_run_then_an_exact_resume(tmp_path, seed, command):
    extra = '\n[validate]\nnum_test = 50\nnum_posterior_samples = 50\nreference = "none"\n' if command == "run" else ""
    cfg = config(tmp_path, n=2000, epochs=15, extra=extra)
    rng = random.Random(seed)
    for _ in range(2):
        _kill_at_random([command, str(cfg), "--run-dir", "killed", "--quiet"], tmp_path, rng.uniform(3.0, 12.0))
    for run_dir in ("killed", "clean"):
        done = cli([command, str(cfg), "--run-dir", run_dir, "--quiet"], tmp_path, timeout=600)
        assert done.returncode == 0, done.stderr
    killed, _ = load_file(tmp_path / "killed" / "posterior.safetensors")
    clean, _ = load_file(tmp_path / "clean" / "posterior.safetensors")
    assert killed.keys() == clean.keys() and all(torch.equal(killed[k], clean[k]) for k in clean)
