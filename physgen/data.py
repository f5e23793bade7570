"""Simulation campaigns: ``simulate(simulator, n, seed=...) -> SimulationSet``.

The n simulations are split into batches of ``batch_size``. Batch k draws θ from the prior
and runs the simulator with its own generator, seeded from ``(seed, k)`` through numpy's
``SeedSequence``; so the same seed and batch size give the same numbers, whatever the
executor or the order in which batches finish.

Storage (``path`` given, a folder; :mod:`physgen.store`): an xarray Dataset in the zarr store
``<path>/simulations.zarr``, appended batch by batch (dims ``sample``, ``theta_dim``, ``x_dim_0``...;
variables ``theta``, ``x`` and ``batch``, the batch each row came from; read it lazily with
``xarray.open_zarr``), chunked along ``sample`` only, ``CHUNK_BYTES`` per chunk whatever the batch size.
``<path>/progress.json`` (written atomically after each append) holds the campaign's identity (simulator
class and options, prior, n, seed, batch size) and each committed batch's rows and checksum. One process
writes a store at a time (:func:`physgen.lock.folder_lock`; a second one is refused naming the first).
A killed run started again with the same arguments skips finished batches; rows past the last commit
(an interrupted append) are cut off first. Every open checks the store against its record; a damaged batch
is an error naming it, and ``repair=True`` re-simulates exactly the damaged batches. A store holding
another campaign is an error naming the difference (``restart=True`` starts afresh).

NaN policy: rows whose x holds NaN or ±inf are dropped, counted (``meta["n_dropped"]``) and
reported with a warning; if every row is bad, :class:`SimulationError` is raised.

Lazy sets: ``load_simulations(path, lazy=True)`` (and ``simulate(..., path=..., lazy=True)``) return a
SimulationSet whose ``theta`` is a tensor ``(n, D)`` in memory and whose ``x`` is a :class:`LazyArray`
over the store: ``len(x)``, ``x.shape``, ``x.dtype`` (a torch dtype), ``x.chunk_rows`` (rows per zarr
chunk) and indexing along the first axis, ``x[i]``, ``x[i:j]``, ``x[index]`` (an integer tensor, array
or list, or a boolean mask; then ``x[rows, ...]`` for the other axes), each reading only the rows asked
for and returning a torch tensor. ``physgen.fit`` reads such a set chunk by chunk
(:mod:`physgen.train.sources`), so a store larger than memory trains in a few chunks' worth of memory.

Executors: ``executor`` is any ``concurrent.futures.Executor`` (process or thread pools, or
a dask ``Client.get_executor()``; a dask ``Client`` itself is accepted too). The simulator
must be picklable for process-based executors. Batches finished out of order wait in ``<path>/pending/``
and are appended in batch order, so the store is the same with 1, 2 or 8 workers; a failed batch is retried
``retries`` times (:mod:`physgen.distributed.campaign`; campaigns on a cluster: docs/scaling.md).
"""

from __future__ import annotations

import json
import warnings
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from physgen.checks import Domain, check_value
from physgen.distributed.campaign import (
    batch_seed,
    batch_sizes,
    fill_store,
    open_store,
    run_batches,
    simulate_batch,
    store_lock,
    valid_rows,
)
from physgen.store import PROGRESS, ZARR, SimulationError, damaged_batches, damaged_error, identity, read_progress

__all__ = ["simulate", "SimulationSet", "SimulationError", "load_simulations", "LazyArray"]

CHUNK_BYTES = 4 << 20  # bytes per zarr chunk of each stored array (rows along `sample`)


class LazyArray:
    """Rows ``[start, stop)`` (stop None: all) of a zarr ``array`` whose first axis is ``sample``, read on
    demand (the contract: the module docstring); ``store``: the zarr store's path, for ``to_xarray``."""

    def __init__(self, array, start: int = 0, stop: int | None = None, store: str | Path | None = None) -> None:
        n = int(array.shape[0])
        stop = n if stop is None else int(stop)
        if not 0 <= start <= stop <= n:
            raise ValueError(f"rows [{start}, {stop}) are outside the array's {n} rows")
        self.array, self.start, self.stop, self.store = array, int(start), stop, store

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.array.shape[1:]))

    @property
    def dtype(self) -> torch.dtype:
        return torch.from_numpy(np.empty(0, dtype=self.array.dtype)).dtype

    @property
    def chunk_rows(self) -> int:
        """Rows per zarr chunk (the unit in which fit reads)."""
        return int(self.array.chunks[0])

    def dim(self) -> int:
        return len(self.array.shape)

    def view(self, start: int, stop: int | None = None) -> LazyArray:
        """Rows ``[start, stop)`` of this view, still lazy."""
        stop = len(self) if stop is None else stop
        if not 0 <= start <= stop <= len(self):
            raise ValueError(f"rows [{start}, {stop}) are outside this array's {len(self)} rows")
        return LazyArray(self.array, self.start + start, self.start + stop, self.store)

    def _rows(self, key) -> np.ndarray:
        n = len(self)
        if isinstance(key, slice) and key.indices(n)[2] == 1:
            a, b, _ = key.indices(n)
            return self.array[self.start + a : self.start + max(a, b)]
        scalar = isinstance(key, (int, np.integer)) or (torch.is_tensor(key) and key.dim() == 0)
        idx = (
            np.arange(*key.indices(n))
            if isinstance(key, slice)
            else np.asarray(key.cpu() if torch.is_tensor(key) else key)
        )
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"a boolean mask over the rows needs shape ({n},); got {idx.shape}")
            idx = np.flatnonzero(idx)
        idx = idx.reshape(-1) if scalar else idx
        if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            raise IndexError(f"rows are selected by an int, a slice, or a 1-D integer or boolean index; got {key!r}")
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        out = self.array.oindex[idx.astype(np.int64) % max(n, 1) + self.start]
        return out[0] if scalar else out

    def __getitem__(self, key) -> Tensor:
        rows, rest = (key[0], key[1:]) if isinstance(key, tuple) and key else (key, ())
        if rows is Ellipsis:
            rows, rest = slice(None), (Ellipsis, *rest)
        out = torch.from_numpy(np.ascontiguousarray(self._rows(rows)))
        return out[(() if out.dim() < self.dim() else (slice(None),)) + tuple(rest)] if rest else out

    def __repr__(self) -> str:
        return f"LazyArray(shape={tuple(self.shape)}, dtype={self.dtype}, chunk_rows={self.chunk_rows})"


