"""POVM tomography of GHZ states: classical fidelity vs number of shots (Carrasquilla et al. 2019).

For each (N, POVM, shots) row: exact POVM records of the GHZ state ``(|0..0> + |1..1>)/sqrt 2`` are drawn
(:func:`physgen.quantum.povm.sample_ghz_povm`), a :class:`physgen.quantum.POVMTransformer` is trained on
them by maximum likelihood (:func:`physgen.quantum.fit_povm`), and the classical fidelity
``F_c = (sum_a sqrt(P Q))^2`` is estimated from 20,000 model samples with the exact GHZ probability of each;
with ``--quantum`` also the quantum fidelity ``<GHZ|rho_model|GHZ>`` by enumerating the ``K^N`` outcomes
(tetrahedral, N = 10: 4^10 evaluations). Published reference (transformer, tetrahedral POVM): F_c = 0.99
reached with about 6,000 / 8,000 / 10,000 shots for N = 10 / 20 / 40.

Usage:  python benchmarks/tomography.py [--rows 10:tetrahedral:2000,10:tetrahedral:6000] [--epochs 30]
The last line printed is ``RESULT {json}``. One torch thread.
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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from physgen.quantum.povm import get_povm, ghz_povm_probability, sample_ghz_povm
from physgen.quantum.povm_model import POVMTransformer, classical_fidelity, fit_povm, quantum_fidelity
from physgen.quantum.states import ghz_state

DEFAULT_ROWS = "10:tetrahedral:2000,10:tetrahedral:6000,10:tetrahedral:10000,10:pauli6:10000,20:tetrahedral:8000,40:tetrahedral:10000"


def run_row(N: int, povm_name: str, shots: int, epochs: int, seed: int, quantum: bool) -> dict:
    povm = get_povm(povm_name)
    data = sample_ghz_povm(N, povm, shots, seed=seed)
    model = POVMTransformer(N, povm.K, seed=seed)
    t0, c0 = time.perf_counter(), time.process_time()
    fit = fit_povm(model, data, povm, epochs=epochs, generator=torch.Generator().manual_seed(seed))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    fc, se = classical_fidelity(
        model, lambda a: ghz_povm_probability(N, povm, a), 20000, generator=torch.Generator().manual_seed(seed + 1)
    )
    row = {
        "N": N,
        "povm": povm_name,
        "shots": shots,
        "epochs": fit["epochs"],
        "best_epoch": fit["best_epoch"],
        "train_wall_s": round(wall, 1),
        "train_cpu_s": round(cpu, 1),
        "classical_fidelity": fc,
        "fc_se": se,
    }
    if quantum and povm.K**N <= 2**22:
        row["quantum_fidelity"] = quantum_fidelity(model, ghz_state(N), povm)
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default=DEFAULT_ROWS, help="comma-separated N:povm:shots")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quantum", action="store_true", help="also the quantum fidelity (K^N enumeration)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    machine = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_avg_before": os.getloadavg(),
    }
    print("machine:", machine, flush=True)
    rows = []
    for spec in args.rows.split(","):
        n, name, shots = spec.split(":")
        rows.append(run_row(int(n), name, int(shots), args.epochs, args.seed, args.quantum))
    machine["load_avg_after"] = os.getloadavg()
    print("RESULT " + json.dumps({"machine": machine, "rows": rows}))


if __name__ == "__main__":
    main()
