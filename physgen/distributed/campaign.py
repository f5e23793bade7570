"""A campaign's batches, run on an executor and committed to the store in batch order.

Batch k of a campaign of n simulations has ``min(batch_size, n - k * batch_size)`` rows; it draws θ from the
prior and x from the simulator with one generator seeded from ``(seed, k)`` (numpy ``SeedSequence``), so its
numbers depend on nothing but the seed and k: not on the executor, the worker or the order of completion.

On an executor (a ``concurrent.futures.Executor``, or a dask ``Client`` or ``ClientExecutor``, used through
``client.get_executor(pure=False)`` with the executor's other options) at most ``ahead`` batches past the first unfinished one are handed out
at a time (default: twice the executor's worker slots plus two; a dask cluster's slots are re-read as
workers join or leave), so memory holds a bounded number of results whatever the campaign's size. A batch
whose task fails (an exception, or a dask ``KilledWorker``) is submitted again, up to ``retries`` times; then
the campaign stops with a :class:`~physgen.store.SimulationError` naming the batch, and every batch
committed so far stays committed. A worker that dies is dask's business: its tasks run again elsewhere.

Committing (:func:`fill_store`): finished batches are appended to the zarr store in batch order, so the
store's bytes are those of a one-process run whatever the number of workers. A batch that finishes before
the batches in front of it is written at once to ``<store>/pending/batch_<k>.npz`` (atomically, with its
checksum) and appended when its turn comes; a killed client therefore loses no finished batch: the same
command reads the pending files (checking each checksum; a bad file is simulated again), submits only the
batches still missing and appends in order. The pending folder is emptied by then and removed at the end.
A kill during an append may also leave zarr's temporary chunk files (``*.partial``): they are removed when the
store is opened again, with the rows past the last commit, so a resumed store holds the same files as a
one-process run.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from pathlib import Path

import numpy as np
import torch

from physgen.io import atomic_write
from physgen.lock import LOCK_NAME, FolderLockedError, folder_lock
from physgen.priors import sample_prior
from physgen.store import (
    PROGRESS,
    ZARR,
    Progress,
    SimulationError,
    append_batch,
    damaged_batches,
    damaged_error,
    digest,
    read_progress,
    repair_batches,
    start_store,
    truncate,
)

__all__ = [
    "batch_seed",
    "simulate_batch",
    "valid_rows",
    "batch_sizes",
    "run_batches",
    "open_store",
    "fill_store",
    "store_lock",
    "PENDING",
]

PENDING = "pending"
_SLOTS_EVERY = 1.0  # seconds between two reads of a dask cluster's worker slots


def batch_seed(seed: int, k: int) -> int:
    """The seed of batch k of the campaign with root ``seed`` (a 63-bit int)."""
    return int(np.random.SeedSequence([int(seed), int(k)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def simulate_batch(simulator, m: int, seed: int, device: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch: θ ``(m, D)`` from the prior and x ``(m, *x_shape)``, as CPU numpy arrays."""
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        theta = sample_prior(simulator.prior, (m,), generator=gen).to(device)
        x = simulator.simulate(theta, generator=gen)
    return theta.cpu().numpy(), x.cpu().numpy()


