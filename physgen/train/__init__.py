"""Training: one loop for every family, its data sources, optimizers, weight average and checkpoints.

``fit(module, data, ...)`` (:mod:`physgen.train.loop`; the run's state and its checkpoint round trip:
:mod:`physgen.train.state`) trains anything with ``loss(*batch)``; data come
from :mod:`physgen.train.sources` (tensors, Datasets, lazy zarr SimulationSets), optimizers and
schedules from :mod:`physgen.train.optim`, the moving average from :mod:`physgen.train.ema`, and
:mod:`physgen.train.checkpoint` is the checkpoint format shared with VMC.
"""

from physgen.train.device import num_threads, resolve_device
from physgen.train.loop import FitResult, TrainingError, fit

__all__ = ["fit", "FitResult", "TrainingError", "resolve_device", "num_threads"]
