"""The simulation store behind :func:`physgen.simulate`: a zarr store and a checksummed progress record.

Layout of a store folder::

    progress.json        the record: {"format": 2, "identity", "rows", "done": {k: rows}, "batches": {k: [start,
                         rows, digest]}}, written atomically after every committed batch
    simulations.zarr/    theta (n, D), x (n, *x_shape), batch (n,): rows appended batch by batch
    .physgen.lock        the writer's lock (physgen.lock)

Batch k's valid rows are rows ``[start, start + rows)`` of every array; ``digest`` is
``"<blake2b of its theta bytes>:<blake2b of its x bytes>"`` (128-bit each), recorded when the batch is committed.
Every open (resume, load) checks the record against the store: the record's own consistency (rows add up,
batches contiguous, no batch larger than its size), the arrays' lengths, each row's ``batch`` value, and each
batch's digest, reading the arrays chunk by chunk. A mismatch is a :class:`SimulationError` naming the
batches and the fix: ``repair`` (``physgen simulate --repair``) re-simulates exactly those batches with their
original seeds and checks that the new bytes have the recorded digest. Rows past the record (an append
interrupted by a kill) are cut off; a record with no rows means the store starts again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from physgen.io import atomic_write
from physgen.priors import prior_to_dict

__all__ = [
    "SimulationError",
    "Progress",
    "PROGRESS",
    "ZARR",
    "STORE_FORMAT",
    "digest",
    "read_progress",
    "damaged_batches",
    "damaged_error",
    "identity",
    "append_batch",
    "repair_batches",
    "truncate",
    "start_store",
]

PROGRESS = "progress.json"
ZARR = "simulations.zarr"
STORE_FORMAT = 2
CHUNK_BYTES = 4 << 20  # bytes per zarr chunk of each stored array (rows along `sample`)
_ARRAYS = ("theta", "x", "batch")


class SimulationError(RuntimeError):
    """A campaign cannot produce data: every row invalid, a store of another campaign, or a damaged store."""


def _describe(value, depth: int = 0):
    """A JSON-able, process-independent description of a simulator attribute (for its identity)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if np.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [_describe(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): _describe(v, depth + 1) for k, v in value.items()}
    if torch.is_tensor(value) or isinstance(value, np.ndarray):
        arr = value.detach().cpu().numpy() if torch.is_tensor(value) else value
        return {
            "array": list(arr.shape),
            "dtype": str(arr.dtype),
            "blake2b": hashlib.blake2b(np.ascontiguousarray(arr).tobytes(), digest_size=8).hexdigest(),
        }
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    if depth < 3 and hasattr(value, "__dict__") and not callable(value):
        return {"type": kind, **{k: _describe(v, depth + 1) for k, v in sorted(vars(value).items())}}
    return kind


def _simulator_config(simulator) -> dict:
    """The simulator's options: its ``config`` when it declares one, else a description of its attributes (so
    that a custom simulator's options are part of the campaign's identity too)."""
    config = getattr(simulator, "config", None)
    if isinstance(config, dict):
        return _describe(config)
    return {k: _describe(v) for k, v in sorted(vars(simulator).items()) if k != "prior"}


def identity(simulator, n: int, seed: int, batch_size: int) -> dict:
    """The campaign's identity, recorded in the store and compared on every open: the simulator (name, class,
    options), x's shape, the prior, n, the seed and the batch size."""
    from physgen import __version__

    cls = type(simulator)
    return {
        "simulator": getattr(simulator, "name", cls.__name__),
        "simulator_class": f"{cls.__module__}.{cls.__qualname__}",
        "config": _simulator_config(simulator),
        "x_shape": list(simulator.x_shape),
        "prior": prior_to_dict(simulator.prior),
        "n_requested": n,
        "seed": seed,
        "batch_size": batch_size,
        "physgen_version": __version__,
    }


def digest(theta: np.ndarray, x: np.ndarray) -> str:
    """The recorded checksum of one batch's rows: ``"<theta blake2b>:<x blake2b>"`` (hex)."""
    return ":".join(hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=16).hexdigest() for a in (theta, x))


@dataclass
class Progress:
    """The progress record. ``batches``: k -> (start row, valid rows, digest or None for a format-1 record)."""

    identity: dict
    rows: int = 0
    batches: dict[int, tuple[int, int, str | None]] = field(default_factory=dict)

    @property
    def done(self) -> dict[int, int]:
        return {k: b[1] for k, b in self.batches.items()}

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": STORE_FORMAT,
                "identity": self.identity,
                "rows": self.rows,
                "done": {str(k): b[1] for k, b in self.batches.items()},
                "batches": {str(k): list(b) for k, b in self.batches.items()},
            }
        )

    def write(self, store: Path) -> None:
        atomic_write(store / PROGRESS, self.to_json())


