"""Cost and nonlinearity of an ``NBody`` setting: ``python nbody_setting.py [--box 128 --steps 5 --z-init 10 ...]``.

The check behind the cheap setting of ``nbody_cnn.toml`` / ``nbody_pk.toml`` (docs/workflow_nbody.md):

* cost: seconds per simulation on one thread (``--num`` θ from the prior in batches of ``--batch``);
* one-point statistics of the projected map δ_2D ``(n, n)``: standard deviation, skewness and excess kurtosis,
  averaged over realisations, at the prior's centre and corners (a Gaussian field has skewness 0);
* nonlinear power: the 3D P(k) of δ at z = 0 over ``--realisations`` noises, divided by the P(k) of the same
  noises evolved by the same code at σ8 = 0.01 and scaled by (σ8 / 0.01)^2. At σ8 = 0.01 the run is linear
  (docs/simulators_nbody.md), and the ratio cancels the CIC windows and the lattice, so ratio > 1 at high k is
  nonlinear growth, not an artefact of the mass assignment.

Prints one line per statistic and a final ``RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from physgen.priors import sample_prior
from simulators.cosmology import NBody, power_spectrum


def moments(x: torch.Tensor) -> tuple[float, float, float]:
    """Mean over maps of (std, skewness, excess kurtosis) of ``x`` ``(B, n, n)``."""
    d = x.double() - x.double().mean((-1, -2), keepdim=True)
    s = d.pow(2).mean((-1, -2)).sqrt()
    skew = d.pow(3).mean((-1, -2)) / s**3
    kurt = d.pow(4).mean((-1, -2)) / s**4 - 3.0
    return s.mean().item(), skew.mean().item(), kurt.mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--particles", type=int, default=32)
    ap.add_argument("--mesh", type=int, default=32)
    ap.add_argument("--box", type=float, default=128.0)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--z-init", type=float, default=10.0)
    ap.add_argument("--num", type=int, default=128, help="simulations timed")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--realisations", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    opts = dict(n_particles=args.particles, n_mesh=args.mesh, box_size=args.box, n_steps=args.steps, z_init=args.z_init)
    sim = NBody(output="projection", **opts)
    g = torch.Generator().manual_seed(0)
    theta = sample_prior(sim.prior, (args.num,), generator=g)
    sim.simulate(theta[:2], generator=g)  # warm-up
    t0 = time.perf_counter()
    maps = torch.cat([sim.simulate(t, generator=g) for t in theta.split(args.batch)])
    cost = (time.perf_counter() - t0) / args.num
    print(f"{opts}: {cost * 1e3:.1f} ms per simulation on one thread ({args.num} in batches of {args.batch})")
    out: dict = {"options": opts, "seconds_per_simulation": cost, "prior_draws": moments(maps)}
    print(f"projection over prior draws: std, skewness, excess kurtosis = {[round(v, 3) for v in out['prior_draws']]}")
    corners = {"centre": (0.3, 0.8), "low": (0.1, 0.6), "high": (0.5, 1.0)}
    noise = sim.white_noise((args.realisations,), generator=torch.Generator().manual_seed(1))
    dens = NBody(output="density", **opts)
    for name, (om, s8) in corners.items():
        th = torch.tensor([[om, s8]]).expand(args.realisations, 2)
        m = moments(sim.simulate(th, noise=noise))
        out[name] = m
        print(f"projection at (Omega_m, sigma8) = ({om}, {s8}): std, skewness, excess kurtosis = {[round(v, 3) for v in m]}")
    th = torch.tensor([[0.3, 0.8]]).expand(args.realisations, 2)
    k, p_nl, _ = power_spectrum(dens.simulate(th, noise=noise).double(), args.box, dim=3)
    lin = torch.tensor([[0.3, 0.01]]).expand(args.realisations, 2)
    _, p_lin, _ = power_spectrum(dens.simulate(lin, noise=noise).double(), args.box, dim=3)
    ratio = p_nl.mean(0) / (p_lin.mean(0) * (0.8 / 0.01) ** 2)
    kn = torch.pi * args.particles / args.box
    picks = [i for i, kk in enumerate(k.tolist()) if kk <= kn][:: max(1, len(k) // 8)]
    print("3D P(k) at (0.3, 0.8) / linear (same noises at sigma8 = 0.01, scaled), k in h/Mpc (k_Nyq = "
          f"{kn:.3f}): " + ", ".join(f"{k[i]:.3f}: {ratio[i]:.2f}" for i in picks))
    out["pk_ratio"] = {"k": k.tolist(), "ratio": ratio.tolist()}
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
