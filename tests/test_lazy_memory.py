"""fit reads a zarr SimulationSet chunk by chunk: one epoch on a store of more than 1 GB while the process's
peak resident memory grows by less than a third of the store's size (measured in a fresh process, Linux:
/proc/self/status, VmHWM against VmRSS before fit; the growth includes fit's one-time costs, such as the
modules the first optimiser step imports)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from physgen.data import simulate
from physgen.priors import BoxUniform


class Fields:
    """x: a 1x64x64 float32 field, θ-dependent mean plus white noise (16 KiB per row)."""

    name = "fields"
    x_shape = (1, 64, 64)
    config: dict = {}

    def __init__(self):
        self.prior = BoxUniform([0.0, 0.0], [1.0, 1.0])

    def simulate(self, theta, *, generator=None):
        noise = torch.randn((*theta.shape[:-1], 1, 64, 64), generator=generator)
        return theta[..., :1, None, None] + theta[..., 1:, None, None] * noise


SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import torch
    from torch import nn
    from physgen import load_simulations
    from physgen.train import fit

    def status(key):  # /proc/self/status in bytes; VmHWM is the peak RSS of this process image (ru_maxrss
        with open("/proc/self/status") as f:  # would carry the forking parent's peak across exec)
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

    class Tiny(nn.Module):  # θ from 8x8-pooled fields
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(64, 2)

        def loss(self, theta, x):
            return (self.lin(nn.functional.avg_pool2d(x, 8).flatten(1)) - theta).pow(2).mean()

    data = load_simulations(sys.argv[1], lazy=True)
    model = Tiny()
    before = status("VmRSS")
    try:  # reset the peak to the current RSS (Linux >= 4.0), so that the peak below is fit's
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    t0 = time.perf_counter()
    res = fit(model, data, max_epochs=1, batch_size=256, progress=False)
    peak = status("VmHWM")
    print(json.dumps({"rss_before": before, "peak": peak, "seconds": time.perf_counter() - t0,
                      "rows": len(data), "val_loss": res.history[-1]["val_loss"]}))
    """
)


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/self/status (Linux)")
def test_one_epoch_on_a_1gb_store_grows_memory_by_less_than_a_third_of_it(tmp_path):
    rows = 72_000  # 72,000 fields of 16 KiB: 1.18 GB of x
    simulate(Fields(), rows, seed=0, batch_size=4096, path=tmp_path, lazy=True)
    store = _du(tmp_path / "simulations.zarr")
    logical = rows * (64 * 64 + 2) * 4
    assert store >= 1e9, store
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, env=env,
                         timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    m = json.loads(out.stdout.strip().splitlines()[-1])
    growth = m["peak"] - m["rss_before"]
    print(f"\nstore {store / 1e9:.3f} GB on disk ({logical / 1e9:.3f} GB of values), {m['rows']} rows; "
          f"RSS before fit {m['rss_before'] / 1e6:.0f} MB, peak {m['peak'] / 1e6:.0f} MB, growth "
          f"{growth / 1e6:.0f} MB = {growth / store:.3f} of the store; one epoch {m['seconds']:.1f} s")
    assert m["rows"] == rows and m["val_loss"] < 1.0
    assert growth < store / 3