def _fail(store: Path, what: str, fix: str = "restart") -> SimulationError:
    fixes = {
        "restart": "start the campaign again (`physgen simulate ... --restart`, or delete the folder)",
        "repair": "re-simulate the damaged batches with their original seeds (`--repair` on the command: "
        "physgen simulate|train|run CONFIG --run-dir DIR --repair; or physgen.simulate(..., "
        "repair=True))",
    }
    return SimulationError(f"{store}: {what}; {fixes[fix]}")


def read_progress(store: Path, sizes: list[int] | None = None) -> Progress | None:
    """The record of ``store`` (None when there is none), checked for consistency.

    Args:
        sizes: the campaign's batch sizes (to check each batch's row count); None reads them from the record.

    Raises:
        SimulationError: unreadable or inconsistent; the message names what is wrong.
    """
    path = store / PROGRESS
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
        identity, rows = state["identity"], int(state["rows"])
        if "batches" in state:
            batches: dict[int, tuple[int, int, str | None]] = {
                int(k): (int(v[0]), int(v[1]), str(v[2])) for k, v in state["batches"].items()
            }
        else:  # format 1: no starts or digests; batches were committed in order
            batches, start = {}, 0
            for k in sorted(int(k) for k in state["done"]):
                m = int(state["done"][str(k)])
                batches[k], start = (start, m, None), start + m
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        raise _fail(store, f"its progress record {PROGRESS} is unreadable ({type(err).__name__}: {err})") from None
    if sizes is None:
        n, bs = int(identity.get("n_requested", 0)), int(identity.get("batch_size", 1))
        sizes = [min(bs, n - s) for s in range(0, n, max(bs, 1))]
    start = 0
    for k, (s, m, _) in sorted(batches.items(), key=lambda kv: kv[1][0]):
        if not 0 <= k < len(sizes):
            raise _fail(store, f"its progress record lists batch {k}, but the campaign has {len(sizes)} batches")
        if not 0 <= m <= sizes[k]:
            raise _fail(store, f"its progress record gives batch {k} {m} rows, more than its size {sizes[k]}")
        if s != start:
            raise _fail(
                store,
                f"its progress record places batch {k} at row {s}, but the batches before it end at "
                f"row {start} (batches overlap or leave a gap)",
            )
        start += m
    if start != rows:
        raise _fail(store, f"its progress record counts {rows} rows, but its batches hold {start}")
    return Progress(identity, rows, batches)


def _group(store: Path, mode: Literal["r", "r+", "a", "w", "w-"] = "r"):
    import zarr

    try:
        return zarr.open_group(str(store / ZARR), mode=mode)
    except Exception as err:  # noqa: BLE001 - any failure to read the metadata is the same fault
        raise _fail(store, f"the zarr store's metadata is unreadable ({type(err).__name__}: {err})") from None


def damaged_batches(store: Path, progress: Progress) -> dict[int, str]:
    """Batch -> what is wrong with its rows (empty: every committed row matches the record).

    Reads every array chunk by chunk (one chunk in memory at a time) and compares each batch's digest,
    its ``batch`` values and the arrays' lengths with the record.

    Raises:
        SimulationError: the store's metadata is unreadable or an array is missing.
    """
    if progress.rows == 0:
        return {}
    group = _group(store)
    order = sorted(progress.batches.items(), key=lambda kv: kv[1][0])
    bad: dict[int, str] = {}
    hashers = {name: {k: hashlib.blake2b(digest_size=16) for k, _ in order} for name in ("theta", "x")}
    for name in _ARRAYS:
        if name not in group:
            raise _fail(store, f"the zarr store has no array {name!r}")
        arr = group[name]
        length = int(arr.shape[0])
        step = int(arr.chunks[0])
        for lo in range(0, progress.rows, step):
            hi = min(lo + step, progress.rows)
            inside = [(k, b) for k, b in order if b[0] < hi and b[0] + b[1] > lo]
            for k, (s, m, _) in inside:
                if s + m > length:
                    bad.setdefault(k, f"rows missing ({name} holds {length} of the {progress.rows} recorded rows)")
            hi = min(hi, length)
            if hi <= lo:
                continue
            try:
                block = arr[lo:hi]
            except Exception as err:  # noqa: BLE001 - a chunk that cannot be decoded, whatever the codec says
                for k, _ in inside:
                    bad.setdefault(k, f"{name} unreadable ({type(err).__name__}: {err})")
                continue
            for k, (s, m, _) in inside:
                if s >= hi:
                    continue
                part = block[max(s, lo) - lo : min(s + m, hi) - lo]
                if name == "batch":
                    if not np.all(part == k):
                        bad.setdefault(k, "rows carry another batch's number")
                else:
                    hashers[name][k].update(np.ascontiguousarray(part).tobytes())
    for k, (_, _, recorded) in order:
        if k not in bad and recorded is not None:
            if f"{hashers['theta'][k].hexdigest()}:{hashers['x'][k].hexdigest()}" != recorded:
                bad[k] = "checksum mismatch"
    return bad


