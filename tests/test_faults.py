"""Fault injection, part 1: concurrent writers, kills, damaged stores and files, changed settings, Ctrl-C.

Each fault expects a clear one-line error naming the fix, or an exact resume (bit-identical to an uninterrupted
run). SIGKILL at random points of simulate, train and run over several seeds is marked slow
(``pytest -m slow tests/test_faults.py``). Part 2 (tests/test_faults_inputs.py): bad values and inputs, the
CLI's errors, a full disk and a read-only folder, repr, the umask.
"""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import physgen
import physgen.pipeline
import physgen.data as D
from physgen.cli import main
from physgen.data import SimulationError, load_simulations, simulate
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
    with pytest.raises(SimulationError, match=r"progress record progress.json is unreadable.*--restart"):
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


# ------------------------------------------------------------------------------------ disk and signals
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
