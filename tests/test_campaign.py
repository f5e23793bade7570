"""Simulation campaigns on dask.distributed: the same store whatever the workers, a killed worker loses nothing,
failed batches are retried, an unreachable scheduler is a clear error (the command line: test_campaign_cli.py)."""

import json
import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from physgen.data import SimulationError, simulate
from physgen.distributed import ClusterError, connect
from physgen.distributed.campaign import batch_sizes

distributed = pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[1]
# a simulator whose batches take a random time (so they finish out of order) and that logs each batch it runs
SLOWSIM = textwrap.dedent("""
    import time
    import torch
    from physgen.priors import BoxUniform


    class SlowToy:
        name = "slow_toy"
        x_shape = (3,)

        def __init__(self, delay=0.05, log=""):
            self.prior = BoxUniform([0.0, 0.0], [1.0, 1.0])
            self.config = {}  # the delay and the log change no number: the same campaign
            self.delay, self.log = delay, log

        def simulate(self, theta, *, generator=None):
            time.sleep(self.delay * (0.2 + 2.0 * float(theta[0, 0])))
            if self.log:
                with open(self.log, "a") as f:
                    f.write(f"{float(theta[0, 0]):.9g}\\n")
            noise = 0.1 * torch.randn((*theta.shape[:-1], 3), generator=generator)
            return torch.cat([theta, theta.sum(-1, keepdim=True)], -1) + noise
""")


@pytest.fixture(scope="module")
def simdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("campaign_sim")
    (path / "campaign_sim.py").write_text(SLOWSIM)
    sys.path.insert(0, str(path))
    yield path
    sys.path.remove(str(path))
    sys.modules.pop("campaign_sim", None)


@pytest.fixture(scope="module")
def client(simdir):
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(simdir), *([old] if old else [])]
    )  # the workers import campaign_sim
    try:
        with connect("local:2") as c:
            yield c
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def _files(store: Path) -> dict[str, bytes]:
    """Every file of a store folder but its lock (whose content is the writer's PID)."""
    return {
        str(p.relative_to(store)): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file() and p.name != ".physgen.lock"
    }


def _batches(store: Path) -> np.ndarray:
    import zarr

    return zarr.open_group(str(store / "simulations.zarr"), mode="r")["batch"][:]


def test_two_workers_store_bit_identical_to_one(client, tmp_path):
    from campaign_sim import SlowToy

    sim = SlowToy(delay=0.05)
    simulate(SlowToy(delay=0.0), 1500, seed=4, batch_size=100, path=tmp_path / "serial")
    two = simulate(sim, 1500, seed=4, batch_size=100, path=tmp_path / "two", executor=client)
    one_worker = next(iter(client.nthreads()))
    with client.get_executor(workers=[one_worker], pure=False) as pool:
        simulate(sim, 1500, seed=4, batch_size=100, path=tmp_path / "one", executor=pool)
    serial = _files(tmp_path / "serial")
    assert any(k.startswith("simulations.zarr/x/") for k in serial) and "progress.json" in serial
    assert _files(tmp_path / "two") == serial and _files(tmp_path / "one") == serial  # byte for byte
    assert not (tmp_path / "two" / "pending").exists()
    assert len(two) == 1500 and two.meta["n_dropped"] == 0


def test_killed_worker_every_batch_exactly_once(client, tmp_path):
    from campaign_sim import SlowToy

    sim = SlowToy(delay=0.25)
    store = tmp_path / "store"
    pids = client.run(os.getpid)
    killed = []

    def kill_one_worker_mid_campaign():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                done = len(json.loads((store / "progress.json").read_text())["batches"])
            except (OSError, ValueError, KeyError):
                done = 0
            if done >= 3:
                pid = next(iter(pids.values()))
                os.kill(pid, signal.SIGKILL)
                killed.append((pid, done))
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_worker_mid_campaign)
    killer.start()
    data = simulate(sim, 1600, seed=5, batch_size=100, path=store, executor=client)
    killer.join()
    assert killed and killed[0][1] < 16, "the worker was not killed mid-campaign"
    sizes = batch_sizes(1600, 100)
    ks, counts = np.unique(_batches(store), return_counts=True)
    assert ks.tolist() == list(range(16)) and counts.tolist() == sizes  # every batch, exactly once
    assert torch.equal(data.x, simulate(SlowToy(delay=0.0), 1600, seed=5, batch_size=100).x)
    assert _files(store) == _files(simulate_serial(tmp_path / "serial", SlowToy(delay=0.0), 1600, 5))


def simulate_serial(path: Path, sim, n: int, seed: int) -> Path:
    simulate(sim, n, seed=seed, batch_size=100, path=path)
    return path


def test_unreachable_scheduler_clear_error_within_timeout():
    t0 = time.monotonic()
    with (
        pytest.raises(ClusterError, match=r"cannot reach the dask scheduler at tcp://127.0.0.1:9 within 1 s"),
        connect("tcp://127.0.0.1:9", timeout=1),
    ):
        pass
    assert time.monotonic() - t0 < 15


def test_failed_batch_retried_then_named(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    class Flaky:
        """Fails the first ``fails`` calls of each batch (its first θ names it)."""

        name, x_shape = "flaky", (2,)

        def __init__(self, fails):
            from physgen.priors import BoxUniform

            self.prior, self.config, self.fails, self.calls = BoxUniform([0.0, 0.0], [1.0, 1.0]), {}, fails, {}
            self.lock = threading.Lock()

        def simulate(self, theta, *, generator=None):
            with self.lock:
                key = float(theta[0, 0])
                self.calls[key] = self.calls.get(key, 0) + 1
                if self.calls[key] <= self.fails:
                    raise RuntimeError("transient failure")
            return theta + 0.0 * torch.randn(theta.shape, generator=generator)

    with ThreadPoolExecutor(2) as pool:
        data = simulate(Flaky(2), 400, seed=0, batch_size=50, path=tmp_path / "a", executor=pool, retries=2)
        assert len(data) == 400
        with pytest.raises(SimulationError, match=r"batch \d+ failed 2 times; last error: RuntimeError: transient"):
            simulate(Flaky(2), 400, seed=0, batch_size=50, path=tmp_path / "b", executor=pool, retries=1)
