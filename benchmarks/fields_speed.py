"""GaussianField throughput with every θ different, and the exact likelihood's cost per θ, one run.

Targets (issue 14e): 32^2 >= 5,000 fields/s and 256^2 >= 200 fields/s on one core, θ = (Ω_m, σ8)
drawn from the prior for every field; larger batches never slower per θ.

Printed side by side, per grid and batch size:
  * physgen: ``GaussianField.simulate(theta)`` (P from the ln Ω_m table on the grid's distinct |k|);
  * before: the pre-table path, exact EH98 + 16,385-node Simpson σ8 integral per θ evaluated on
    every distinct |m|^2 <= dim (n/2)^2 and gathered (a few θ, to time it);
  * numpy floor: numpy RNG + ``numpy.fft.irfft2`` with a precomputed amplitude grid (what any
    FFT generator pays per field, whatever its P(k));
  * the likelihood ``GaussianField.log_likelihood(theta, x)`` per θ at one observation.

Run: ``python benchmarks/fields_speed.py [--threads 1] [--seconds 2] [--device cpu]``. Last line ``RESULT {json}``.
With ``--device cuda`` the physgen rows (fields and likelihood) run on the GPU, with larger batches; the "before"
and numpy rows stay on the CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, result_line

from simulators.cosmology import GaussianField, linear_power


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _rate(fn, per_call: int, seconds: float) -> float:
    """Items per second of ``fn()`` (each call handles ``per_call`` items), run for ~``seconds``."""
    fn()  # warm-up (tables, FFT plans)
    _sync()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += per_call
    _sync()
    return n / (time.perf_counter() - t0)


def _before(sim: GaussianField, theta: torch.Tensor) -> torch.Tensor:
    """The pre-table amplitude path: exact linear_power on all |m|^2 = 0 .. dim (n/2)^2 per θ, then irfftn."""
    grid = sim.grid()
    m2max = sim.dim * (sim.n // 2) ** 2
    k = grid.k_fundamental * torch.arange(m2max + 1, dtype=torch.float64).sqrt()
    table = linear_power(k, theta[:, 0].double(), theta[:, 1].double())
    table[:, 0] = 0.0
    P = table[:, grid.m2.flatten()].reshape(-1, *grid.rshape) / sim.slab_depth
    amp = (P / grid.volume).sqrt().float()
    z = torch.randn(theta.shape[0], *grid.rshape, dtype=torch.complex64)
    return torch.fft.irfftn(z * amp, s=grid.shape, dim=grid.fft_dims, norm="forward")


def run(seconds: float, device: str = "cpu") -> dict:
    dev = torch.device(device)
    out = {"machine": machine(), "device": device, "cases": []}
    gpu = dev.type != "cpu"
    sizes = [
        (32, 256.0, (1, 5000, 50000) if gpu else (1, 64, 1000, 5000)),
        (256, 500.0, (1, 64, 1024) if gpu else (1, 16, 64)),
    ]
    for n, box, batches in sizes:
        sim = GaussianField(n, box, 2)
        gen = torch.Generator(dev).manual_seed(0)
        case = {"grid": f"{n}^2", "box": box, "physgen_fields_per_s": {}}
        for B in batches:
            case["physgen_fields_per_s"][B] = _rate(
                lambda sim=sim, B=B, gen=gen: sim.simulate(sim.prior.sample((B,)).to(dev), generator=gen), B, seconds
            )
        th = sim.prior.sample((4,))
        case["before_fields_per_s"] = _rate(lambda sim=sim, th=th: _before(sim, th), 4, seconds)
        rng = np.random.default_rng(0)
        amp = sim.amplitude(torch.tensor([0.3, 0.8])).numpy().astype(np.float64)

        def numpy_one(rng=rng, amp=amp, n=n):
            z = rng.standard_normal(amp.shape) + 1j * rng.standard_normal(amp.shape)
            np.fft.irfft2(z * amp, s=(n, n))

        case["numpy_fft_floor_fields_per_s"] = _rate(numpy_one, 1, seconds)
        x = sim.simulate(torch.tensor([0.3, 0.8], device=dev), generator=gen)
        case["loglik_us_per_theta"] = {}
        for B in (1, 64, 1024):
            thb = sim.prior.sample((B,)).to(dev)
            case["loglik_us_per_theta"][B] = 1e6 / _rate(lambda sim=sim, thb=thb, x=x: sim.log_likelihood(thb, x), B, seconds)
        out["cases"].append(case)
        rates = ", ".join(f"batch {B}: {r:,.0f}" for B, r in case["physgen_fields_per_s"].items())
        ll = ", ".join(f"batch {B}: {u:.1f}" for B, u in case["loglik_us_per_theta"].items())
        print(f"{n}^2 fields/s, every θ different | physgen {rates} | before (exact per θ) {case['before_fields_per_s']:,.0f} "
              f"| numpy RNG+irfft2 floor {case['numpy_fft_floor_fields_per_s']:,.0f}")
        print(f"{n}^2 log_likelihood µs per θ | {ll}")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the target is per core)")
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    ap.add_argument("--device", default="cpu", help="where the physgen rows run (cpu, cuda)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    res = run(args.seconds, args.device)
    print(result_line(res))
