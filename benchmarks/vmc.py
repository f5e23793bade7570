"""VMC benchmark: energy error vs time for the TFIM and Heisenberg chains (and 2D TFIM, RBM).

Targets (relative error |E - E0| / |E0|):

* ``tfim20``  TFIM chain h = 1, N = 20, periodic, GRU RNN + MinSR: <= 1e-4 within 10 minutes;
* ``tfim40``  the same at N = 40 (reported; exact value from free fermions);
* ``heis20``  Heisenberg chain N = 20, periodic, GRU with U(1) mask + Marshall sign: <= 1e-3;
* ``tfim2d``  TFIM 4x4 periodic at h = 3, GRU with snake ordering: <= 1e-3;
* ``rbm20``   RBM (alpha = 2) + Metropolis, TFIM chain N = 20: <= 1e-3;
* ``rbm20fast`` RBM (alpha = 1) + the cached-angle :class:`RBMSampler`, same chain, NetKet RBM(alpha = 1) beside it.

Each run trains for a wall-time budget; every ``--eval-every`` seconds of training the exact
variational energy is computed by enumeration (N <= 20; not counted as training time), and
at the end a Monte Carlo estimate with error bar. Both wall time and process CPU time are
reported (the machine is shared: wall time is contended, CPU time is closer to an idle
machine). The peer is NetKet, run in its own virtual environment (``--netket-python``) on
the same Hamiltonian with the same RBM/MinSR-free SR settings, if it is installed.

Usage:  python benchmarks/vmc.py [--quick] [--only tfim20,heis20] [--budget 600] [--threads 1]
The last line printed is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from physgen.quantum.exact import ground_state_energy, heisenberg_chain_bethe_energy, tfim_chain_energy  # noqa: E402
from physgen.quantum.hamiltonians import Heisenberg, TransverseFieldIsing  # noqa: E402
from physgen.quantum.lattice import Chain, Square  # noqa: E402
from physgen.quantum.metropolis import MetropolisSampler  # noqa: E402
from physgen.quantum.rbm import RBMWavefunction  # noqa: E402
from physgen.quantum.rbm_sampler import RBMSampler  # noqa: E402
from physgen.quantum.rnn import RNNWavefunction  # noqa: E402
from physgen.quantum.vmc import VMC, exact_variational_energy  # noqa: E402


def make(name: str, quick: bool):
    """(hamiltonian, model, vmc kwargs, exact energy, target, description)."""
    torch.manual_seed(0)
    f32 = torch.float32
    if name == "tfim20":
        N = 8 if quick else 20
        H = TransverseFieldIsing(Chain(N), h=1.0)
        m = RNNWavefunction(N, hidden=16 if quick else 32, dtype=f32)
        kw = dict(n_samples=1000, optimizer="minsr", lr=0.05, lr_final=0.005, diag_shift=1e-3)
        return H, m, kw, tfim_chain_energy(N), 1e-4, f"TFIM chain N={N} h=1 periodic, GRU(h={m.config['hidden']})+MinSR"
    if name == "tfim40":
        N = 10 if quick else 40
        H = TransverseFieldIsing(Chain(N), h=1.0)
        m = RNNWavefunction(N, hidden=16 if quick else 32, dtype=f32)
        kw = dict(n_samples=1000, optimizer="minsr", lr=0.05, lr_final=0.005, diag_shift=1e-3)
        return H, m, kw, tfim_chain_energy(N), None, f"TFIM chain N={N} h=1 periodic, GRU(h={m.config['hidden']})+MinSR"
    if name == "heis20":
        N = 8 if quick else 20
        lat = Chain(N)
        H = Heisenberg(lat)
        m = RNNWavefunction(N, hidden=16 if quick else 32, lattice=lat, u1=True, marshall=True, dtype=f32)
        kw = dict(n_samples=1000, optimizer="minsr", lr=0.05, lr_final=0.005, diag_shift=1e-3)
        return H, m, kw, heisenberg_chain_bethe_energy(N), 1e-3, f"Heisenberg chain N={N} periodic, GRU U(1)+Marshall+MinSR"
    if name == "tfim2d":
        L = 3 if quick else 4
        lat = Square(L, L)
        H = TransverseFieldIsing(lat, h=3.0)
        m = RNNWavefunction(L * L, hidden=16 if quick else 32, lattice=lat, ordering="snake", dtype=f32)
        kw = dict(n_samples=1000, optimizer="minsr", lr=0.05, lr_final=0.005, diag_shift=1e-3)
        return H, m, kw, ground_state_energy(H), 1e-3, f"TFIM {L}x{L} periodic h=3, GRU snake+MinSR"
    if name == "rbm20":
        N = 8 if quick else 20
        H = TransverseFieldIsing(Chain(N), h=1.0)
        m = RBMWavefunction(N, alpha=2, seed=0)
        smp = MetropolisSampler(m, n_chains=100, burn_in=20, thin=1, generator=torch.Generator().manual_seed(1))
        kw = dict(n_samples=1000, optimizer="minsr", lr=0.05, diag_shift=1e-2, sampler=smp)
        return H, m, kw, tfim_chain_energy(N), 1e-3, f"TFIM chain N={N} h=1 periodic, RBM(alpha=2)+Metropolis+MinSR"
    if name == "rbm20fast":  # the comparison: RBM alpha = 1, the cached-angle sampler
        N = 8 if quick else 20
        H = TransverseFieldIsing(Chain(N), h=1.0)
        m = RBMWavefunction(N, alpha=1, seed=0)
        smp = RBMSampler(m, n_chains=100, burn_in=20, thin=1, generator=torch.Generator().manual_seed(1))
        kw = dict(n_samples=1000, optimizer="minsr", lr=0.05, diag_shift=1e-2, sampler=smp)
        return H, m, kw, tfim_chain_energy(N), 1e-3, f"TFIM chain N={N} h=1 periodic, RBM(alpha=1)+RBMSampler+MinSR"
    raise ValueError(name)


def run_target(name: str, budget_s: float, eval_every_s: float, quick: bool, clock: str = "wall",
               lr_final: float | None = None, samples_final: int | None = None) -> dict:
    H, m, kw, e0, target, desc = make(name, quick)
    if lr_final is not None and "lr_final" in kw:
        kw["lr_final"] = lr_final
    ns0 = kw["n_samples"]
    if samples_final:
        desc += f", samples {ns0}->{samples_final}, lr {kw['lr']}->{kw.get('lr_final')}"
    n_sites = H.n_sites
    exact_ok = n_sites <= 20
    print(f"\n== {name}: {desc}; E0 = {e0:.10f}; budget {budget_s:.0f} s of {clock} time", flush=True)
    lr0, lrf = kw["lr"], kw.pop("lr_final", None)
    v = VMC(H, m, **kw)
    rows = []
    wall = cpu = 0.0
    next_eval = eval_every_s
    reached = None
    steps_est = None
    print(f"{'steps':>6} {'wall_s':>8} {'cpu_s':>8} {'E_exact_var':>16} {'rel_err':>10} {'E_mc(last)':>14}", flush=True)
    def used() -> float:
        return wall if clock == "wall" else cpu

    while used() < budget_s:
        # geometric lr decay over the expected number of steps (estimated after 10 steps)
        if lrf is not None and steps_est:
            frac = min(v.step_count / steps_est, 1.0)
            v._lr_now = lr0 * (lrf / lr0) ** frac
            if samples_final:
                v.n_samples = int(ns0 * (samples_final / ns0) ** frac)
        t0, c0 = time.perf_counter(), time.process_time()
        st = v.step()
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        if v.step_count == 10:
            steps_est = int(budget_s / (used() / 10))
        if used() >= next_eval or used() >= budget_s:
            next_eval += eval_every_s
            ev = exact_variational_energy(m, H) if exact_ok else float("nan")
            rel = abs(ev - e0) / abs(e0) if exact_ok else float("nan")
            rows.append({"steps": v.step_count, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                         "E_exact_var": ev, "rel_err": rel, "E_mc_step": st.energy})
            print(f"{v.step_count:6d} {wall:8.1f} {cpu:8.1f} {ev:16.10f} {rel:10.2e} {st.energy:14.6f}", flush=True)
            if target is not None and reached is None and rel <= target:
                reached = {"steps": v.step_count, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}
    est = v.estimate(2000 if quick else 20000)
    rel_mc = abs(est["energy"] - e0) / abs(e0)
    final_exact = rows[-1]["rel_err"] if rows else float("nan")
    print(f"final: E_mc = {est['energy']:.8f} +- {est['error']:.2e} (rel err {rel_mc:.2e}), var = {est['variance']:.3e}, "
          f"V-score = {est['v_score']:.2e}; exact variational rel err = {final_exact:.2e}; "
          f"target {target} reached at {reached}", flush=True)
    return {"desc": desc, "E0": e0, "steps": v.step_count, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "rel_err_exact": final_exact, "E_mc": est["energy"], "E_mc_err": est["error"], "rel_err_mc": rel_mc,
            "v_score": est["v_score"], "target": target, "reached": reached, "table": rows}


NETKET_SCRIPT = r"""
import json, sys, time
import netket as nk
N, budget, ns, alpha = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
g = nk.graph.Chain(N, pbc=True)
hi = nk.hilbert.Spin(s=0.5, N=N)
H = nk.operator.Ising(hi, graph=g, h=1.0, J=-1.0)   # -J sum ZZ convention: J=-1 is ferro, = physgen J=1
ma = nk.models.RBM(alpha=alpha, param_dtype=float)
sa = nk.sampler.MetropolisLocal(hi, n_chains=100)
vs = nk.vqs.MCState(sa, ma, n_samples=ns, seed=0, sampler_seed=1)
opt = nk.optimizer.Sgd(learning_rate=0.05)
sr = nk.optimizer.SR(diag_shift=1e-2)
drv = nk.driver.VMC(H, opt, variational_state=vs, preconditioner=sr)
t0 = time.perf_counter(); c0 = time.process_time()
drv.run(n_iter=10**7, out=(), show_progress=False, callback=lambda step, log, d: time.perf_counter() - t0 < budget)
steps = int(drv.step_count)
wall = time.perf_counter() - t0; cpu = time.process_time() - c0
vs.n_samples = 20000
E = vs.expect(H)
print("NETKET " + json.dumps({"steps": steps, "wall_s": wall, "cpu_s": cpu, "E": float(E.mean.real), "err": float(E.error_of_mean), "version": nk.__version__}))
"""


def run_netket(python: str, N: int, budget_s: float, e0: float, alpha: int = 2) -> dict | None:
    if not python or not Path(python).exists():
        return None
    try:
        out = subprocess.run([python, "-c", NETKET_SCRIPT, str(N), str(budget_s), "1000", str(alpha)], capture_output=True,
                             text=True, timeout=budget_s * 3 + 300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    except subprocess.TimeoutExpired:
        return {"error": "timeout"}
    line = [l for l in out.stdout.splitlines() if l.startswith("NETKET ")]
    if not line:
        return {"error": (out.stderr or out.stdout)[-800:]}
    r = json.loads(line[-1][7:])
    r["rel_err_mc"] = abs(r["E"] - e0) / abs(e0)
    return r


def thread_timing(quick: bool) -> dict:
    """Median seconds per VMC step of the tfim20 setup with 1 and 2 torch threads."""
    res = {}
    for nt in (1, 2):
        torch.set_num_threads(nt)
        H, m, kw, *_ = make("tfim20", quick)
        kw.pop("lr_final", None)
        v = VMC(H, m, **kw)
        v.step()  # warm-up (vmap tracing)
        ts = []
        for _ in range(3 if quick else 5):
            t0 = time.perf_counter()
            v.step()
            ts.append(time.perf_counter() - t0)
        res[f"threads_{nt}_s_per_step"] = sorted(ts)[len(ts) // 2]
    torch.set_num_threads(1)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny systems and budgets (smoke run)")
    ap.add_argument("--only", default="tfim20,tfim40,heis20,tfim2d,rbm20")
    ap.add_argument("--budget", type=float, default=600.0, help="training wall-time budget per target (s)")
    ap.add_argument("--eval-every", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lr-final", type=float, default=None, help="override the final learning rate of the RNN runs")
    ap.add_argument("--samples-final", type=int, default=None, help="ramp n_samples geometrically to this value")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="measure the budget in wall time or in this process's CPU time (a shared machine)")
    ap.add_argument("--thread-timing", action="store_true", help="also time one step with 1 vs 2 threads")
    ap.add_argument("--netket-python", default=sys.executable, help="python of a venv with netket (default: this one)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    budget = 20.0 if args.quick else args.budget
    every = 5.0 if args.quick else args.eval_every
    machine = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "torch": torch.__version__, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "load_avg": os.getloadavg(), "clock": args.clock}
    print("machine:", machine, flush=True)
    results = {}
    for name in [s for s in args.only.split(",") if s]:
        results[name] = run_target(name, budget, every, args.quick, args.clock, args.lr_final, args.samples_final)
    for key, alpha in (("rbm20", 2), ("rbm20fast", 1)):
        if key not in results:
            continue
        nk = run_netket(args.netket_python, 8 if args.quick else 20, budget, results[key]["E0"], alpha)
        if nk is None:
            print("NetKet: not installed (no python at --netket-python); no peer figures.", flush=True)
        else:
            print(f"NetKet RBM(alpha={alpha})+MetropolisLocal+SR, same budget:", nk, flush=True)
            if "rel_err_mc" in nk and nk["steps"] > 0 and nk["rel_err_mc"] > 0:
                print(f"{key}: rel err physgen/netket = {results[key]['rel_err_mc'] / nk['rel_err_mc']:.3g}; "
                      f"steps physgen/netket = {results[key]['steps'] / nk['steps']:.3g}", flush=True)
        results[f"netket_{key}"] = nk
    if args.thread_timing:
        results["thread_timing"] = thread_timing(args.quick)
        print("thread timing:", results["thread_timing"], flush=True)
    summary = {k: {kk: vv for kk, vv in v.items() if kk != "table"} if isinstance(v, dict) else v for k, v in results.items()}
    print("RESULT " + json.dumps({"machine": machine, "results": summary}, default=float))


if __name__ == "__main__":
    main()
