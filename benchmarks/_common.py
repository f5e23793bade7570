"""Shared helpers of the benchmark scripts: machine description, timing, RESULT line."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch


def machine() -> dict:
    """Platform, cores, torch version/threads and the date: printed with every figure."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def prior_observations(task, n: int, seed: int = 1000) -> torch.Tensor:
    """x_o ``(n, *x_shape)`` simulated from θ ~ prior, one generator seeded with ``seed`` for both (the
    observations every NPE benchmark scores on)."""
    from physgen.priors import sample_prior

    gen = torch.Generator().manual_seed(seed)
    return task.simulate(sample_prior(task.prior, (n,), generator=gen), generator=gen)


def median_time(fn: Callable[[], object], repeats: int = 3) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs (seconds)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def result_line(figures: dict) -> str:
    """The closing ``RESULT {json}`` line of every benchmark script."""
    return "RESULT " + json.dumps(figures, sort_keys=True, default=float)


class NullTracker:
    """An sbi experiment tracker that records nothing: sbi's default writes TensorBoard logs to ``./sbi-logs/``
    in the working directory; the benchmarks write nothing outside their own output."""

    log_dir = None

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        pass

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        pass

    def log_params(self, params: dict) -> None:
        pass

    def add_figure(self, name: str, figure: object, step: int | None = None) -> None:
        pass

    def flush(self) -> None:
        pass


def sbi_quiet(trainer_cls: type) -> dict:
    """Keyword arguments for an sbi trainer (``NPE(prior=..., **sbi_quiet(NPE))``) that keep it from writing
    ``./sbi-logs/``: a tracker that records nothing (sbi >= 0.25), else a TensorBoard writer in a temp dir."""
    import inspect
    import tempfile

    if "tracker" in inspect.signature(trainer_cls.__init__).parameters:
        return {"tracker": NullTracker()}
    from torch.utils.tensorboard import SummaryWriter

    return {"summary_writer": SummaryWriter(tempfile.mkdtemp(prefix="physgen-sbi-logs-"))}
