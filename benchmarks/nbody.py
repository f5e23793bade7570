"""PM N-body benchmark: physgen's :class:`simulators.cosmology.nbody.NBody` against jaxpm, side by side.

Both codes start from the same particles: physgen's 2LPT positions and momenta at z_init, handed to jaxpm in its
units (mesh cells; jaxpm's velocity a^3 E dx/da is physgen's momentum times n_mesh / L). jaxpm's absolute CIC
painting needs one particle per mesh cell, so the side-by-side configurations have n_mesh = n_particles.

Rows:

* ``force``: one PM force on the initial particles, physgen vs ``jaxpm.pm.pm_forces`` (the same FastPM kernels:
  exact 1/k^2, 4-point FD gradient, CIC paint and read-out): max relative difference (a unit and convention check).
* ``kdk``: the same kick-drift-kick run in both codes: physgen's ``NBody.evolve`` and a jitted ``lax.scan`` over
  jaxpm's ``pm_forces`` with physgen's FastPM factors. Final P(k) ratio (should be 1 to float32 rounding) and
  throughput in particles x steps per second, one thread and all threads (compile time excluded, median of
  ``--repeats``).
* ``--accuracy`` (physgen only, the issue-21 targets): for the same realisations (``--seeds``), the ratio
  P_final / P_initial x D(z_init)^2 in the shells |m|^2 = 1, 2 (k < k_Nyq / 10 at L = 1024 Mpc/h; also at 512 and
  256), 32^3 particles, 64^3 mesh, 10 steps; the same at σ8 = 0.01 (linear: the integrator's own error); and the
  largest |P_10 / P_100 - 1| and |P_20 / P_100 - 1| up to k_Nyq / 4 at L = 256.
* ``lpt``: a linear field band-limited to k < k_Nyq/4 (where jaxpm's finite-difference gradient kernels are within
  ~1% of i k) handed to ``jaxpm.pm.lpt`` (order 1 and 2) and to physgen's 2LPT: least-squares scale and correlation
  of jaxpm's Zel'dovich displacement and of its second-order term against physgen's.
* ``ode``: jaxpm's own integrator (``jax.experimental.ode.odeint`` of ``jaxpm.pm.make_ode_fn``, adaptive
  Dormand-Prince, rtol = atol = 1e-5, the jaxpm README's usage) from the same initial particles, against
  physgen's KDK with ``--steps`` and with 100 steps: P(k) ratio up to k_Nyq/4 (particle Nyquist).

jaxpm runs in a subprocess of this python (threads set by XLA_FLAGS before jax starts); without jaxpm the script
still runs the physgen rows and says why jaxpm was skipped. jax_cosmo 0.1.0 (a jaxpm dependency) imports
``pkg_resources`` only for its version string; setuptools >= 81 has no pkg_resources, so the subprocess puts a stub
module in its place.

Usage:  python benchmarks/nbody.py [--n-particles 32] [--box 256] [--steps 10] [--threads 1,all] [--device cpu]
        [--repeats 3] [--no-ode] [--quick] [--accuracy [--seeds 8]]
The last line printed is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine, result_line
from simulators.cosmology.fourier import fourier_grid, power_spectrum
from simulators.cosmology.nbody import NBody
from simulators.cosmology.nbody_ic import linear_modes, lpt_initial_conditions
from simulators.cosmology.nbody_pm import pm_force

JAX_SCRIPT = r"""
import json, sys, time, types
stub = types.ModuleType("pkg_resources")
class DistributionNotFound(Exception): pass
def get_distribution(name): raise DistributionNotFound(name)
stub.DistributionNotFound, stub.get_distribution = DistributionNotFound, get_distribution
sys.modules.setdefault("pkg_resources", stub)
import numpy as np, jax, jax.numpy as jnp
from jaxpm.pm import pm_forces, make_ode_fn
import jax_cosmo as jc
d = dict(np.load(sys.argv[1])); opts = json.loads(sys.argv[2])
n = int(opts["n_mesh"]); shape = (n, n, n)
pos0 = jnp.asarray(d["pos"].reshape(n, n, n, 3)); vel0 = jnp.asarray(d["vel"].reshape(n, n, n, 3))
out = {}
force = jax.jit(lambda p: pm_forces(p, mesh_shape=shape))
out_arrays = {"force": np.asarray(force(pos0)).reshape(-1, 3)}
kick, drift = jnp.asarray(d["kick"]), jnp.asarray(d["drift"])
@jax.jit
def kdk(pos, vel):
    def step(carry, fac):
        pos, vel, F = carry
        k1, dr, k2 = fac
        vel = vel + F * k1
        pos = jnp.mod(pos + vel * dr, n)
        F = pm_forces(pos, mesh_shape=shape)
        return (pos, vel + F * k2, F), None
    (pos, vel, _), _ = jax.lax.scan(step, (pos, vel, pm_forces(pos, mesh_shape=shape)), (kick[0::2], drift, kick[1::2]))
    return pos
