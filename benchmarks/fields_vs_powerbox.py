"""Gaussian field generation + P(k) per field: physgen.GaussianField vs powerbox, one run.

For each case (256^2 and 128^3 by default) it times, per field,
  * physgen: ``GaussianField.simulate`` (amplitude grid cached per θ) + ``power_spectrum``,
    at batch 1 and batched (``--batch``), and the cold first call (amplitude not cached);
  * powerbox: ``PowerBox(...).delta_x()`` + ``powerbox.get_power`` (numpy FFT; pyfftw if installed),
with the same EH98 P(k) (powerbox gets it as a cheap log-log interpolation table) and the same
number of linear k bins. Medians of ``--repeats`` runs; both sides single-threaded by default.

Run: ``python benchmarks/fields_vs_powerbox.py`` (``--quick`` for a smoke run).
The last line is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulators.cosmology.fields import GaussianField
from simulators.cosmology.fourier import power_spectrum


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_case(n: int, dim: int, box: float, batch: int, repeats: int) -> dict:
    import powerbox as pbx

    theta = torch.tensor([0.3111, 0.8102])
    nbins = n // 2
    # physgen, cold (amplitude grid not yet cached)
    sim = GaussianField(n, box, dim)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    x = sim.simulate(theta, generator=gen)
    power_spectrum(x, box, nbins, dim=dim)
    cold = time.perf_counter() - t0

    def physgen_one():
        power_spectrum(sim.simulate(theta, generator=gen), box, nbins, dim=dim)

    def physgen_batch():
        power_spectrum(sim.simulate(theta.expand(batch, 2), generator=gen), box, nbins, dim=dim)

    physgen_one()
    t_one = _median_time(physgen_one, repeats)
    physgen_batch()
    t_batch = _median_time(physgen_batch, repeats) / batch

    # powerbox with the same P(k): log-log interpolation of physgen's table on the grid's |k| range
    kmin, kmax = 2 * np.pi / box * 0.5, np.pi * n / box * np.sqrt(dim) * 1.01
    ktab = np.geomspace(kmin, kmax, 2048)
    from simulators.cosmology.spectrum import linear_power

    ptab = linear_power(torch.tensor(ktab), 0.3111, 0.8102).numpy()
    if dim == 2:
        ptab = ptab / sim.slab_depth
    lk, lp = np.log(ktab), np.log(ptab)

    def pk(k):
        return np.exp(np.interp(np.log(k), lk, lp))

    pb = pbx.PowerBox(N=n, dim=dim, pk=pk, boxlength=box)

    def powerbox_one():
        field = pb.delta_x()
        pbx.get_power(field, box, bins=nbins, bins_upto_boxlen=False)

    powerbox_one()
    t_pb = _median_time(powerbox_one, repeats)
    return {
        "case": f"{n}^{dim}", "physgen_s_per_field": t_one, "physgen_batched_s_per_field": t_batch, "batch": batch,
        "physgen_cold_first_call_s": cold, "powerbox_s_per_field": t_pb,
        "speedup_batch1": t_pb / t_one, "speedup_batched": t_pb / t_batch,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small grids, few repeats (smoke run)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (numpy FFT is single-threaded)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import powerbox as pbx

    cases = [(64, 2, 256.0, 8), (32, 3, 128.0, 4)] if args.quick else [(256, 2, 500.0, 16), (128, 3, 300.0, 8)]
    repeats = 2 if args.quick else args.repeats
    machine = {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "powerbox": getattr(pbx, "__version__", "?"), "numpy": np.__version__,
        "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    print("machine:", json.dumps(machine))
    results = []
    for n, dim, box, batch in cases:
        r = run_case(n, dim, box, batch, repeats)
        results.append(r)
        print(
            f"{r['case']:>6}: physgen {r['physgen_s_per_field'] * 1e3:8.2f} ms/field (batch 1), "
            f"{r['physgen_batched_s_per_field'] * 1e3:8.2f} ms/field (batch {batch}); "
            f"powerbox {r['powerbox_s_per_field'] * 1e3:8.2f} ms/field; "
            f"ratio powerbox/physgen = {r['speedup_batch1']:.2f}x (batch 1), {r['speedup_batched']:.2f}x (batched); "
            f"physgen cold first call {r['physgen_cold_first_call_s'] * 1e3:.1f} ms"
        )
    print("RESULT " + json.dumps({"benchmark": "fields_vs_powerbox", "quick": args.quick, "repeats": repeats,
                                  "machine": machine, "results": results}))


if __name__ == "__main__":
    main()