def valid_rows(theta: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows whose x is finite everywhere (physgen.data's NaN policy)."""
    ok = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    return theta[ok], x[ok]


def batch_sizes(n: int, batch_size: int) -> list[int]:
    """Rows of each batch of a campaign of ``n`` simulations."""
    return [min(batch_size, n - s) for s in range(0, n, batch_size)]


def _as_executor(executor) -> tuple[Executor, Callable[[], int]]:
    """(a concurrent.futures executor, a function giving its worker slots now)."""
    if not isinstance(executor, Executor) and hasattr(executor, "get_executor"):  # a dask Client
        client = executor
        return client.get_executor(pure=False), lambda: sum(client.nthreads().values())
    client = getattr(executor, "_client", None)  # a dask ClientExecutor: made impure, so that a retry runs again
    if client is not None and hasattr(client, "get_executor"):
        options = {k: v for k, v in getattr(executor, "_kwargs", {}).items() if k != "pure"}
        return client.get_executor(pure=False, **options), lambda: sum(client.nthreads().values())
    slots = int(getattr(executor, "_max_workers", 0) or 1)
    return executor, lambda: slots


def run_batches(
    simulator,
    todo: list[int],
    sizes: list[int],
    seed: int,
    executor,
    device: str,
    *,
    retries: int = 2,
    ahead: int | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(k, theta, x)`` for each batch k of ``todo`` (in order without an executor, in order of completion
    with one); at most ``ahead`` batches past the first one not yet yielded are submitted (module docstring).

    Raises:
        SimulationError: a batch failed ``retries + 1`` times (the last error named).
    """
    if executor is None:
        for k in todo:
            yield (k, *simulate_batch(simulator, sizes[k], batch_seed(seed, k), device))
        return
    pool, slots = _as_executor(executor)
    futures: dict = {}  # future -> k
    attempts = dict.fromkeys(todo, 0)
    done: set[int] = set()
    low = nxt = 0  # todo[low]: the first batch not yet yielded; todo[nxt]: the next one to submit
    width, read_at = 0, -_SLOTS_EVERY

    def submit(k: int) -> None:
        attempts[k] += 1
        futures[pool.submit(simulate_batch, simulator, sizes[k], batch_seed(seed, k), device)] = k

    try:
        while low < len(todo):
            if ahead is None and time.monotonic() - read_at >= _SLOTS_EVERY:
                width, read_at = 2 * max(1, slots()) + 2, time.monotonic()
            while nxt < len(todo) and nxt < low + (ahead or width):
                submit(todo[nxt])
                nxt += 1
            finished, _ = wait(list(futures), return_when=FIRST_COMPLETED)
            for future in finished:
                k = futures.pop(future)
                try:
                    theta, x = future.result()
                except Exception as err:  # noqa: BLE001 - a simulator error, a lost worker: retried, then named
                    if attempts[k] > retries:
                        raise SimulationError(
                            f"batch {k} failed {attempts[k]} times; last error: {type(err).__name__}: "
                            f"{' '.join(str(err).split())[:300]}. The batches finished before are kept: fix the "
                            "cause and run the same command again to resume"
                        ) from err
                    submit(k)
                    continue
                done.add(k)
                yield k, theta, x
            while low < len(todo) and todo[low] in done:
                low += 1
    finally:
        for future in futures:
            future.cancel()


# ----------------------------------------------------------------------------- the store


def open_store(
    store: Path,
    ident: dict,
    sizes: list[int],
    *,
    repair: bool,
    restart: bool,
    resimulate: Callable[[int], tuple[np.ndarray, np.ndarray]],
) -> Progress:
    """The store's checked record (a new one for a new store); damaged batches repaired or refused; a store of
    another campaign refused naming the difference (``restart``: emptied instead).

    Raises:
        SimulationError: another campaign, a folder that is not a store, or damaged batches (named).
    """
    state = read_progress(store, sizes) if not restart else _read_or_none(store, sizes)
    if state is None:
        if store.exists() and any(p.name != LOCK_NAME for p in store.iterdir()) and not restart:
            raise SimulationError(
                f"{store} exists, is not empty and is not a physgen simulation store; choose another path"
            )
        return _fresh(store, ident)
    named = _difference(state.identity, ident)
    if named:
        if restart:
            return _fresh(store, ident)
        raise SimulationError(
            f"{store} holds another campaign ({named}); use another path, or start afresh with "
            "`--restart` (physgen.simulate(..., restart=True)), which deletes the stored simulations"
        )
    if state.rows == 0:  # nothing committed (a kill during the first write): any zarr data is a leftover
        return start_store(store, ident) if not state.batches else state
    for leftover in (store / ZARR).rglob("*.partial"):  # zarr writes <chunk>.<hex>.partial, then renames it
        leftover.unlink(missing_ok=True)
    truncate(store, state.rows)
    bad = damaged_batches(store, state)
    if bad and repair:
        repair_batches(store, state, bad, resimulate)
        bad = damaged_batches(store, state)
    if bad:
        raise damaged_error(store, bad)
    if any(b[2] is None for b in state.batches.values()):
        warnings.warn(
            f"{store} was written by an earlier physgen without checksums: its rows cannot be verified", stacklevel=4
        )
    return state


def _difference(theirs: dict, ident: dict) -> str:
    """``"seed: stored 0, requested 1; ..."``: how campaign ``ident`` differs from the stored one ("" if not)."""
    diff = {k: (theirs[k], v) for k, v in ident.items() if k != "physgen_version" and k in theirs and theirs[k] != v}
    return "; ".join(f"{k}: stored {_short(a)}, requested {_short(b)}" for k, (a, b) in diff.items())


@contextlib.contextmanager
def store_lock(store: Path, ident: dict) -> Iterator[None]:
    """The store's writer lock for the block; a campaign running on it refuses this one, naming how the two differ
    when they are different campaigns (FolderLockedError)."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(folder_lock(store))
        except FolderLockedError as err:
            try:
                theirs = json.loads((store / PROGRESS).read_text())["identity"]
            except (OSError, ValueError, KeyError, TypeError):
                theirs = {}
            named = _difference(theirs, ident)
            raise FolderLockedError(f"{err}" + (f" (and it runs another campaign: {named})" if named else "")) from None
        yield


def _fresh(store: Path, ident: dict) -> Progress:
    shutil.rmtree(store / PENDING, ignore_errors=True)  # another campaign's finished batches
    return start_store(store, ident)


def _read_or_none(store: Path, sizes: list[int]) -> Progress | None:
    try:  # an unreadable record is replaced when the campaign restarts
        return read_progress(store, sizes)
    except SimulationError:
        return None


def _short(value, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _spill(store: Path, k: int, theta: np.ndarray, x: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, theta=theta, x=x, digest=np.array(digest(theta, x)))
    atomic_write(store / PENDING / f"batch_{k}.npz", buf.getvalue())


def _pending(store: Path, todo: set[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Batches an earlier client finished but did not append (checked; stale or damaged files removed)."""
    out = {}
    for path in sorted((store / PENDING).glob("batch_*.npz")):
        k = int(path.stem.rpartition("_")[2]) if path.stem.rpartition("_")[2].isdigit() else -1
        try:
            with np.load(path, allow_pickle=False) as f:
                theta, x, recorded = f["theta"], f["x"], str(f["digest"])
        except (OSError, ValueError, KeyError):
            recorded = None
        if k in todo and recorded is not None and digest(theta, x) == recorded:
            out[k] = (theta, x)
        else:
            path.unlink(missing_ok=True)
    return out


def fill_store(
    simulator,
    store: Path,
    state: Progress,
    sizes: list[int],
    seed: int,
    *,
    executor,
    device: str,
    progress: bool,
    retries: int,
    chunk_bytes: int,
    ahead: int | None = None,
) -> None:
    """Simulate the batches ``state`` lacks and append them in batch order (module docstring)."""
    from tqdm.auto import tqdm

    todo = [k for k in range(len(sizes)) if k not in state.batches]
    held = _pending(store, set(todo))
    bar = tqdm(total=len(sizes), initial=len(sizes) - len(todo), disable=not progress, desc="simulate", unit="batch")
    front = 0  # todo[front]: the next batch to append

    def commit() -> None:
        nonlocal front
        while front < len(todo) and todo[front] in held:
            k = todo[front]
            append_batch(store, state, k, *held.pop(k), chunk_bytes=chunk_bytes)
            (store / PENDING / f"batch_{k}.npz").unlink(missing_ok=True)
            front += 1
            bar.update(1)

    commit()
    run = [k for k in todo[front:] if k not in held]
    for k, theta, x in run_batches(simulator, run, sizes, seed, executor, device, retries=retries, ahead=ahead):
        held[k] = valid_rows(theta, x)
        if k != todo[front]:
            _spill(store, k, *held[k])
        commit()
    bar.close()
    shutil.rmtree(store / PENDING, ignore_errors=True)
