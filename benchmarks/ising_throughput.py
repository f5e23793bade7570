"""Ising checkerboard Metropolis throughput: numpy vs physgen's int8 kernel vs its multi-spin kernel, one core.

All three update the same batch of M periodic L×L lattices (one β per lattice) with
checkerboard Metropolis sweeps and report spin updates per second (M L² sweeps / time).

* numpy reference: int8 spins, neighbour sums with ``np.roll`` on the whole lattice, the
  Metropolis test ``rng.random() < exp(-β ΔE)`` with float64 random numbers, flips masked to
  the active colour. This is the textbook vectorised implementation, batched over lattices.
* physgen checkerboard: ``Ising(L, sweeps=S).simulate(theta)`` (public API, includes
  initialisation and layout conversion): colour-compressed int8 spin bits, in-place slice-add
  neighbour sums, per-lattice int32 threshold tables indexed by (σ, #up neighbours), two uniform
  int32 per 64-bit random draw, no exp.
* physgen multispin: ``Ising(L, sweeps=S, algorithm="multispin").simulate(theta)`` (same API, same
  chain): 64 lattices per uint64 word, bitwise neighbour counts, bit-sliced acceptance with
  per-lattice random bits (numba, simulators/ising/multispin.py).

Single-threaded (``torch.set_num_threads(1)``; numpy's elementwise ops and the numba kernel are
single threaded). In each repeat the three run one after the other, in rotating order, so that
load from other processes hits all alike; timings are medians. The energy reached after S sweeps
is printed as a sanity check, and the load average before and after.

Accuracy of the fast kernel (``--measure``): the multispin chain at L = ``--L``, β = ``--beta``
(default β_c), 64 independent lattices, ``--equilibrate`` sweeps, then ``--measure`` measurements one
sweep apart: ⟨E⟩/N and C/N with jackknife errors over the 64 independent chains (no autocorrelation
assumption; τ_int(E) and the τ_int error of ⟨E⟩/N are printed as a cross-check), z against Kaufman's
exact finite-lattice values. Its own throughput (measurements included) is printed too.

Usage: ``python benchmarks/ising_throughput.py [--quick] [--L 64] [--lattices 64] [--sweeps 200]
[--measure 4000]``. The last line is ``RESULT {json}``; ``met`` says whether the multispin kernel
reached 5e8 spin updates/s with |z| < 3 for ⟨E⟩/N and C/N.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulators.ising import BETA_C, Ising
from simulators.ising.exact import kaufman_observables


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


def accuracy(L: int, beta: float, equilibrate: int, n_measure: int, seed: int = 1) -> dict:
    """⟨E⟩/N and C/N of 64 multispin chains against Kaufman (z = (estimate - exact) / error)."""
    sim = Ising(L, algorithm="multispin", sweeps=equilibrate, init="random")
    theta = torch.full((1, 1), beta)
    t = time.perf_counter()
    out = sim.observables(theta, n_measure, n_chains=64, generator=torch.Generator().manual_seed(seed))
    dt = time.perf_counter() - t
    ex = kaufman_observables(L, torch.tensor([beta], dtype=torch.float64))
    tau, c_n = float(out["tau_int_energy"][0]), float(out["specific_heat_per_spin"][0])
    # cross-check: the τ_int error of ⟨E⟩/N, sqrt(2 τ Var(e) / (64 T)) with Var(e) = (C/N) / (β² N)
    tau_err = math.sqrt(2 * tau * c_n / (beta**2 * L * L) / (64 * n_measure))
    res = {"seconds": dt, "updates_per_s": 64 * L * L * (equilibrate + n_measure) / dt, "tau_int_energy": tau,
           "energy_error_from_tau_int": tau_err}
    for key in ("energy_per_spin", "specific_heat_per_spin"):
        est, err, exact = float(out[key][0]), float(out[key + "_err"][0]), float(ex[key][0])
        res[key] = {"estimate": est, "error": err, "exact": exact, "z": (est - exact) / err}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--L", type=int, default=64)
    ap.add_argument("--lattices", type=int, default=64)
    ap.add_argument("--sweeps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--beta", type=float, default=BETA_C)
    ap.add_argument("--equilibrate", type=int, default=3000, help="multispin accuracy run: equilibration sweeps")
    ap.add_argument("--measure", type=int, default=6000, help="multispin accuracy run: measurements (0: skip)")
    args = ap.parse_args()
    if args.quick:
        args.L, args.lattices, args.sweeps, args.repeats, args.equilibrate, args.measure = 32, 64, 10, 3, 500, 500
    torch.set_num_threads(1)
    M, L, S = args.lattices, args.L, args.sweeps
    updates = M * L * L * S
    load_before = os.getloadavg()

    sims = {"physgen checkerboard": Ising(L, sweeps=S, init="random"),
            "physgen multispin": Ising(L, sweeps=S, init="random", algorithm="multispin")}
    theta = torch.full((M, 1), args.beta)
    beta_np = np.full(M, args.beta)
    rng = np.random.default_rng(0)
    g = torch.Generator().manual_seed(0)

    # warm-up (and numba compilation, or loading its cache)
    numpy_checkerboard(rng.choice(np.array([-1, 1], dtype=np.int8), size=(M, L, L)), beta_np, 2, rng)
    for sim in sims.values():
        Ising(L, sweeps=2, algorithm=sim.algorithm).simulate(theta, generator=g)

    def run_numpy() -> np.ndarray:
        return numpy_checkerboard(rng.choice(np.array([-1, 1], dtype=np.int8), size=(M, L, L)), beta_np, S, rng)

    runs = {"numpy checkerboard": run_numpy}
    for name, sim in sims.items():
        runs[name] = lambda sim=sim: sim.simulate(theta, generator=g).numpy()
    names = list(runs)
    times: dict[str, list[float]] = {k: [] for k in names}
    energies: dict[str, list[float]] = {k: [] for k in names}
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            t = time.perf_counter()
            x = runs[name]()
            times[name].append(time.perf_counter() - t)
            energies[name].append(energy_per_spin(x))
    rate = {k: updates / statistics.median(v) for k, v in times.items()}
    load_after = os.getloadavg()

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, cpu_count={os.cpu_count()}, "
          f"torch threads={torch.get_num_threads()}, torch {torch.__version__}, numpy {np.__version__}, {date}")
    print(f"load average (1, 5, 15 min) before {tuple(round(v, 2) for v in load_before)}, after {tuple(round(v, 2) for v in load_after)}")
    print(f"lattices M={M}, L={L}, beta={args.beta:.6f}, sweeps={S}, repeats={args.repeats} (medians, rotating order)")
    for name in names:
        print(f"{name:21s}: {rate[name] / 1e6:8.2f} M spin updates/s   (E/N after {S} sweeps: {statistics.mean(energies[name]):.4f})")
    np_rate, cb_rate, ms_rate = rate["numpy checkerboard"], rate["physgen checkerboard"], rate["physgen multispin"]
    print(f"ratios: checkerboard/numpy {cb_rate / np_rate:.2f}x, multispin/numpy {ms_rate / np_rate:.2f}x, "
          f"multispin/checkerboard {ms_rate / cb_rate:.2f}x")
    result = {
        "benchmark": "ising_throughput", "L": L, "lattices": M, "sweeps": S, "beta": args.beta, "repeats": args.repeats,
        "numpy_updates_per_s": np_rate, "physgen_updates_per_s": cb_rate, "multispin_updates_per_s": ms_rate,
        "ratio": cb_rate / np_rate, "multispin_ratio_numpy": ms_rate / np_rate, "multispin_ratio_checkerboard": ms_rate / cb_rate,
        "numpy_energy_per_spin": statistics.mean(energies["numpy checkerboard"]),
        "physgen_energy_per_spin": statistics.mean(energies["physgen checkerboard"]),
        "multispin_energy_per_spin": statistics.mean(energies["physgen multispin"]),
        "load_average_before": load_before, "load_average_after": load_after,
        "torch_threads": torch.get_num_threads(), "platform": platform.platform(), "date": date,
    }
    if args.measure > 0:
        acc = accuracy(L, args.beta, args.equilibrate, args.measure)
        e, c = acc["energy_per_spin"], acc["specific_heat_per_spin"]
        print(f"multispin accuracy, L={L}, beta={args.beta:.6f}, 64 chains, {args.equilibrate} + {args.measure} sweeps "
              f"({acc['updates_per_s'] / 1e6:.0f} M spin updates/s with measurements every sweep):")
        print(f"  E/N {e['estimate']:.5f} ± {e['error']:.5f} (Kaufman {e['exact']:.5f}, z = {e['z']:+.2f});  "
              f"C/N {c['estimate']:.4f} ± {c['error']:.4f} (Kaufman {c['exact']:.4f}, z = {c['z']:+.2f});  "
              f"tau_int(E) = {acc['tau_int_energy']:.1f} sweeps (error of E/N from tau_int: {acc['energy_error_from_tau_int']:.5f})")
        result["multispin_accuracy"] = acc
        result["met"] = bool(ms_rate >= 5e8 and abs(e["z"]) < 3 and abs(c["z"]) < 3)
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
