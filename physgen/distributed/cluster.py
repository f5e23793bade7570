"""Where a simulation campaign runs: this process, a dask LocalCluster started here, or a running scheduler.

    with connect("local:2") as client:            # two worker processes on this machine, one thread each
        physgen.simulate(sim, 100_000, seed=0, batch_size=1000, path="store", executor=client)
    with connect("tcp://10.0.0.5:8786", timeout=30) as client:   # a scheduler started elsewhere
        ...

``scheduler`` is one of:

* ``""`` (or None): no cluster; the campaign runs in this process (``connect`` yields None);
* ``"local"`` or ``"local:N"``: a ``distributed.LocalCluster`` of ``workers`` (or N) worker processes with one
  thread each (``workers = 0``: one per CPU core), closed when the block ends;
* an address, ``"tcp://host:port"`` (``"host:port"`` is read as tcp): a scheduler started elsewhere
  (``dask scheduler``, or a dask-jobqueue cluster's ``scheduler_address``);
* the path of an existing scheduler file (``dask scheduler --scheduler-file FILE``), as on a SLURM cluster.

A scheduler that cannot be reached within ``timeout`` seconds, or that has no worker after ``timeout``
seconds, is a :class:`ClusterError` naming the address and the fix; nothing has been written by then (the
caller connects before it opens a store). Workers must be able to import the simulator's module (installed,
or on their ``PYTHONPATH``); dask's own ``OMP_NUM_THREADS=1`` in each worker keeps results independent of the
machine's thread count.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["ClusterError", "connect", "parse_scheduler"]


class ClusterError(ConnectionError):
    """The dask scheduler cannot be reached, or has no workers (the message names the address and the fix)."""


def parse_scheduler(scheduler: str | None, workers: int = 0) -> tuple[str, int | str | None]:
    """``("none", None)``, ``("local", n_workers)``, ``("file", path)`` or ``("address", "tcp://...")``.

    Raises:
        ValueError: ``local:N`` with N not an int >= 1, or ``workers`` < 0.
    """
    text = (scheduler or "").strip()
    if workers < 0:
        raise ValueError(f"workers must be >= 0 (0: one per CPU core); got {workers}")
    if not text:
        return "none", None
    if text == "local" or text.startswith("local:"):
        n = text.partition(":")[2]
        if n and not (n.isdigit() and int(n) >= 1):
            raise ValueError(f"scheduler {text!r}: give local, or local:N with N >= 1 worker processes")
        return "local", int(n) if n else (workers or os.cpu_count() or 1)
    if "://" not in text and Path(text).is_file():
        return "file", text
    return "address", text if "://" in text else f"tcp://{text}"


@contextlib.contextmanager
def connect(scheduler: str | None, *, workers: int = 0, timeout: float = 30.0) -> Iterator[Any]:
    """A ``distributed.Client`` for ``scheduler`` (module docstring), or None for ``""``; closed at the end
    (with the LocalCluster it started).

    Args:
        scheduler: ``""``, ``"local"``, ``"local:N"``, an address or a scheduler file.
        workers: LocalCluster worker processes for ``"local"`` (0: one per CPU core).
        timeout: seconds to reach the scheduler and to wait for its first worker.

    Raises:
        ClusterError: unreachable scheduler, or no worker within ``timeout``.
        ValueError: a malformed ``local:N``.
        ImportError: dask.distributed is not installed (``pip install 'physgen[distributed]'``).
    """
    kind, where = parse_scheduler(scheduler, workers)
    if kind == "none":
        yield None
        return
    try:
        import distributed
    except ImportError as err:
        raise ImportError(
            "a dask scheduler needs dask.distributed: pip install 'physgen[distributed]' "
            f"(or 'dask[distributed]'); {err}"
        ) from None
    with contextlib.ExitStack() as stack:
        if kind == "local":
            assert isinstance(where, int), "parse_scheduler gives 'local' a worker count"
            cluster = stack.enter_context(
                distributed.LocalCluster(n_workers=where, threads_per_worker=1, processes=True, dashboard_address=None)
            )
            client = stack.enter_context(distributed.Client(cluster))
        else:
            client = stack.enter_context(_client(distributed, kind, str(where), timeout))
            try:
                client.wait_for_workers(1, timeout=timeout)
            except (TimeoutError, OSError) as err:
                raise ClusterError(
                    f"the dask scheduler at {where} has no worker after {timeout:g} s ({err}); start "
                    f"workers (`dask worker {where}`, or scale the dask-jobqueue cluster) or raise "
                    "[cluster] timeout"
                ) from None
        yield client


def _client(distributed, kind: str, where: str, timeout: float):
    try:
        if kind == "file":
            return distributed.Client(scheduler_file=where, timeout=timeout)
        return distributed.Client(where, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as err:
        what = f"the scheduler file {where}" if kind == "file" else where
        raise ClusterError(
            f"cannot reach the dask scheduler at {what} within {timeout:g} s ({' '.join(str(err).split())}); "
            "check the address (the scheduler prints it when it starts: `dask scheduler`), that it is running and "
            "that this machine can reach its port, or run on this machine instead (--scheduler local); nothing "
            "was written"
        ) from None