def damaged_error(store: Path, bad: dict[int, str]) -> SimulationError:
    """The error for damaged batches, naming them (the first few reasons) and the repair."""
    ks = sorted(bad)
    listed = ", ".join(str(k) for k in ks[:20]) + (f" ... ({len(ks)} in all)" if len(ks) > 20 else "")
    reasons = "; ".join(f"batch {k}: {bad[k]}" for k in ks[:3])
    return _fail(store, f"batches {listed} do not match the progress record ({reasons})", "repair")


def start_store(store: Path, identity: dict) -> Progress:
    """A fresh store: any previous zarr data removed and an empty record written (before any batch runs, so
    that a kill during the first batch's write leaves a store that resumes)."""
    shutil.rmtree(store / ZARR, ignore_errors=True)
    store.mkdir(parents=True, exist_ok=True)
    progress = Progress(identity)
    progress.write(store)
    return progress


def truncate(store: Path, rows: int) -> None:
    """Cut arrays back to the committed rows (an append interrupted after resizing)."""
    if not (store / ZARR / "zarr.json").exists():
        return
    group = _group(store, "r+")
    for name in _ARRAYS:
        if name in group and group[name].shape[0] > rows:
            group[name].resize((rows, *group[name].shape[1:]))


def append_batch(
    store: Path, progress: Progress, k: int, theta: np.ndarray, x: np.ndarray, *, chunk_bytes: int = CHUNK_BYTES
) -> None:
    """Append batch k's valid rows to the arrays, then commit it in the record (atomically); a new store's
    arrays get about ``chunk_bytes`` of rows per chunk."""
    import xarray as xr

    if len(theta):
        xdims = [f"x_dim_{i}" for i in range(x.ndim - 1)]
        ds = xr.Dataset(
            {
                "theta": (("sample", "theta_dim"), theta),
                "x": (("sample", *xdims), x),
                "batch": (("sample",), np.full(len(theta), k, dtype=np.int64)),
            }
        )
        if progress.rows == 0:
            ds.attrs["physgen_identity"] = json.dumps(progress.identity)
            # about CHUNK_BYTES of rows per chunk, whole along every other axis
            encoding = {
                name: {"chunks": (max(1, chunk_bytes // max(1, v[0].nbytes)), *v.shape[1:])}
                for name, v in ds.data_vars.items()
            }
            ds.to_zarr(store / ZARR, mode="w", consolidated=False, encoding=encoding)
        else:
            ds.to_zarr(store / ZARR, append_dim="sample", consolidated=False)
    progress.batches[k] = (progress.rows, len(theta), digest(theta, x))
    progress.rows += len(theta)
    progress.write(store)


def repair_batches(
    store: Path, progress: Progress, bad: dict[int, str], resimulate: Callable[[int], tuple[np.ndarray, np.ndarray]]
) -> None:
    """Rewrite the damaged batches' rows in place from ``resimulate(k) -> (theta, x)`` (valid rows only).

    Contiguous damaged batches are written together, so a chunk that cannot be decoded (all of whose rows
    belong to damaged batches) is replaced whole. Each new batch must have the recorded row count and digest.

    Raises:
        SimulationError: a re-simulated batch differs from the record (the simulator is not reproducible).
    """
    group = _group(store, "r+")
    for name in _ARRAYS:
        if group[name].shape[0] < progress.rows:
            group[name].resize((progress.rows, *group[name].shape[1:]))
    runs: list[list[int]] = []
    for k in sorted(bad, key=lambda k: progress.batches[k][0]):
        if runs and sum(progress.batches[runs[-1][-1]][:2]) == progress.batches[k][0]:
            runs[-1].append(k)
        else:
            runs.append([k])
    for run in runs:
        parts = []
        for k in run:
            theta, x = resimulate(k)
            start, rows, recorded = progress.batches[k]
            if len(theta) != rows or (recorded is not None and digest(theta, x) != recorded):
                raise _fail(
                    store,
                    f"batch {k} simulated again differs from the recorded one ({len(theta)} rows, "
                    f"recorded {rows}): the simulator does not reproduce its output from the seed, "
                    "so the store cannot be repaired",
                )
            parts.append((theta, x, np.full(len(theta), k, dtype=np.int64)))
        lo = progress.batches[run[0]][0]
        hi = lo + sum(len(p[0]) for p in parts)
        for i, name in enumerate(_ARRAYS):
            if hi > lo:
                group[name][lo:hi] = np.concatenate([p[i] for p in parts])
