"""``physgen simulate --scheduler``: a killed client resumes with the same command, losing no finished batch; a
second campaign on the store is refused naming the difference; an unreachable scheduler is one line, nothing
written."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from physgen.cli import main
from physgen.data import SimulationError, simulate
from physgen.lock import FolderLockedError
from test_campaign import ROOT, _batches, _files, client, simdir  # noqa: F401 - the module's fixtures

pytest.importorskip("distributed")


def _config(path: Path, log: Path, timeout: int = 20) -> Path:
    path.write_text(
        textwrap.dedent(f'''
        [simulator]
        name = "campaign_sim:SlowToy"
        options = {{ delay = 0.3, log = "{log}" }}

        [simulation]
        n = 2400
        seed = 0
        batch_size = 100

        [cluster]
        timeout = {timeout}
    ''')
    )
    return path


def test_killed_client_resumes_losing_nothing_finished(client, simdir, tmp_path):  # noqa: F811
    """Killed mid-campaign, the same command finishes it; no batch committed or finished (pending) before the kill
    runs again; the store is the serial one. Another campaign on the store is refused naming the difference, while
    the first runs and after."""
    from campaign_sim import SlowToy

    log = tmp_path / "batches.log"
    cfg = _config(tmp_path / "cfg.toml", log)
    argv = [
        "simulate",
        str(cfg),
        "--run-dir",
        str(tmp_path / "run"),
        "--quiet",
        "--scheduler",
        client.scheduler.address,
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(simdir), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    store = tmp_path / "run" / "simulations"
    proc = subprocess.Popen(
        [sys.executable, "-m", "physgen.cli", *argv],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline, done = time.monotonic() + 90, []
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            done = json.loads((store / "progress.json").read_text())["batches"]
        except (OSError, ValueError, KeyError):
            done = []
        if len(done) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the campaign ended before it could be killed: {proc.communicate()}"
    other = SlowToy(delay=0.3, log=str(log))
    with pytest.raises(FolderLockedError, match=r"in use by process .*another campaign: seed: stored 0, requested 1"):
        simulate(other, 2400, seed=1, batch_size=100, path=store)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {int(k) for k in json.loads((store / "progress.json").read_text())["batches"]}
    finished |= {int(p.stem.split("_")[1]) for p in (store / "pending").glob("batch_*.npz")}
    assert 3 <= len(finished) < 24
    runs_before = len(log.read_text().split())
    assert main(argv) == 0  # the same command, in this process
    serial = simulate(SlowToy(delay=0.0), 2400, seed=0, batch_size=100)
    first_theta = {f"{float(serial.theta[100 * k, 0]):.9g}": k for k in range(24)}
    rerun = [first_theta[v] for v in log.read_text().split()[runs_before:]]
    assert not set(rerun) & finished, "a batch finished before the kill was simulated again"
    ks, counts = np.unique(_batches(store), return_counts=True)
    assert ks.tolist() == list(range(24)) and counts.tolist() == [100] * 24
    simulate(SlowToy(delay=0.0), 2400, seed=0, batch_size=100, path=tmp_path / "serial")
    assert _files(store) == _files(tmp_path / "serial")
    with pytest.raises(SimulationError, match=r"holds another campaign \(seed: stored 0, requested 1\)"):
        simulate(other, 2400, seed=1, batch_size=100, path=store)


def test_unreachable_scheduler_one_line_nothing_written(tmp_path, simdir):  # noqa: F811
    cfg = _config(tmp_path / "cfg.toml", tmp_path / "log", timeout=2)
    t0 = time.monotonic()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "physgen.cli",
            "simulate",
            str(cfg),
            "--run-dir",
            str(tmp_path / "run"),
            "--scheduler",
            "tcp://127.0.0.1:9",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": f"{simdir}{os.pathsep}{ROOT}"},
    )
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the dask scheduler at tcp://127.0.0.1:9 within 2 s" in lines[0]
    assert "nothing was written" in lines[0] and not (tmp_path / "run").exists()
    assert time.monotonic() - t0 < 60  # the start of Python and physgen, then the 2 s timeout
