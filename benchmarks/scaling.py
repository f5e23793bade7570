"""Scaling out on one machine: a simulation campaign on 1 and 2 dask workers, training on 1 and 2 ranks.

Simulation: ``physgen.simulate`` of the Ising model (``simulators.ising.Ising(64, sweeps=S)``, checkerboard
Metropolis, CPU-bound) into a zarr store, on a ``distributed.LocalCluster`` of 1 worker and on one of 2 workers
(worker processes with one thread each; both clusters are started and warmed up first, with a campaign of one
batch each, so start-up and imports are not timed). Each repeat runs the same campaign (same seed, a fresh
store) on the two clusters in rotating order, so that load from other processes hits both alike; the figure is
simulations per second over the median campaign time (submission, simulation, transfer and the zarr commits
on the client, all included). The two stores are compared file by file: they must be identical. Batches of 128
lattices keep the client's share (about 40 ms of CPU to receive and append a batch, on the same two cores as
the workers) small beside a batch's simulation.

Training: ``physgen.fit`` of a regression MLP (64 -> 1024 -> 1024 -> 4, 1.1 M parameters) on ``--rows`` rows,
global batch 512, ``--epochs`` epochs, started by torchrun (:func:`physgen.distributed.launch`) with 1 and with 2
ranks (gloo on CPU, one thread per rank), in rotating order. The figure is the median time of an epoch
(training and validation, from the run's history) past the first; the final validation losses of 1 and 2 ranks
must agree (the same steps, to rounding). With a GPU, one rank on it is timed too (``--gpu``; two ranks need
two GPUs, NCCL).

Usage: ``python benchmarks/scaling.py [--quick] [--part sim|train|both]``. Run it on an otherwise idle
machine: the figures are ratios of runs done side by side, but a loaded machine has fewer free cores than it
reports. The load average before and after is printed. The last line is ``RESULT {json}``; ``met`` says whether
2 workers reached 1.6x the simulations per second of 1 worker.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import machine, result_line  # noqa: E402

TARGET = 1.6  # simulations per second with 2 workers over 1 worker (issue 17)


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _files(store: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(store)): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file() and p.name != ".physgen.lock"
    }


def simulation(args, tmp: Path) -> dict:
    """Campaign throughput on 1 and 2 LocalCluster workers (module docstring)."""
    from physgen.data import simulate
    from physgen.distributed import connect
    from simulators.ising import Ising

    sim = Ising(args.L, sweeps=args.sweeps)
    n = args.batches * args.batch_size
    times: dict[str, list[float]] = {"1": [], "2": []}
    identical = True
    with connect("local:1") as one, connect("local:2") as two:
        clients = {"1": one, "2": two}
        for name, client in clients.items():  # warm-up: worker imports, the simulator's first call
            client.wait_for_workers(int(name))
            simulate(
                sim,
                args.batch_size * int(name),
                seed=99,
                batch_size=args.batch_size,
                path=tmp / f"warm{name}",
                executor=client,
            )
        for rep in range(args.repeats):
            order = ["1", "2"] if rep % 2 == 0 else ["2", "1"]
            for name in order:
                path = tmp / f"sim{name}_{rep}"
                t0 = time.perf_counter()
                simulate(sim, n, seed=rep, batch_size=args.batch_size, path=path, executor=clients[name])
                times[name].append(time.perf_counter() - t0)
                print(f"  simulate: {name} worker(s), repeat {rep}: {times[name][-1]:.2f} s", flush=True)
            identical &= _files(tmp / f"sim1_{rep}") == _files(tmp / f"sim2_{rep}")
            for name in order:
                shutil.rmtree(tmp / f"sim{name}_{rep}")
    rate = {k: n / statistics.median(v) for k, v in times.items()}
    spins = args.L * args.L * args.sweeps
    out = {
        "simulator": f"Ising(L={args.L}, sweeps={args.sweeps}), metropolis",
        "n": n,
        "batch_size": args.batch_size,
        "sims_per_s_1_worker": rate["1"],
        "sims_per_s_2_workers": rate["2"],
        "spin_updates_per_s_1_worker": rate["1"] * spins,
        "spin_updates_per_s_2_workers": rate["2"] * spins,
        "speedup_2_workers": rate["2"] / rate["1"],
        "stores_identical": identical,
        "campaign_seconds": times,
    }
    print(
        f"simulation: {rate['1']:.1f} sims/s on 1 worker, {rate['2']:.1f} on 2 "
        f"({out['speedup_2_workers']:.2f}x; target {TARGET}x); stores identical: {identical}",
        flush=True,
    )
    return out


# ----------------------------------------------------------------------------- training


def _rank_worker(out: str, rows: int, epochs: int, device: str) -> None:
    """One rank of the training benchmark (run by torchrun through launch)."""
    from torch import nn

    from physgen.train import fit
    from physgen.train.ddp import process_group

    class Regression(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(
                nn.Linear(64, 1024), nn.SiLU(), nn.Linear(1024, 1024), nn.SiLU(), nn.Linear(1024, 4)
            )

        def loss(self, theta, x):
            return ((self.net(x) - theta) ** 2).mean()

    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, 64, generator=g)
    theta = torch.tanh(x[:, :4] * x[:, 4:8]) + 0.1 * torch.randn(rows, 4, generator=g)
    with process_group() as (rank, size):
        module = Regression()
        result = fit(
            module,
            (theta, x),
            batch_size=512,
            lr=1e-3,
            max_epochs=epochs,
            patience=1000,
            schedule=None,
            progress=False,
            seed=0,
            device=device,
            num_threads=1,
        )
        if rank == 0:
            Path(out).write_text(
                json.dumps(
                    {
                        "ranks": size,
                        "seconds": [e["seconds"] for e in result.history],
                        "val_loss": result.history[-1]["val_loss"],
                    }
                )
            )


def training(args, tmp: Path) -> dict:
    """Epoch time on 1 and 2 ranks (module docstring)."""
    from physgen.distributed.launch import launch

    def run(ranks: int, device: str, tag: str) -> dict:
        out = tmp / f"train_{tag}.json"
        launch(
            ranks, [__file__, "--rank-worker", out, "--rows", args.rows, "--epochs", args.epochs, "--device", device]
        )
        return json.loads(out.read_text())

    seconds: dict[str, list[float]] = {"1": [], "2": []}
    val = {}
    for rep in range(args.repeats):
        for ranks in [1, 2] if rep % 2 == 0 else [2, 1]:
            r = run(ranks, "cpu", f"{ranks}_{rep}")
            seconds[str(ranks)] += r["seconds"][1:]  # past the first epoch
            val[str(ranks)] = r["val_loss"]
            print(f"  train: {ranks} rank(s), repeat {rep}: epochs {[round(s, 2) for s in r['seconds']]} s", flush=True)
    epoch = {k: statistics.median(v) for k, v in seconds.items()}
    out = {
        "model": "MLP 64-1024-1024-4 (1.1 M parameters)",
        "rows": args.rows,
        "global_batch": 512,
        "epoch_seconds_1_rank": epoch["1"],
        "epoch_seconds_2_ranks": epoch["2"],
        "speedup_2_ranks": epoch["1"] / epoch["2"],
        "val_loss_1_rank": val["1"],
        "val_loss_2_ranks": val["2"],
        "val_loss_agree": abs(val["1"] - val["2"]) <= 1e-4 * max(1.0, abs(val["1"])),
    }
    if args.gpu and torch.cuda.is_available():
        g = run(1, "cuda", "gpu")
        out["epoch_seconds_1_gpu"] = statistics.median(g["seconds"][1:])
        if torch.cuda.device_count() >= 2:
            g2 = run(2, "cuda", "gpu2")
            out["epoch_seconds_2_gpus"] = statistics.median(g2["seconds"][1:])
    print(
        f"training: {epoch['1']:.2f} s/epoch on 1 rank, {epoch['2']:.2f} on 2 ({out['speedup_2_ranks']:.2f}x); "
        f"final validation loss {val['1']:.5f} vs {val['2']:.5f}",
        flush=True,
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller campaign and data, 2 repeats")
    ap.add_argument("--part", choices=["sim", "train", "both"], default="both")
    ap.add_argument("--L", type=int, default=64)
    # 1,000 sweeps: what an L = 64 lattice at β_c needs to equilibrate; fewer make the client's per-byte work
    # (receive, checksum, append) a larger share of the two cores (docs/scaling.md)
    ap.add_argument("--sweeps", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--batches", type=int, default=16)
    ap.add_argument("--rows", type=int, default=40_000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--gpu", action="store_true", help="also time training on CUDA when available")
    ap.add_argument("--rank-worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rank_worker:
        _rank_worker(args.rank_worker, args.rows, args.epochs, args.device)
        return
    if args.quick:
        args.batches, args.rows, args.epochs, args.repeats = 8, 12_000, 3, 2
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    figures = {"machine": machine(), "load_before": _load(), "target_speedup": TARGET}
    print(json.dumps(figures["machine"]), f"load average {figures['load_before']}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="physgen_scaling_"))
    try:
        if args.part in ("sim", "both"):
            figures["simulation"] = simulation(args, tmp)
            figures["met"] = figures["simulation"]["speedup_2_workers"] >= TARGET
        if args.part in ("train", "both"):
            figures["training"] = training(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    figures["load_after"] = _load()
    print(f"load average before {figures['load_before']}, after {figures['load_after']}")
    print(result_line(figures))


if __name__ == "__main__":
    main()
