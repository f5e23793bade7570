"""Simulation campaigns: ``simulate(simulator, n, seed=...) -> SimulationSet``.

The n simulations are split into batches of ``batch_size``. Batch k draws θ from the prior
and runs the simulator with its own generator, seeded from ``(seed, k)`` through numpy's
``SeedSequence``; so the same seed and batch size give the same numbers, whatever the
executor or the order in which batches finish.

Storage (``path`` given, a folder): an xarray Dataset in the zarr store
``<path>/simulations.zarr``, appended batch by batch (dims ``sample``, ``theta_dim``,
``x_dim_0``...; variables ``theta``, ``x`` and ``batch``, the batch each row came from; read
it lazily with ``xarray.open_zarr``). Progress lives in ``<path>/progress.json`` (written
atomically after each append): the campaign's identity and the rows committed. A killed run
started again with the same arguments skips finished batches; rows past the last commit
(an interrupted append) are cut off first. A store holding another campaign is an error.

NaN policy: rows whose x holds NaN or ±inf are dropped, counted (``meta["n_dropped"]``) and
reported with a warning; if every row is bad, :class:`SimulationError` is raised.

Executors: ``executor`` is any ``concurrent.futures.Executor`` (process or thread pools, or
a dask ``Client.get_executor()``; a dask ``Client`` itself is accepted too). The simulator
must be picklable for process-based executors.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from physgen.io import atomic_write_text
from physgen.priors import prior_to_dict, sample_prior

__all__ = ["simulate", "SimulationSet", "SimulationError", "load_simulations"]

PROGRESS = "progress.json"
ZARR = "simulations.zarr"


class SimulationError(RuntimeError):
    """A campaign cannot produce data (every row invalid, or a store that belongs to another campaign)."""


@dataclass
class SimulationSet:
    """Simulated pairs. theta ``(n, D)``, x ``(n, *x_shape)``, meta: simulator name/config, seed, counts, version."""

    theta: Tensor
    x: Tensor
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.theta.shape[0] != self.x.shape[0]:
            raise ValueError(f"theta has {self.theta.shape[0]} rows but x has {self.x.shape[0]}")

    def __len__(self) -> int:
        return int(self.theta.shape[0])

    @property
    def x_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def to_xarray(self):
        """An xarray Dataset (dims sample, theta_dim, x_dim_*) with meta as JSON in attrs."""
        import xarray as xr

        xdims = [f"x_dim_{i}" for i in range(self.x.dim() - 1)]
        return xr.Dataset(
            {"theta": (("sample", "theta_dim"), self.theta.numpy()), "x": (("sample", *xdims), self.x.numpy())},
            attrs={"physgen_meta": json.dumps(self.meta)},
        )

    def split(self, n_first: int) -> tuple[SimulationSet, SimulationSet]:
        """The first ``n_first`` rows and the rest."""
        return (SimulationSet(self.theta[:n_first], self.x[:n_first], dict(self.meta)),
                SimulationSet(self.theta[n_first:], self.x[n_first:], dict(self.meta)))


def _batch_seed(seed: int, k: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(k)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _simulate_batch(simulator, m: int, batch_seed: int, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Run one batch: m θ from the prior, one x each. Returns CPU numpy arrays."""
    gen = torch.Generator(device=device).manual_seed(batch_seed)
    with torch.no_grad():
        theta = sample_prior(simulator.prior, (m,), generator=gen).to(device)
        x = simulator.simulate(theta, generator=gen)
    return theta.cpu().numpy(), x.cpu().numpy()


def _identity(simulator, n: int, seed: int, batch_size: int) -> dict:
    from physgen import __version__

    return {
        "simulator": getattr(simulator, "name", type(simulator).__name__),
        "config": getattr(simulator, "config", {}),
        "x_shape": list(simulator.x_shape),
        "prior": prior_to_dict(simulator.prior),
        "n_requested": n,
        "seed": seed,
        "batch_size": batch_size,
        "physgen_version": __version__,
    }


def _sizes(n: int, batch_size: int) -> list[int]:
    return [min(batch_size, n - s) for s in range(0, n, batch_size)]