@dataclass
class SimulationSet:
    """Simulated pairs. theta ``(n, D)``, x ``(n, *x_shape)`` (a tensor, or a :class:`LazyArray` read on
    demand), meta: simulator name/config, seed, counts, version."""

    theta: Tensor
    x: Tensor | LazyArray
    meta: dict = field(default_factory=dict)

    @property
    def lazy(self) -> bool:  # x is read from the store on demand
        return isinstance(self.x, LazyArray)

    def __post_init__(self) -> None:
        if self.theta.shape[0] != self.x.shape[0]:
            raise ValueError(f"theta has {self.theta.shape[0]} rows but x has {self.x.shape[0]}")

    def __len__(self) -> int:
        return int(self.theta.shape[0])

    def __repr__(self) -> str:
        where = f", path={self.meta['path']!r}" if self.meta.get("path") else ""
        return (
            f"SimulationSet(n={len(self)}, theta={tuple(self.theta.shape)}, x={tuple(self.x.shape)}, "
            f"simulator={self.meta.get('simulator')!r}, lazy={self.lazy}{where})"
        )

    @property
    def x_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def to_xarray(self):
        """An xarray Dataset (dims sample, theta_dim, x_dim_*) with meta as JSON in attrs (dask-backed,
        still lazy, for a lazy set)."""
        import xarray as xr

        if self.lazy:
            ds = xr.open_zarr(str(self.x.store), consolidated=False)[["theta", "x"]]
            ds = ds.isel(sample=slice(self.x.start, self.x.stop))
            ds.attrs = {"physgen_meta": json.dumps(self.meta)}
            return ds
        xdims = [f"x_dim_{i}" for i in range(self.x.dim() - 1)]
        return xr.Dataset(
            {"theta": (("sample", "theta_dim"), self.theta.numpy()), "x": (("sample", *xdims), self.x.numpy())},
            attrs={"physgen_meta": json.dumps(self.meta)},
        )

    def split(self, n_first: int) -> tuple[SimulationSet, SimulationSet]:
        """The first ``n_first`` rows and the rest (a lazy set gives two lazy sets)."""
        n_first = max(0, min(int(n_first), len(self)))
        if self.lazy:
            first, rest = self.x.view(0, n_first), self.x.view(n_first)
        else:
            first, rest = self.x[:n_first], self.x[n_first:]
        return (
            SimulationSet(self.theta[:n_first], first, dict(self.meta)),
            SimulationSet(self.theta[n_first:], rest, dict(self.meta)),
        )


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
    lazy: bool = False,
    repair: bool = False,
    restart: bool = False,
    retries: int = 2,
) -> SimulationSet:
    """Simulate n (θ, x) pairs from the simulator's prior.

    Args:
        simulator: a :class:`physgen.core.Simulator`.
        n: number of simulations requested (rows with NaN/inf x are dropped afterwards).
        seed: campaign seed.
        batch_size: rows per batch (default min(n, 10_000)); part of the campaign's identity.
        path: store folder to append to and resume from (None = in memory only); one process writes it at
            a time (:mod:`physgen.lock`), and every open checks it against its progress record
            (:mod:`physgen.store`).
        executor: a ``concurrent.futures.Executor`` or a dask ``Client`` to run batches on
            (:mod:`physgen.distributed.campaign`: batches committed in order, a killed client resumes).
        device: device the simulator runs on ("cpu", "cuda"); results are returned on CPU.
        progress: show a tqdm bar over batches.
        lazy: with ``path``, return x as a :class:`LazyArray` over the store instead of reading it
            into memory (for campaigns larger than memory).
        repair: re-simulate the store's damaged batches (checksum mismatch, missing or unreadable rows) with
            their original seeds instead of refusing the store.
        restart: a store that holds another campaign (another simulator, options, prior, n, seed or batch
            size) is emptied and the campaign starts afresh, instead of being refused.
        retries: times a failed batch is submitted again before the campaign stops.

    Returns:
        SimulationSet with theta ``(n_valid, D)``, x ``(n_valid, *x_shape)``.

    Raises:
        SimulationError: every row was invalid, ``path`` holds another campaign (the difference named), the
            store is damaged (the batches named), or a batch failed ``retries + 1`` times.
        physgen.lock.FolderLockedError: another process is writing ``path`` (named, with how its campaign differs).
        ValueError, TypeError: n or batch_size is not an int >= 1, or seed not an int >= 0.
    """
    n, seed = int(check_value(n, Domain(int, ge=1), "n")), int(check_value(seed, Domain(int, ge=0), "seed"))
    batch_size = int(check_value(min(n, 10_000) if batch_size is None else batch_size, Domain(int, ge=1), "batch_size"))
    if lazy and path is None:
        raise ValueError("lazy=True reads x from the store: give a path")
    ident = identity(simulator, n, seed, batch_size)
    sizes = batch_sizes(n, batch_size)
    retries = int(check_value(retries, Domain(int, ge=0), "retries"))
    if path is None:
        return _finish(
            simulator, n, ident, *_in_memory(simulator, sizes, seed, executor, device, progress, retries), None
        )
    store = Path(path)
    with store_lock(store, ident):
        state = open_store(
            store,
            ident,
            sizes,
            repair=repair,
            restart=restart,
            resimulate=lambda k: valid_rows(*simulate_batch(simulator, sizes[k], batch_seed(seed, k), device)),
        )
        fill_store(
            simulator,
            store,
            state,
            sizes,
            seed,
            executor=executor,
            device=device,
            progress=progress,
            retries=retries,
            chunk_bytes=CHUNK_BYTES,
        )
        theta, x = _read(store, state.rows, lazy) if state.rows else (torch.zeros(0), torch.zeros(0))
    return _finish(simulator, n, ident, theta, x, store)


