"""RBM Metropolis sampling speed: physgen's RBMSampler (cached angles) vs NetKet's MetropolisLocal.

The same RBM (N = 20 spins, alpha = 1, the same random real weights copied into both) is sampled with
single-site flips by

* ``physgen numba``: :class:`physgen.quantum.RBMSampler`, compiled sweeps (O(M) per proposal);
* ``physgen torch``: the same sampler vectorised over chains in torch (``backend="torch"``);
* ``physgen generic``: :class:`physgen.quantum.MetropolisSampler` (re-evaluates the RBM per proposal);
* ``netket``: ``nk.sampler.MetropolisLocal`` (jit-compiled, re-evaluates the RBM per proposal),
  if NetKet is importable.

Each is warmed up (compilation excluded), then timed on ``--sweeps`` sweeps of ``C`` chains (a sweep is N
proposals per chain); the figures are chain-sweeps per second of wall time (``C * sweeps / wall``) and
per second of process CPU time (all threads; on a shared machine a multi-threaded process gets more of
the contended cores, so the CPU-time rate is the fairer one there). To show that
the samplers draw from the same distribution, the mean of ``log |psi|^2`` over the draws and the
acceptance rate are printed for each (they must agree within Monte Carlo error). One process, one
thread (``OMP_NUM_THREADS=1`` and XLA single-threaded); the rows run side by side in one run.

Usage:  python benchmarks/rbm_sampler.py [--chains 16,128,1024] [--sweeps 50] [--repeats 3]
The last line printed is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from physgen.quantum.metropolis import MetropolisSampler
from physgen.quantum.rbm import RBMWavefunction
from physgen.quantum.rbm_sampler import RBMSampler


def time_physgen(model, C: int, sweeps: int, repeats: int, kind: str) -> dict:
    gen = torch.Generator().manual_seed(1)
    if kind == "generic":
        smp = MetropolisSampler(model, n_chains=C, burn_in=5, generator=gen)
    else:
        smp = RBMSampler(model, n_chains=C, burn_in=5, generator=gen, backend=kind)
    smp.sample(4 * C)  # burn-in and compilation
    best, best_cpu, lp, acc = float("inf"), float("inf"), [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        x = smp.sample(sweeps * C)  # thin = 1: one draw per sweep
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
        with torch.no_grad():
            lp.append(float(2 * model.log_psi(x).real.mean()))
        acc.append(smp.last_acceptance)
    return {
        "chain_sweeps_per_s": C * sweeps / best,
        "chain_sweeps_per_cpu_s": C * sweeps / max(best_cpu, 1e-9),
        "mean_log_p": float(np.mean(lp)),
        "acceptance": float(np.mean(acc)),
    }


def time_netket(model: RBMWavefunction, C: int, sweeps: int, repeats: int) -> dict | None:
    try:
        import jax
        import jax.numpy as jnp
        import netket as nk
    except ImportError:
        return None
    N = model.n_sites
    hi = nk.hilbert.Spin(s=0.5, N=N)  # local values -1, +1: x = s = 1 - 2 sigma with the same weights
    ma = nk.models.RBM(alpha=1, param_dtype=float)
    params = ma.init(jax.random.PRNGKey(0), jnp.ones((1, N)))
    W, b, a = model.W.detach()[0].numpy(), model.b.detach()[0].numpy(), model.a.detach()[0].numpy()
    params = {"params": {"Dense": {"kernel": jnp.asarray(W.T), "bias": jnp.asarray(b)}, "visible_bias": jnp.asarray(a)}}
    sa = nk.sampler.MetropolisLocal(hi, n_chains=C)
    st = sa.init_state(ma, params, seed=0)
    x, st = sa.sample(ma, params, state=st, chain_length=max(sweeps, 4))  # compile + burn-in
    jax.block_until_ready(x)
    best, best_cpu, lp, acc = float("inf"), float("inf"), [], []
    for _ in range(repeats):
        n_acc0, n_steps0 = int(st.n_accepted), int(st.n_steps)
        t0, c0 = time.perf_counter(), time.process_time()
        x, st = sa.sample(ma, params, state=st, chain_length=sweeps)
        jax.block_until_ready(x)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
        lp.append(float(2 * jnp.real(ma.apply(params, x.reshape(-1, N))).mean()))
        acc.append((int(st.n_accepted) - n_acc0) / max(int(st.n_steps) - n_steps0, 1))  # this call only
    return {
        "chain_sweeps_per_s": C * sweeps / best,
        "chain_sweeps_per_cpu_s": C * sweeps / max(best_cpu, 1e-9),
        "mean_log_p": float(np.mean(lp)),
        "acceptance": float(np.mean(acc)),
        "version": nk.__version__,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chains", default="16,128,1024")
    ap.add_argument("--sweeps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--init-std", type=float, default=0.25, help="std of the random RBM weights")
    ap.add_argument("--skip", default="", help="comma-separated rows to skip (generic, torch, netket)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    skip = set(args.skip.split(","))
    model = RBMWavefunction(args.n, alpha=1, init_std=args.init_std, seed=0)
    machine = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_avg_before": os.getloadavg(),
    }
    print("machine:", machine, flush=True)
    rows = {}
    for C in [int(c) for c in args.chains.split(",")]:
        row = {"numba": time_physgen(model, C, args.sweeps, args.repeats, "numba")}
        if "torch" not in skip:
            row["torch"] = time_physgen(model, C, args.sweeps, args.repeats, "torch")
        if "generic" not in skip:
            row["generic"] = time_physgen(model, C, max(args.sweeps // 5, 4), args.repeats, "generic")
        if "netket" not in skip:
            nk = time_netket(model, C, args.sweeps, args.repeats)
            row["netket"] = nk if nk is not None else "not installed"
        for k, v in row.items():
            if isinstance(v, dict):
                print(
                    f"C={C:5d} {k:8s} {v['chain_sweeps_per_s']:10.0f} chain-sweeps/s (wall) "
                    f"{v['chain_sweeps_per_cpu_s']:10.0f} /s (process CPU)  acc {v['acceptance']:.3f}  "
                    f"<log|psi|^2> {v['mean_log_p']:.3f}",
                    flush=True,
                )
            else:
                print(f"C={C:5d} {k:8s} {v}", flush=True)
        if isinstance(row.get("netket"), dict):
            ratio = row["numba"]["chain_sweeps_per_s"] / row["netket"]["chain_sweeps_per_s"]
            ratio_cpu = row["numba"]["chain_sweeps_per_cpu_s"] / row["netket"]["chain_sweeps_per_cpu_s"]
            row["numba_over_netket"], row["numba_over_netket_cpu"] = ratio, ratio_cpu
            print(f"C={C:5d} physgen numba / netket = {ratio:.2f}x (wall), {ratio_cpu:.2f}x (CPU)", flush=True)
        rows[C] = row
    machine["load_avg_after"] = os.getloadavg()
    print("RESULT " + json.dumps({"machine": machine, "rows": rows}))


if __name__ == "__main__":
    main()
