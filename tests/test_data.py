import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pytest
import torch

from physgen.data import SimulationError, load_simulations, simulate
from physgen.priors import BoxUniform


class Toy:
    """x = (θ, θ1 + θ2) + noise; NaN when θ1 > nan_above."""

    name = "toy"
    x_shape = (3,)

    def __init__(self, nan_above: float = 2.0):
        self.prior = BoxUniform([-1.0, -1.0], [1.0, 1.0])
        self.nan_above = nan_above
        self.config = {"nan_above": nan_above}

    def simulate(self, theta, *, generator=None):
        noise = 0.1 * torch.randn((*theta.shape[:-1], 3), generator=generator)
        x = torch.cat([theta, theta.sum(-1, keepdim=True)], -1) + noise
        x[theta[..., 0] > self.nan_above] = float("nan")
        x[theta[..., 0] < -2 * self.nan_above] = float("inf")
        return x


def test_same_seed_same_numbers_and_shapes():
    a = simulate(Toy(), 500, seed=1, batch_size=64)
    b = simulate(Toy(), 500, seed=1, batch_size=64)
    c = simulate(Toy(), 500, seed=2, batch_size=64)
    assert a.theta.shape == (500, 2) and a.x.shape == (500, 3)
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    assert a.meta["n_dropped"] == 0 and a.meta["prior"]["type"] == "BoxUniform"


def test_nan_rows_counted_dropped_reported():
    with pytest.warns(UserWarning, match=r"(\d+) of 2000 simulations .* dropped"):
        s = simulate(Toy(nan_above=0.5), 2000, seed=0, batch_size=300)
    expected = int((simulate(Toy(), 2000, seed=0, batch_size=300).theta[:, 0] > 0.5).sum())
    assert s.meta["n_dropped"] == expected > 0
    assert len(s) == 2000 - expected
    assert torch.isfinite(s.x).all()


def test_all_rows_bad_is_an_error():
    with pytest.raises(SimulationError, match="all 100 simulations"):
        simulate(Toy(nan_above=-2.0), 100, seed=0)


def test_store_resume_and_identity(tmp_path):
    path = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = simulate(Toy(nan_above=0.8), 1000, seed=3, batch_size=100, path=path)
        again = simulate(Toy(nan_above=0.8), 1000, seed=3, batch_size=100, path=path)
        loaded = load_simulations(path)
    assert torch.equal(full.x, again.x) and torch.equal(full.x, loaded.x)
    assert loaded.meta["complete"] and loaded.meta["n_dropped"] == full.meta["n_dropped"]
    with pytest.raises(SimulationError, match="another campaign"):
        simulate(Toy(nan_above=0.8), 1000, seed=4, batch_size=100, path=path)


SLOW_SCRIPT = textwrap.dedent(
    """
    import sys, time, torch
    sys.path.insert(0, {tests!r})
    from test_data import Toy
    from physgen.data import simulate

    class Slow(Toy):
        def simulate(self, theta, *, generator=None):
            time.sleep(0.15)
            return super().simulate(theta, generator=generator)

    simulate(Slow(), 2000, seed=5, batch_size=100, path={path!r})
    """
)


def test_killed_run_resumes_without_redoing(tmp_path):
    path = tmp_path / "killed"
    script = SLOW_SCRIPT.format(tests=os.path.dirname(__file__), path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 60
    while time.time() < deadline:
        prog = path / "progress.json"
        if prog.exists() and '"rows": 500' in prog.read_text() or (prog.exists() and len(load_simulations(path)) >= 500):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = load_simulations(path)
    assert 0 < len(partial) < 2000 and not partial.meta["complete"]
    done_before = len(partial)
    resumed = simulate(Toy(), 2000, seed=5, batch_size=100, path=path)
    fresh = simulate(Toy(), 2000, seed=5, batch_size=100)
    assert torch.equal(resumed.x, fresh.x) and torch.equal(resumed.theta, fresh.theta)
    assert torch.equal(resumed.x[:done_before], partial.x)


def test_interrupted_append_is_cut_back(tmp_path):
    import zarr

    path = tmp_path / "cut"
    simulate(Toy(), 300, seed=0, batch_size=100, path=path)
    # simulate a crash after a resize but before the progress file was updated
    group = zarr.open_group(str(path / "simulations.zarr"), mode="r+")
    for name in ("theta", "x", "batch"):
        group[name].resize((350, *group[name].shape[1:]))
    again = simulate(Toy(), 300, seed=0, batch_size=100, path=path)
    assert len(again) == 300 and torch.equal(again.x, simulate(Toy(), 300, seed=0, batch_size=100).x)


def test_executor_dask_local_cluster():
    distributed = pytest.importorskip("distributed")
    serial = simulate(Toy(), 800, seed=7, batch_size=100)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            parallel = simulate(Toy(), 800, seed=7, batch_size=100, executor=client.get_executor())
    assert torch.equal(serial.x, parallel.x) and torch.equal(serial.theta, parallel.theta)


def test_thread_pool_executor():
    from concurrent.futures import ThreadPoolExecutor

    serial = simulate(Toy(), 400, seed=9, batch_size=50)
    with ThreadPoolExecutor(2) as pool:
        parallel = simulate(Toy(), 400, seed=9, batch_size=50, executor=pool)
    assert torch.equal(serial.x, parallel.x)