def _in_memory(simulator, sizes, seed, executor, device, progress, retries) -> tuple[Tensor, Tensor]:
    from tqdm.auto import tqdm

    parts = {}
    for k, th, x in tqdm(
        run_batches(simulator, list(range(len(sizes))), sizes, seed, executor, device, retries=retries),
        total=len(sizes),
        disable=not progress,
        desc="simulate",
        unit="batch",
    ):
        parts[k] = valid_rows(th, x)
    order = sorted(parts)
    theta = torch.from_numpy(np.concatenate([parts[k][0] for k in order]))
    x = torch.from_numpy(np.concatenate([parts[k][1] for k in order]))
    return theta, x


def _finish(simulator, n: int, ident: dict, theta: Tensor, x, store: Path | None) -> SimulationSet:
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
            f"x and were dropped; {n_valid} remain",
            stacklevel=3,
        )
    return SimulationSet(theta, x, meta)


def _read(store: Path, rows: int, lazy: bool = False) -> tuple[Tensor, Tensor | LazyArray]:
    """(theta, x) of the first ``rows`` committed rows (arrays may be longer after an interrupted append);
    x stays in the store when ``lazy``."""
    import zarr

    group = zarr.open_group(str(store / ZARR), mode="r")
    theta_arr, x_arr = group["theta"], group["x"]
    if not (isinstance(theta_arr, zarr.Array) and isinstance(x_arr, zarr.Array)):
        raise SimulationError(
            f"{store / ZARR}: 'theta' and 'x' must be zarr arrays, not groups; the store is damaged "
            "(simulate again with restart=True)"
        )
    theta = torch.from_numpy(theta_arr[:rows])
    x = LazyArray(x_arr, 0, rows, store=store / ZARR) if lazy else torch.from_numpy(x_arr[:rows])
    return theta, x


def load_simulations(path: str | Path, *, lazy: bool = False, verify: bool = True) -> SimulationSet:
    """Read a (finished or partial) simulation store written by :func:`simulate` (the folder ``path``);
    ``lazy``: leave x in the store, as a :class:`LazyArray` read on demand (theta is read into memory);
    ``verify``: check every batch against the progress record first (one pass over the store).

    Raises:
        FileNotFoundError: ``path`` holds no store.
        SimulationError: the store is damaged or inconsistent with its record (named, with the fix).
    """
    store = Path(path)
    state = read_progress(store)
    if state is None:
        raise FileNotFoundError(f"{store} is not a physgen simulation store (no {PROGRESS})")
    if verify:
        bad = damaged_batches(store, state)
        if bad:
            raise damaged_error(store, bad)
    theta, x = _read(store, state.rows, lazy) if state.rows else (torch.zeros(0, 0), torch.zeros(0))
    ident = state.identity
    n_done = sum(batch_sizes(ident["n_requested"], ident["batch_size"])[k] for k in state.batches)
    meta = {
        **ident,
        "n_valid": state.rows,
        "n_dropped": n_done - state.rows,
        "complete": n_done == ident["n_requested"],
        "path": str(store),
    }
    return SimulationSet(theta, x, meta)