kdk(pos0, vel0).block_until_ready()
times = []
for _ in range(int(opts["repeats"])):
    t0 = time.perf_counter(); res = kdk(pos0, vel0).block_until_ready(); times.append(time.perf_counter() - t0)
out["kdk_s"] = sorted(times)[len(times) // 2]
out_arrays["kdk"] = np.asarray(res).reshape(-1, 3)
cosmo = jc.Cosmology(Omega_c=opts["Omega_m"] - opts["Omega_b"], Omega_b=opts["Omega_b"], h=opts["h"],
                     n_s=opts["n_s"], sigma8=opts["sigma8"], Omega_k=0.0, w0=-1.0, wa=0.0)
if opts["ode"]:
    from jaxpm.pm import lpt
    grid = jnp.stack(jnp.meshgrid(*[jnp.arange(n, dtype=jnp.float32)] * 3, indexing="ij"), -1)
    for order in (1, 2):
        dx, _, _ = lpt(cosmo, jnp.asarray(d["delta0"]), grid, a=opts["a_init"], order=order)
        out_arrays[f"lpt{order}"] = np.asarray(dx).reshape(-1, 3)
    from jax.experimental.ode import odeint
    t0 = time.perf_counter()
    r = odeint(make_ode_fn(shape), [pos0, vel0], jnp.array([opts["a_init"], 1.0]), cosmo, rtol=1e-5, atol=1e-5)
    out_arrays["ode"] = np.asarray(jnp.mod(r[0][-1], n)).reshape(-1, 3)
    out["ode_s"] = time.perf_counter() - t0
np.savez(sys.argv[3], **out_arrays)
print("JSON" + json.dumps(out))
"""


def run_jaxpm(arrays: dict, opts: dict, threads: int | None) -> dict:
    """The jaxpm rows in a subprocess; {"error": ...} when jaxpm is missing or fails."""
    try:
        import importlib.util

        if importlib.util.find_spec("jaxpm") is None:
            raise ImportError("no module named jaxpm")
    except ImportError as err:
        return {"error": f"jaxpm is not installed ({err}); pip install jaxpm (the bench extra) to compare"}
    env = {**os.environ, "JAX_PLATFORMS": "cpu" if opts["device"] == "cpu" else "", "JAX_ENABLE_X64": "0"}
    if threads == 1:
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(src, **arrays)
        try:
            p = subprocess.run(
                [sys.executable, "-c", JAX_SCRIPT, src, json.dumps(opts), dst],
                env=env,
                capture_output=True,
                text=True,
                timeout=1800,
            )
        except subprocess.TimeoutExpired:
            return {"error": "jaxpm run timed out (30 min)"}
        line = [ln for ln in p.stdout.splitlines() if ln.startswith("JSON")]
        if p.returncode != 0 or not line:
            return {"error": f"jaxpm failed (rc {p.returncode}): {p.stderr.strip().splitlines()[-3:]}"}
        res = json.loads(line[-1][4:])
        res["arrays"] = dict(np.load(dst))
    return res


def pk(pos: torch.Tensor, sim: NBody) -> tuple[torch.Tensor, torch.Tensor]:
    k, P, _ = power_spectrum(sim.density(pos.reshape(1, -1, 3).to(sim.dtype)), sim.box_size)
    return k, P[0]


def shells(L: float, m2_max: int) -> torch.Tensor:
    """Bin edges, one bin per |m|^2 = 1 .. m2_max (k in units of k_f = 2π/L)."""
    m2 = torch.arange(1, m2_max + 1, dtype=torch.float64)
    return 2 * math.pi / L * torch.cat([torch.tensor([0.5], dtype=torch.float64), (m2 + 0.5).sqrt()])


def accuracy(seeds: int, device: torch.device) -> dict:
    """The issue-21 accuracy targets of physgen alone (module docstring); prints a table per check."""
    from simulators.cosmology.spectrum import growth_factor

    out: dict = {}
    d2 = float(growth_factor(20.0, 0.3111)) ** 2
    for L, s8 in ((1024.0, 0.8102), (512.0, 0.8102), (256.0, 0.8102), (256.0, 0.01)):
        sim = NBody(32, 64, L, 10, 20.0, output="positions")
        th = torch.tensor([[0.3111, s8]], device=device).expand(seeds, 2)
        noise = sim.white_noise((seeds,), generator=torch.Generator().manual_seed(0)).to(device)
        pos0, mom0 = sim.initial_conditions(th, noise)
        pos1 = sim.evolve(pos0, mom0, th[:, 0].double())
        k, Pi, nm = power_spectrum(sim.density(pos0), L, shells(L, 2))
        _, Pf, _ = power_spectrum(sim.density(pos1), L, shells(L, 2))
        r = Pf / Pi * d2
        key = f"growth_L{int(L)}_s8_{s8}"
        out[key] = {
            "k_over_kNyq10": (k / (math.pi * 32 / L / 10)).tolist(),
            "modes": nm.tolist(),
            "ratio_per_seed": r.tolist(),
            "max_abs_dev": float((r - 1).abs().max()),
        }
        print(
            f"{key}: k/(k_Nyq/10) = {[round(v, 2) for v in out[key]['k_over_kNyq10']]}, modes {nm.tolist()}, "
            f"ratio x D_i^2 per seed: {[[round(v, 4) for v in row] for row in r.tolist()]}, "
            f"max |dev| = {out[key]['max_abs_dev']:.4f}"
        )
    L = 256.0
    th = torch.tensor([[0.3111, 0.8102]], device=device).expand(min(seeds, 4), 2)
    noise = NBody(32, 64, L).white_noise((th.shape[0],), generator=torch.Generator().manual_seed(1)).to(device)
    P = {}
    for steps in (10, 20, 100):
        k, P[steps], _ = power_spectrum(NBody(32, 64, L, steps, 20.0, output="density").simulate(th, noise=noise), L)
    sel = k <= math.pi * 32 / L / 4
    for steps in (10, 20):
        dev = float((P[steps] / P[100] - 1)[:, sel].abs().max())
        out[f"convergence_{steps}_vs_100_to_kNyq4"] = dev
        print(
            f"P(k) of {steps} vs 100 steps, L = 256, k <= k_Nyq/4 ({int(sel.sum())} bins, {th.shape[0]} seeds): "
            f"max |dev| = {dev:.4f}"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-particles", type=int, default=32)
    ap.add_argument("--box", type=float, default=256.0)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--z-init", type=float, default=20.0)
    ap.add_argument("--threads", default="1,all")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-ode", action="store_true", help="skip jaxpm's adaptive odeint reference")
    ap.add_argument("--quick", action="store_true", help="16^3 particles, 1 repeat, no odeint")
    ap.add_argument("--accuracy", action="store_true", help="only the issue-21 accuracy checks of physgen")
    ap.add_argument("--seeds", type=int, default=8, help="realisations of --accuracy")
    args = ap.parse_args()
    if args.accuracy:
        torch.set_num_threads(1)
        figures = accuracy(args.seeds, torch.device(args.device))
        figures["machine"] = machine()
        print(result_line(figures))
        return
    if args.quick:
        args.n_particles, args.repeats, args.no_ode = 16, 1, True
    dev = torch.device(args.device)
    n, L = args.n_particles, args.box
    sim = NBody(n, n, L, args.steps, args.z_init, output="positions")
    theta = torch.tensor([[0.3111, 0.8102]], device=dev)
    noise = sim.white_noise((1,), generator=torch.Generator().manual_seed(0)).to(dev)
    pos0, mom0 = sim.initial_conditions(theta, noise)
    om = sim.cosmo.unpack(theta)["Omega_m"]
    kick, drift = sim._factors(om, dev)
    cells = n / L
    arrays = {
        "pos": (pos0[0] * cells).cpu().numpy().astype(np.float32),
        "vel": (mom0[0] * cells).cpu().numpy().astype(np.float32),
        "kick": kick[0].cpu().numpy().astype(np.float32),
        "drift": drift[0].cpu().numpy().astype(np.float32),
    }
    # LPT check: a linear field band-limited to k < k_Nyq/4 (where jaxpm's finite-difference kernels are exact to
    # ~1%) handed to jaxpm.pm.lpt and to physgen's lpt_initial_conditions, both at a_init
    cfix = sim.check_theta(theta.double().cpu())
    ck = linear_modes(noise.cpu(), cfix["Omega_m"], cfix["sigma8"], L, cfix)
    ck = torch.where(fourier_grid(n, 3, L).kmag < math.pi * n / L / 4, ck, torch.zeros_like(ck))
    arrays["delta0"] = torch.fft.irfftn(ck, s=(n, n, n), norm="forward")[0].numpy().astype(np.float32)
    lpt_ref = [lpt_initial_conditions(ck, cfix["Omega_m"], sim.a_init, L, o)[0][0].numpy() for o in (1, 2)]
    c = sim.cosmo.values
    opts = {
        "n_mesh": n,
        "repeats": args.repeats,
        "ode": False,
        "device": args.device,
        "a_init": sim.a_init,
        "Omega_m": 0.3111,
        "sigma8": 0.8102,
        "Omega_b": c["Omega_b"],
        "h": c["h"],
        "n_s": c["n_s"],
    }
    print(
        f"config: {n}^3 particles, {n}^3 mesh, L = {L} Mpc/h, {args.steps} steps, z_init = {args.z_init}, "
        f"device {args.device}; load: {os.getloadavg()}"
    )
    figures: dict = {"config": {"n_particles": n, "n_mesh": n, "box": L, "steps": args.steps, "z_init": args.z_init}}
    work = n**3 * args.steps
    kny = math.pi * n / L
    for th in args.threads.split(","):
        threads = os.cpu_count() if th == "all" else int(th)
        torch.set_num_threads(threads)
        sim.evolve(pos0, mom0, om)  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            pos = sim.evolve(pos0, mom0, om)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        t_pg = sorted(times)[len(times) // 2]
        row = {"physgen_s": t_pg, "physgen_particle_steps_per_s": work / t_pg}
        opts["ode"] = (not args.no_ode) and th == args.threads.split(",")[0]
        jr = run_jaxpm(arrays, opts, threads)
        if "error" in jr:
            print(f"threads={th}: jaxpm skipped: {jr['error']}")
            row["jaxpm"] = jr["error"]
        else:
            row.update(
                jaxpm_s=jr["kdk_s"], jaxpm_particle_steps_per_s=work / jr["kdk_s"], speed_ratio=jr["kdk_s"] / t_pg
            )
            a = jr["arrays"]
            f_pg = pm_force(pos0, n, L)[0].cpu().numpy() * cells
            figures["force_max_rel_diff"] = float(np.abs(f_pg - a["force"]).max() / np.abs(a["force"]).max())
            k, P_pg = pk(pos, sim)
            _, P_jx = pk(torch.as_tensor(a["kdk"], device=dev) / cells, sim)
            sel = k <= kny / 4
            figures["kdk_pk_ratio_max_dev_to_kNyq4"] = float((P_pg / P_jx - 1)[sel].abs().max())
            figures["kdk_pk_ratio_max_dev_all_k"] = float((P_pg / P_jx - 1).abs().max())
            if "lpt1" in a:
                z1, z2 = (a[f"lpt{o}"] / cells for o in (1, 2))
                for name, ours, theirs in (("za", lpt_ref[0], z1), ("2lpt_term", lpt_ref[1] - lpt_ref[0], z2 - z1)):
                    scale = float((ours * theirs).sum() / (ours * ours).sum())
                    corr = float(np.corrcoef(ours.ravel(), theirs.ravel())[0, 1])
                    figures[f"lpt_{name}_jaxpm_over_physgen"] = {"scale": scale, "corr": corr}
            if "ode" in a:
                _, P_ode = pk(torch.as_tensor(a["ode"], device=dev) / cells, sim)
                sim100 = NBody(n, n, L, 100, args.z_init, output="positions")
                _, P_100 = pk(sim100.evolve(pos0, mom0, om), sim)
                figures["k_to_kNyq4"] = k[sel].tolist()
                figures[f"ode_ratio_physgen{args.steps}_over_jaxpm_ode"] = (P_pg / P_ode)[sel].tolist()
                figures["ode_ratio_physgen100_over_jaxpm_ode"] = (P_100 / P_ode)[sel].tolist()
                figures["jaxpm_ode_s"] = jr["ode_s"]
        figures[f"threads_{th}"] = row
        print(
            f"threads={th}: physgen {t_pg:.3f} s ({work / t_pg:.3g} particle-steps/s)"
            + (
                f", jaxpm {jr['kdk_s']:.3f} s ({work / jr['kdk_s']:.3g}); jaxpm time / physgen time = "
                f"{jr['kdk_s'] / t_pg:.2f}"
                if "error" not in jr
                else ""
            )
        )
    for key in sorted(figures):
        if key.startswith(("force", "kdk", "ode", "jaxpm_ode", "lpt")):
            print(f"{key}: {figures[key]}")
    figures["machine"] = machine()
    figures["load"] = os.getloadavg()
    print(result_line(figures))


if __name__ == "__main__":
    main()
