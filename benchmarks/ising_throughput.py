"""Ising checkerboard Metropolis throughput: physgen vs a plain numpy checkerboard, one core.

Both sides update the same batch of M periodic L×L lattices (one β per lattice) with
checkerboard Metropolis sweeps and report spin updates per second (M L² sweeps / time).

* numpy reference: int8 spins, neighbour sums with ``np.roll`` on the whole lattice, the
  Metropolis test ``rng.random() < exp(-β ΔE)`` with float64 random numbers, flips masked to
  the active colour. This is the textbook vectorised implementation, batched over lattices.
* physgen: ``Ising(L, sweeps=S).simulate(theta)`` (public API, includes initialisation and
  layout conversion): colour-compressed int8 spin bits, in-place slice-add neighbour sums,
  per-lattice int32 threshold tables indexed by (σ, #up neighbours), two uniform int32 per
  64-bit random draw, no exp.

Both run single-threaded (``torch.set_num_threads(1)``; numpy's elementwise ops are single
threaded). Timings are medians over repeats; the equilibrium energy of both is printed as a
sanity check (same β, same sweeps: they must agree within noise).

Usage: ``python benchmarks/ising_throughput.py [--quick] [--L 64] [--lattices 16] [--sweeps 50]``
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

from simulators.ising import Ising  # noqa: E402


def numpy_checkerboard(spins: np.ndarray, beta: np.ndarray, n_sweeps: int, rng: np.random.Generator, J: float = 1.0) -> np.ndarray:
    """Plain numpy checkerboard Metropolis on ``spins: (M, L, L)`` int8, ``beta: (M,)``."""
    L = spins.shape[-1]
    i, j = np.indices((L, L))
    colours = [(i + j) % 2 == 0, (i + j) % 2 == 1]
    b = beta.reshape(-1, 1, 1)
    for _ in range(n_sweeps):
        for mask in colours:
            nb = np.roll(spins, 1, -1) + np.roll(spins, -1, -1) + np.roll(spins, 1, -2) + np.roll(spins, -1, -2)
            dE = 2.0 * J * spins * nb
            accept = (rng.random(spins.shape) < np.exp(-b * dE)) & mask
            spins[accept] *= -1
    return spins


def energy_per_spin(s: np.ndarray) -> float:
    s = s.astype(np.float64)
    return float(-(s * (np.roll(s, 1, -1) + np.roll(s, 1, -2))).sum((-2, -1)).mean() / s[0].size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--L", type=int, default=64)
    ap.add_argument("--lattices", type=int, default=16)
    ap.add_argument("--sweeps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--beta", type=float, default=0.44)
    args = ap.parse_args()
    if args.quick:
        args.L, args.lattices, args.sweeps, args.repeats = 32, 8, 10, 3
    torch.set_num_threads(1)
    M, L, S = args.lattices, args.L, args.sweeps
    updates = M * L * L * S

    sim = Ising(L, sweeps=S, init="random")
    theta = torch.full((M, 1), args.beta)
    beta_np = np.full(M, args.beta)
    rng = np.random.default_rng(0)
    g = torch.Generator().manual_seed(0)

    # warm-up
    numpy_checkerboard(rng.choice(np.array([-1, 1], dtype=np.int8), size=(M, L, L)), beta_np, 2, rng)
    Ising(L, sweeps=2).simulate(theta, generator=g)

    t_np, t_pg, e_np, e_pg = [], [], [], []
    for _ in range(args.repeats):
        s0 = rng.choice(np.array([-1, 1], dtype=np.int8), size=(M, L, L))
        t = time.perf_counter()
        s = numpy_checkerboard(s0, beta_np, S, rng)
        t_np.append(time.perf_counter() - t)
        e_np.append(energy_per_spin(s))
        t = time.perf_counter()
        x = sim.simulate(theta, generator=g)
        t_pg.append(time.perf_counter() - t)
        e_pg.append(energy_per_spin(x.numpy()))

    r_np, r_pg = updates / statistics.median(t_np), updates / statistics.median(t_pg)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, cpu_count={os.cpu_count()}, "
          f"torch threads={torch.get_num_threads()}, torch {torch.__version__}, numpy {np.__version__}, {date}")
    print(f"lattices M={M}, L={L}, beta={args.beta}, sweeps={S}, repeats={args.repeats} (medians)")
    print(f"numpy checkerboard : {r_np / 1e6:8.2f} M spin updates/s   (E/N after {S} sweeps: {statistics.mean(e_np):.4f})")
    print(f"physgen Ising      : {r_pg / 1e6:8.2f} M spin updates/s   (E/N after {S} sweeps: {statistics.mean(e_pg):.4f})")
    print(f"ratio physgen/numpy: {r_pg / r_np:.2f}x")
    result = {
        "benchmark": "ising_throughput", "L": L, "lattices": M, "sweeps": S, "beta": args.beta, "repeats": args.repeats,
        "numpy_updates_per_s": r_np, "physgen_updates_per_s": r_pg, "ratio": r_pg / r_np,
        "numpy_energy_per_spin": statistics.mean(e_np), "physgen_energy_per_spin": statistics.mean(e_pg),
        "torch_threads": torch.get_num_threads(), "platform": platform.platform(), "date": date,
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
