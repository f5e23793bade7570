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


class Slow(Toy):
    """Toy, 0.15 s per batch (the simulator class is part of a store's identity: a resume uses the same one)."""

    def simulate(self, theta, *, generator=None):
        time.sleep(0.15)
        return super().simulate(theta, generator=generator)


SLOW_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_data import Slow
    from physgen.data import simulate

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
        if (prog.exists() and '"rows": 500' in prog.read_text()) or (prog.exists() and len(load_simulations(path)) >= 500):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = load_simulations(path)
    assert 0 < len(partial) < 2000 and not partial.meta["complete"]
    done_before = len(partial)
    resumed = simulate(Slow(), 2000, seed=5, batch_size=100, path=path)
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
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        parallel = simulate(Toy(), 800, seed=7, batch_size=100, executor=client.get_executor())
    assert torch.equal(serial.x, parallel.x) and torch.equal(serial.theta, parallel.theta)


def test_thread_pool_executor():
    from concurrent.futures import ThreadPoolExecutor

    serial = simulate(Toy(), 400, seed=9, batch_size=50)
    with ThreadPoolExecutor(2) as pool:
        parallel = simulate(Toy(), 400, seed=9, batch_size=50, executor=pool)
    assert torch.equal(serial.x, parallel.x)


# ---------------------------------------------------------------- lazy sets


def test_lazy_array_reads_what_is_asked_and_returns_tensors(tmp_path):
    full = simulate(Toy(), 1000, seed=0, batch_size=300, path=tmp_path)
    lazy = load_simulations(tmp_path, lazy=True)
    x = lazy.x
    assert lazy.lazy and not full.lazy and len(x) == 1000 and x.shape == (1000, 3) and x.dtype == torch.float32
    assert torch.equal(lazy.theta, full.theta) and lazy.x_shape == (3,)
    assert torch.equal(x[:], full.x) and torch.equal(x[5], full.x[5]) and torch.equal(x[-1], full.x[-1])
    assert torch.equal(x[10:20], full.x[10:20]) and torch.equal(x[::7], full.x[::7])
    idx = torch.tensor([5, 2, 999, 2, -1])
    assert torch.equal(x[idx], full.x[idx]) and torch.equal(x[idx.numpy()], full.x[idx])
    mask = full.theta[:, 0] > 0
    assert torch.equal(x[mask], full.x[mask])
    assert torch.equal(x[3:9, 1], full.x[3:9, 1]) and torch.equal(x[..., 0], full.x[..., 0])
    first, rest = lazy.split(300)
    assert first.lazy and rest.lazy and torch.equal(rest.x[:], full.x[300:]) and torch.equal(first.x[[0, -1]], full.x[[0, 299]])
    assert rest.to_xarray()["x"].shape == (700, 3)
    with pytest.raises(IndexError, match="out of range"):
        x[1000]
    with pytest.raises(IndexError, match="boolean mask"):
        x[torch.ones(3, dtype=torch.bool)]
    assert torch.equal(simulate(Toy(), 1000, seed=0, batch_size=300, path=tmp_path, lazy=True).x[:], full.x)
    with pytest.raises(ValueError, match="give a path"):
        simulate(Toy(), 10, seed=0, lazy=True)


def test_store_chunks_are_a_few_mib_whatever_the_batch_size(tmp_path):
    import zarr

    import physgen.data as D

    simulate(Toy(), 500, seed=0, batch_size=100, path=tmp_path)
    group = zarr.open_group(str(tmp_path / "simulations.zarr"), mode="r")
    assert group["x"].chunks == (D.CHUNK_BYTES // 12, 3)  # 12 bytes per row (3 float32)


def test_fit_reads_a_lazy_set_chunk_by_chunk(tmp_path, monkeypatch):
    """fit on a lazy SimulationSet reads whole chunks (never the whole array) and trains."""
    from torch import nn

    import physgen.data as D
    import physgen.train.sources as S
    from physgen.train import fit

    monkeypatch.setattr(D, "CHUNK_BYTES", 12 * 64)  # 64 rows per chunk
    monkeypatch.setattr(S, "BUFFER_BYTES", 20 * 64 * 3)  # shuffle 3 chunks at a time (x 12 + θ 8 bytes a row)
    simulate(Toy(), 3000, seed=1, batch_size=500, path=tmp_path)
    data = load_simulations(tmp_path, lazy=True)
    assert data.x.chunk_rows == 64
    reads = []
    getitem = D.LazyArray.__getitem__
    monkeypatch.setattr(D.LazyArray, "__getitem__", lambda self, key: reads.append(key) or getitem(self, key))

    class Linear(nn.Module):  # x ≈ (θ, θ1 + θ2): regress x on θ
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 3)

        def loss(self, theta, x):
            return (self.lin(theta) - x).pow(2).mean()

    m = Linear()
    res = fit(m, data, lr=3e-2, batch_size=50, max_epochs=15, patience=100, progress=False)
    assert reads and all(isinstance(k, slice) and k.stop - k.start <= 64 for k in reads)
    n_chunks = -(-3000 // 64)
    # every chunk once per epoch, for training or for validation (+ at most one read of the first chunk when the
    # source is built: train/sources looks at it to decide whether padded point sets are batched by size)
    assert len(reads) - 15 * n_chunks in (0, 1)
    assert res.best_val_loss < 0.02  # the noise variance is 0.01
    torch.testing.assert_close(m.lin.weight, torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), atol=0.05, rtol=0)
    source = S.make_source(data, validation_fraction=0.1, seed=0, device=torch.device("cpu"), batch_size=50)
    assert isinstance(source, S.ChunkedSource) and len(source.val_chunks) == round(0.1 * n_chunks)
    assert [len(t) for t in source.warm_rows(None)] == [3 * 64, 3 * 64]  # one buffer's worth
    assert [len(t) for t in source.warm_rows(100)] == [100, 100]
