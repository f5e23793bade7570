"""Where ``fit``'s batches come from: tensors in memory, a Dataset, an IterableDataset, or a
SimulationSet whose x is read lazily, chunk by chunk, from zarr.

Every source splits its rows once into a training and a validation part (seeded, the same for
the same seed and data; ``validation_split="stable"`` keeps each row's side when rows are appended), and then gives

* ``train_batches(shuffle)``: one epoch of training batches, tuples of tensors on the device, in an order drawn from
  the generator ``shuffle`` (its state is checkpointed, so a resumed run draws the same orders);
* ``val_batches()``: the validation rows, in a fixed order;
* ``warm_rows(k)``: up to ``k`` training rows (None: see each source) for a module's ``warm_start``.

The sources, chosen by :func:`make_source`:

* ``TensorSource`` (a sequence of tensors with equal first dimension, a ``TensorDataset``, an
  in-memory SimulationSet as ``(theta, x)``): rows split at random, moved to the device once,
  reshuffled every epoch. ``warm_rows(None)``: the whole training split.
* ``DatasetSource`` (a map-style ``torch.utils.data.Dataset`` of tuples): the same split over indices; batches are
  fetched (``__getitems__`` when the dataset has it) and collated with ``default_collate``.
* ``ChunkedSource`` (a SimulationSet whose ``x`` is a lazy array, :class:`physgen.data.LazyArray`):
  the rows are cut at the store's chunks (``x.chunk_rows``); whole chunks go to validation
  (``validation_fraction`` of them, at least one). Each epoch visits the training chunks in a new
  order, a buffer of a few chunks (about ``BUFFER_BYTES``, at least two chunks) at a time, shuffling
  the rows within the buffer; so memory holds about one buffer, whatever the store's size. Batches
  are ``(theta, x)``. ``warm_rows(None)``: one buffer's worth of rows.
* ``StreamSource`` (an ``IterableDataset`` yielding rows, tuples of tensors): read in its own order;
  every ``round(1 / validation_fraction)``-th row is held out and scored at the end of the epoch (at
  most ``BUFFER_BYTES`` of them). A stream that repeats itself gives the same split every epoch.
  ``warm_rows(None)``: the first ``BUFFER_BYTES`` of training rows.

Point sets are batched by size (``bucket_by``, TensorSource and ChunkedSource). With ``bucket_by = "auto"`` (the
default) a tensor of padded point sets ``(n, N_max, d + 1)`` (:mod:`physgen.shapes`: a 0/1 mask in the last column,
real points first, some padding) is detected; ``"mask"`` asks for it (an error when no tensor qualifies), None turns
it off. Each epoch the rows are shuffled as usual, then cut into pools of ``BUCKET_POOL`` batches; within a pool the
rows are sorted by their real count and cut into batches, and the order of all batches is shuffled. Every row is still
visited exactly once per epoch (the epoch's loss is the same sum), batches are drawn afresh every epoch, and each
batch holds sets of similar size, so encoders that trim a batch to its largest real count
(:func:`physgen.nn.point_pairs.trim_padding`) do not pay for the padding of the largest set in the data. Validation
batches go in order of size (fixed).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence, Sized

import torch
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset, TensorDataset, default_collate

from physgen.train.buckets import BUCKET_POOL, bucket_counts, bucketed_batches, point_counts
from physgen.train.split import split_rows

__all__ = [
    "make_source",
    "TensorSource",
    "DatasetSource",
    "ChunkedSource",
    "StreamSource",
    "BUFFER_BYTES",
    "BUCKET_POOL",
    "point_counts",
    "bucketed_batches",
]

BUFFER_BYTES = 64 << 20  # rows shuffled together when reading lazily; also the cap of streamed validation rows
_CHUNK_BYTES = 4 << 20  # rows per chunk when a lazy array does not say (x.chunk_rows)
Batch = tuple[Tensor, ...]


def _val_batch(batch_size: int) -> int:
    return max(batch_size, 1024)


def _row_bytes(t) -> int:
    return math.prod(t.shape[1:]) * torch.empty((), dtype=t.dtype).element_size()


def _as_tuple(row) -> Batch:
    if torch.is_tensor(row):
        return (row,)
    if isinstance(row, (tuple, list)) and all(torch.is_tensor(t) for t in row):
        return tuple(row)
    raise TypeError(f"a dataset row must be a tensor or a tuple of tensors; got {type(row).__name__}")


class TensorSource:
    """Tensors in memory (see the module docstring)."""

    def __init__(
        self,
        tensors: Sequence[Tensor],
        validation_fraction: float,
        seed: int,
        device: torch.device,
        batch_size: int,
        bucket_by: str | None = "auto",
        validation_split: str = "random",
    ) -> None:
        if not tensors or not all(torch.is_tensor(t) for t in tensors):
            raise TypeError("data must be tensors with the same first dimension (or a Dataset, see fit)")
        n = int(tensors[0].shape[0])
        if any(int(t.shape[0]) != n for t in tensors):
            raise ValueError(f"all data tensors need the same first dimension; got {[tuple(t.shape) for t in tensors]}")
        val_idx, train_idx = split_rows(n, validation_fraction, seed, validation_split)
        self.n, self.device, self.batch_size = n, device, batch_size
        counts = bucket_counts(tensors, bucket_by)
        self.counts = None if counts is None else counts[train_idx]
        if counts is not None:  # validation in order of size: its batches trim well too
            val_idx = val_idx[torch.sort(counts[val_idx], stable=True).indices]
        self.train = [t[train_idx].to(device) for t in tensors]
        self.val = [t[val_idx].to(device) for t in tensors]

    def train_batches(self, shuffle: torch.Generator) -> Iterator[Batch]:
        n = self.train[0].shape[0]
        order = torch.randperm(n, generator=shuffle)
        if self.counts is not None:
            for idx in bucketed_batches(order, self.counts, self.batch_size, shuffle):
                idx = idx.to(self.device)
                yield tuple(t[idx] for t in self.train)
            return
        order = order.to(self.device)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield tuple(t[idx] for t in self.train)

    def val_batches(self) -> Iterator[Batch]:
        n, b = self.val[0].shape[0], _val_batch(self.batch_size)
        for start in range(0, n, b):
            yield tuple(t[start : start + b] for t in self.val)

    def warm_rows(self, k: int | None) -> Batch:
        return tuple(self.train) if k is None else tuple(t[:k] for t in self.train)


class DatasetSource:
    """A map-style Dataset of tuples (see the module docstring)."""

    def __init__(
        self,
        dataset: Dataset,
        validation_fraction: float,
        seed: int,
        device: torch.device,
        batch_size: int,
        validation_split: str = "random",
    ) -> None:
        self.dataset, self.device, self.batch_size = dataset, device, batch_size
        if not isinstance(dataset, Sized):
            raise TypeError(f"{type(dataset).__name__} has no __len__: fit needs a map-style Dataset's length")
        self.n = len(dataset)
        self.val_idx, self.train_idx = split_rows(self.n, validation_fraction, seed, validation_split)

    def _fetch(self, idx: Tensor) -> Batch:
        rows = idx.tolist()
        getitems = getattr(self.dataset, "__getitems__", None)
        items = getitems(rows) if getitems is not None else [self.dataset[i] for i in rows]
        batch = _as_tuple(default_collate([_as_tuple(r) for r in items]))
        return tuple(t.to(self.device) for t in batch)

    def train_batches(self, shuffle: torch.Generator) -> Iterator[Batch]:
        order = self.train_idx[torch.randperm(len(self.train_idx), generator=shuffle)]
        for start in range(0, len(order), self.batch_size):
            yield self._fetch(order[start : start + self.batch_size])

    def val_batches(self) -> Iterator[Batch]:
        b = _val_batch(self.batch_size)
        for start in range(0, len(self.val_idx), b):
            yield self._fetch(self.val_idx[start : start + b])

    def warm_rows(self, k: int | None) -> Batch:
        return self._fetch(self.train_idx if k is None else self.train_idx[:k])


def chunk_rows(theta: Tensor, x) -> int:
    """Rows per chunk of a lazy x: ``x.chunk_rows`` when it says, else about 4 MiB of rows."""
    per_row = _row_bytes(x) + _row_bytes(theta)
    return int(getattr(x, "chunk_rows", 0) or max(1, _CHUNK_BYTES // max(per_row, 1)))


class ChunkedSource:
    """A SimulationSet read lazily chunk by chunk (see the module docstring)."""

    def __init__(
        self,
        theta: Tensor,
        x,
        validation_fraction: float,
        seed: int,
        device: torch.device,
        batch_size: int,
        bucket_by: str | None = "auto",
        validation_split: str = "random",
    ) -> None:
        self.theta, self.x, self.device, self.batch_size = theta, x, device, batch_size
        self.n = len(x)
        k = chunk_rows(theta, x)
        per_row = _row_bytes(x) + _row_bytes(theta)
        self.chunks = [(a, min(a + k, self.n)) for a in range(0, self.n, k)]
        val, train = split_rows(len(self.chunks), validation_fraction, seed, validation_split)
        self.val_chunks, self.train_chunks = sorted(val.tolist()), sorted(train.tolist())
        self.buffer_chunks = max(2, BUFFER_BYTES // max(k * per_row, 1))
        self._warm_order = torch.randperm(len(self.train_chunks), generator=torch.Generator().manual_seed(seed + 4))
        # sizes are detected on the first chunk (a lazy store is not read whole here)
        first = self.x[self.chunks[0][0] : self.chunks[0][1]] if bucket_by is not None else None
        self.bucket = bucket_counts([first], bucket_by) is not None if first is not None else False

    def _read(self, c: int) -> tuple[Tensor, Tensor]:
        a, b = self.chunks[c]
        return self.theta[a:b], self.x[a:b]

    def _to_device(self, th: Tensor, x: Tensor) -> Batch:
        return th.to(self.device), x.to(self.device)

    def train_batches(self, shuffle: torch.Generator) -> Iterator[Batch]:
        order = [self.train_chunks[i] for i in torch.randperm(len(self.train_chunks), generator=shuffle).tolist()]
        bs, k = self.batch_size, self.chunks[0][1] - self.chunks[0][0]
        # one buffer for the epoch, filled chunk by chunk in place (no per-group concatenation, so memory
        # holds one buffer, one chunk being read and one batch); rows left over from a group (fewer than a
        # batch) move to its front and join the next group
        cap = self.buffer_chunks * k + bs
        th_buf = torch.empty((cap, *self.theta.shape[1:]), dtype=self.theta.dtype)
        x_buf = torch.empty((cap, *self.x.shape[1:]), dtype=self.x.dtype)
        fill = 0
        for g in range(0, len(order), self.buffer_chunks):
            for c in order[g : g + self.buffer_chunks]:
                th, x = self._read(c)
                th_buf[fill : fill + len(th)], x_buf[fill : fill + len(th)] = th, x
                fill += len(th)
                del th, x
            perm = torch.randperm(fill, generator=shuffle)
            full = (fill // bs) * bs
            if self.bucket:
                counts = (x_buf[:fill, :, -1] > 0.5).sum(-1)
                for idx in bucketed_batches(perm[:full], counts, bs, shuffle):
                    yield self._to_device(th_buf[idx], x_buf[idx])
            else:
                for s in range(0, full, bs):
                    idx = perm[s : s + bs]
                    yield self._to_device(th_buf[idx], x_buf[idx])
            rest = perm[full:]
            fill = len(rest)
            th_buf[:fill], x_buf[:fill] = th_buf[rest], x_buf[rest]
        if fill:
            yield self._to_device(th_buf[:fill], x_buf[:fill])

    def val_batches(self) -> Iterator[Batch]:
        b = _val_batch(self.batch_size)
        for c in self.val_chunks:
            th, x = self._read(c)
            for s in range(0, len(th), b):
                yield self._to_device(th[s : s + b], x[s : s + b])

    def warm_rows(self, k: int | None) -> Batch:
        parts, rows = [], 0
        limit = k if k is not None else self.buffer_chunks * (self.chunks[0][1] - self.chunks[0][0])
        for i in self._warm_order.tolist():
            if rows >= limit:
                break
            parts.append(self._read(self.train_chunks[i]))
            rows += len(parts[-1][0])
        th, x = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        return self._to_device(th[:limit], x[:limit])


class StreamSource:
    """An IterableDataset of rows (see the module docstring)."""

    def __init__(
        self, dataset: IterableDataset, validation_fraction: float, device: torch.device, batch_size: int
    ) -> None:
        self.dataset, self.device, self.batch_size = dataset, device, batch_size
        self.n = None
        self.period = max(2, int(round(1.0 / validation_fraction)))
        self._val: list[Batch] | None = None

    def _collate(self, rows: list[Batch]) -> Batch:
        return tuple(torch.stack(col).to(self.device) for col in zip(*rows))

    def _rows(self) -> Iterator[tuple[bool, Batch]]:
        for i, row in enumerate(self.dataset):
            yield i % self.period == self.period - 1, _as_tuple(row)

    def train_batches(self, shuffle: torch.Generator) -> Iterator[Batch]:
        self._val, val_bytes, buf = None, 0, []
        held: list[Batch] = []
        for is_val, row in self._rows():
            if is_val:
                if val_bytes < BUFFER_BYTES:
                    held.append(row)
                    val_bytes += sum(t.numel() * t.element_size() for t in row)
                continue
            buf.append(row)
            if len(buf) == self.batch_size:
                yield self._collate(buf)
                buf = []
        if buf:
            yield self._collate(buf)
        self._val = held  # a complete pass: its held-out rows are this epoch's validation set

    def val_batches(self) -> Iterator[Batch]:
        held = self._val
        if held is None:  # the epoch stopped early (max_time): collect the held-out rows by another pass
            held, val_bytes = [], 0
            for is_val, row in self._rows():
                if is_val and val_bytes < BUFFER_BYTES:
                    held.append(row)
                    val_bytes += sum(t.numel() * t.element_size() for t in row)
        b = _val_batch(self.batch_size)
        for s in range(0, len(held), b):
            yield self._collate(held[s : s + b])

    def warm_rows(self, k: int | None) -> Batch:
        rows, size = [], 0
        for is_val, row in self._rows():
            if is_val:
                continue
            rows.append(row)
            size += sum(t.numel() * t.element_size() for t in row)
            if (k is not None and len(rows) >= k) or (k is None and size >= BUFFER_BYTES):
                break
        return self._collate(rows)


def make_source(
    data,
    *,
    validation_fraction: float,
    seed: int,
    device: torch.device,
    batch_size: int,
    bucket_by: str | None = "auto",
    validation_split: str = "random",
):
    """The source for ``data`` (see the module docstring); raises TypeError naming what is accepted.

    ``bucket_by``: "auto" (batch padded point sets by size when the data has them), "mask" (require it) or None.
    ``validation_split``: "random" or "stable" (:func:`physgen.train.split.split_rows`; a stream holds out every k-th row either way).
    """
    from physgen.data import SimulationSet

    if isinstance(data, SimulationSet):
        if torch.is_tensor(data.x):
            return TensorSource(
                (data.theta, data.x), validation_fraction, seed, device, batch_size, bucket_by, validation_split
            )
        if len(data.x) <= chunk_rows(data.theta, data.x):  # one chunk: it fits in memory
            return TensorSource(
                (data.theta, data.x[:]), validation_fraction, seed, device, batch_size, bucket_by, validation_split
            )
        return ChunkedSource(
            data.theta, data.x, validation_fraction, seed, device, batch_size, bucket_by, validation_split
        )
    if isinstance(data, TensorDataset):
        return TensorSource(data.tensors, validation_fraction, seed, device, batch_size, bucket_by, validation_split)
    if isinstance(data, IterableDataset):
        return StreamSource(data, validation_fraction, device, batch_size)
    if isinstance(data, Dataset):
        return DatasetSource(data, validation_fraction, seed, device, batch_size, validation_split)
    if isinstance(data, (tuple, list)) and data and all(torch.is_tensor(t) for t in data):
        return TensorSource(data, validation_fraction, seed, device, batch_size, bucket_by, validation_split)
    raise TypeError(
        f"fit cannot read data of type {type(data).__name__}; give tensors with the same first dimension (a tuple), "
        "a torch Dataset of tuples, an IterableDataset of rows, or a physgen SimulationSet (lazy or in memory)"
    )