def _run_batches(simulator, todo: list[int], sizes: list[int], seed: int, executor, device: str
                 ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (k, theta, x) in batch order; batches run on the executor if one is given."""
    if executor is None:
        for k in todo:
            yield (k, *_simulate_batch(simulator, sizes[k], _batch_seed(seed, k), device))
        return
    if not isinstance(executor, Executor) and hasattr(executor, "get_executor"):
        executor = executor.get_executor()  # a dask.distributed Client
    futures = {k: executor.submit(_simulate_batch, simulator, sizes[k], _batch_seed(seed, k), device) for k in todo}
    for k in todo:
        yield (k, *futures.pop(k).result())


def simulate(
    simulator,
    n: int,
    *,
    seed: int,
    batch_size: int | None = None,
    path: str | Path | None = None,
    executor: Executor | None = None,
    device: str = "cpu",
    progress: bool = False,
) -> SimulationSet:
    """Simulate n (θ, x) pairs from the simulator's prior.

    Args:
        simulator: a :class:`physgen.core.Simulator`.
        n: number of simulations requested (rows with NaN/inf x are dropped afterwards).
        seed: campaign seed.
        batch_size: rows per batch (default min(n, 10_000)); part of the campaign's identity.
        path: zarr store to append to and resume from (None = in memory only).
        executor: a ``concurrent.futures.Executor`` (or dask Client) to run batches on.
        device: device the simulator runs on ("cpu", "cuda"); results are returned on CPU.
        progress: show a tqdm bar over batches.

    Returns:
        SimulationSet with theta ``(n_valid, D)``, x ``(n_valid, *x_shape)``.

    Raises:
        SimulationError: every row was invalid, or ``path`` holds another campaign.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    batch_size = int(batch_size or min(n, 10_000))
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    ident = _identity(simulator, n, seed, batch_size)
    sizes = _sizes(n, batch_size)
    done: dict[int, int] = {}  # batch -> valid rows
    thetas, xs, batch_ids = [], [], []
    store = Path(path) if path is not None else None
    rows = 0
    if store is not None:
        done, rows = _open_store(store, ident)
    todo = [k for k in range(len(sizes)) if k not in done]

    from tqdm.auto import tqdm

    bar = tqdm(total=len(sizes), initial=len(done), disable=not progress, desc="simulate", unit="batch")
    for k, th, x in _run_batches(simulator, todo, sizes, seed, executor, device):
        ok = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        th, x = th[ok], x[ok]
        done[k] = int(ok.sum())
        if store is not None:
            rows = _append(store, th, x, k, rows, ident, done)
        else:
            thetas.append(th)
            xs.append(x)
            batch_ids.append(np.full(len(th), k))
        bar.update(1)
    bar.close()

    if store is not None:
        theta, x = (torch.from_numpy(a) for a in _read(store, rows)) if rows else (torch.zeros(0), torch.zeros(0))
    else:
        theta = torch.from_numpy(np.concatenate(thetas))
        x = torch.from_numpy(np.concatenate(xs))
    n_valid = int(theta.shape[0])
    n_dropped = n - n_valid
    meta = {**ident, "n_valid": n_valid, "n_dropped": n_dropped, "path": str(store) if store else None}
    if n_valid == 0:
        raise SimulationError(
            f"all {n} simulations of {ident['simulator']} returned NaN/inf in x; check the simulator for the prior's "
            "parameter range (e.g. simulate a few θ by hand) or narrow the prior"
        )
    if n_dropped:
        warnings.warn(
            f"{n_dropped} of {n} simulations ({100 * n_dropped / n:.2f}%) of {ident['simulator']} returned NaN/inf in "
            f"x and were dropped; {n_valid} remain", stacklevel=2,
        )
    return SimulationSet(theta, x, meta)


# ----------------------------------------------------------------------------- zarr store


def _open_store(store: Path, ident: dict) -> tuple[dict[int, int], int]:
    prog = store / PROGRESS
    if not store.exists():
        return {}, 0
    if not prog.exists():
        if any(store.iterdir()):
            raise SimulationError(f"{store} exists, is not empty and is not a physgen simulation store; choose another path")
        return {}, 0
    state = json.loads(prog.read_text())
    mine = {k: v for k, v in ident.items() if k != "physgen_version"}
    theirs = {k: v for k, v in state["identity"].items() if k != "physgen_version"}
    if mine != theirs:
        diff = {k: (theirs.get(k), mine.get(k)) for k in mine if mine.get(k) != theirs.get(k)}
        raise SimulationError(
            f"{store} holds another campaign (stored vs requested: {diff}); use another path, or delete it to start over"
        )
    rows = int(state["rows"])
    _truncate(store, rows)
    return {int(k): int(v) for k, v in state["done"].items()}, rows


def _truncate(store: Path, rows: int) -> None:
    """Cut arrays back to the committed rows (an append interrupted after resizing)."""
    import zarr

    if not (store / ZARR / "zarr.json").exists() and not (store / ZARR / ".zgroup").exists():
        return
    group = zarr.open_group(str(store / ZARR), mode="r+")
    for name in ("theta", "x", "batch"):
        if name in group and group[name].shape[0] != rows:
            arr = group[name]
            arr.resize((rows, *arr.shape[1:]))


def _append(store: Path, theta: np.ndarray, x: np.ndarray, k: int, rows: int, ident: dict, done: dict) -> int:
    import xarray as xr

    if len(theta):
        xdims = [f"x_dim_{i}" for i in range(x.ndim - 1)]
        ds = xr.Dataset({
            "theta": (("sample", "theta_dim"), theta),
            "x": (("sample", *xdims), x),
            "batch": (("sample",), np.full(len(theta), k, dtype=np.int64)),
        })
        if rows == 0:
            ds.attrs["physgen_identity"] = json.dumps(ident)
            ds.to_zarr(store / ZARR, mode="w", consolidated=False)
        else:
            ds.to_zarr(store / ZARR, append_dim="sample", consolidated=False)
        rows += len(theta)
    store.mkdir(parents=True, exist_ok=True)
    atomic_write_text(store / PROGRESS, json.dumps({"identity": ident, "rows": rows, "done": done}))
    return rows


def _read(store: Path, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(theta, x) of the first ``rows`` committed rows (arrays may be longer after an interrupted append)."""
    import zarr

    group = zarr.open_group(str(store / ZARR), mode="r")
    return group["theta"][:rows], group["x"][:rows]


def load_simulations(path: str | Path) -> SimulationSet:
    """Read a (finished or partial) simulation store written by :func:`simulate`."""
    store = Path(path)
    prog = store / PROGRESS
    if not prog.exists():
        raise FileNotFoundError(f"{store} is not a physgen simulation store (no {PROGRESS})")
    state = json.loads(prog.read_text())
    theta, x = _read(store, int(state["rows"])) if int(state["rows"]) else (np.zeros((0, 0)), np.zeros((0,)))
    ident = state["identity"]
    n_done = sum(_sizes(ident["n_requested"], ident["batch_size"])[int(k)] for k in state["done"])
    meta = {**ident, "n_valid": int(state["rows"]), "n_dropped": n_done - int(state["rows"]),
            "complete": n_done == ident["n_requested"], "path": str(store)}
    return SimulationSet(torch.from_numpy(theta), torch.from_numpy(x), meta)


