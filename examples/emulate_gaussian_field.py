"""Emulate a 16x16 Gaussian cosmology field given (Ω_m, σ8) and compare its power spectrum with the simulator's.

    python examples/emulate_gaussian_field.py            # 4,000 simulations, 150 s of training on one CPU thread
    python examples/emulate_gaussian_field.py --quick    # a smoke run (seconds)

Prints the mean P(k) of emulated and simulated fields at one θ, and their difference in units of the
standard error of the difference of two means.
"""

from __future__ import annotations

import argparse
import time

import torch

import physgen
from simulators.cosmology import GaussianField, power_spectrum


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--simulations", type=int, default=4000)
    ap.add_argument("--max-time", type=float, default=150.0, help="training budget in seconds")
    args = ap.parse_args()
    n_sims, budget, n_draw = (200, 5.0, 50) if args.quick else (args.simulations, args.max_time, 400)
    torch.set_num_threads(1)

    sim = GaussianField(n=16, box_size=100.0, dim=2)
    t0 = time.perf_counter()
    data = physgen.simulate(sim, n_sims, seed=0)
    print(f"simulated {len(data)} fields {tuple(data.x.shape[1:])} in {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    emulator = physgen.fit_emulator(data, model="flow_matching", model_options={"channels": [16, 32], "periodic": True},
                                    max_time=budget, seed=0)
    print(f"trained {emulator.fit_result.epochs} epochs in {time.perf_counter() - t0:.1f} s")

    theta = torch.tensor([0.3, 0.8])
    t0 = time.perf_counter()
    emulated = emulator.sample(n_draw, theta, seed=1)
    print(f"emulated {n_draw} fields in {time.perf_counter() - t0:.2f} s")
    simulated = sim.simulate(theta.expand(n_draw, 2), generator=torch.Generator().manual_seed(5))
    k, p_emu, _ = power_spectrum(emulated.double(), sim.box_size, 6, dim=2)
    _, p_sim, _ = power_spectrum(simulated.double(), sim.box_size, 6, dim=2)
    err = (p_emu.var(0) / n_draw + p_sim.var(0) / n_draw).sqrt()
    print("k [h/Mpc]        ", " ".join(f"{v:7.3f}" for v in k.tolist()))
    print("P(k) emulator    ", " ".join(f"{v:7.2f}" for v in p_emu.mean(0).tolist()))
    print("P(k) simulator   ", " ".join(f"{v:7.2f}" for v in p_sim.mean(0).tolist()))
    print("difference / s.e.", " ".join(f"{v:7.2f}" for v in ((p_emu.mean(0) - p_sim.mean(0)) / err).tolist()))
    path = emulator.save("gaussian_field_emulator.safetensors")
    print(f"saved {path}; physgen.load reads it back")


if __name__ == "__main__":
    main()
