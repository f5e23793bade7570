"""Schema of a run config: the file that ``physgen simulate``, ``train`` and ``sample`` share.

The three commands read the same file; each uses its sections (simulate: ``[simulator]``,
``[simulation]``; train: also ``[encoder]``, ``[model]``, ``[train]``; sample: also ``[sample]``)::

    [simulator]
    name = "two_moons"               # a short name (physgen.config.SIMULATORS) or "package.module:Class"
    options = {}                     # keyword arguments of the simulator's constructor

    [simulation]
    n = 10000
    seed = 0
    batch_size = 1000

    [encoder]
    name = ""                        # "" flattens x; "cnn", "deepsets", "set_transformer", "power_spectrum", ...
    options = {}                     # its keyword arguments (shapes come from the simulator's x)

    [model]
    name = "nsf"                     # a family or preset of physgen.models (checked by the command)
    options = {}                     # hyperparameters of the family (e.g. transforms = 5)
    transform = "auto"               # auto (the family's default), none or unconstrained

    [train]
    batch_size = 512                 # 0 or absent: the model family's default
    lr = 0.001                       # 0 or absent: the model family's default
    ...

    [sample]
    n = 10000
    observation = [0.0, 0.0]         # an x, or leave it out and give observation_seed
    observation_seed = 1             # simulate x from θ ~ prior with this seed

    [cluster]                        # where the work runs (docs/scaling.md); results do not depend on it
    scheduler = ""                   # "": this process; "local", "local:N": a dask LocalCluster; "tcp://host:8786"
    workers = 0                      # LocalCluster worker processes (0: one per CPU core)
    timeout = 30                     # seconds to reach the scheduler (and its first worker)
    retries = 2                      # a failed batch is submitted again this many times
    nproc = 1                        # training ranks (torchrun, data-parallel; physgen train --nproc)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from physgen.config.schema import bounded, choice

__all__ = [
    "RunConfig",
    "SimulatorSection",
    "SimulationSection",
    "EncoderSection",
    "ModelSection",
    "TrainSection",
    "SampleSection",
    "ClusterSection",
]


@dataclass
class SimulatorSection:
    """``[simulator]``: which simulator, and its constructor's keyword arguments."""

    name: str = "two_moons"
    options: dict = field(default_factory=dict)


@dataclass
class SimulationSection:
    """``[simulation]``: how many simulations, their seed and the batch size of each call."""

    n: int = bounded(10_000, ge=1)
    seed: int = bounded(0, ge=0)
    batch_size: int = bounded(10_000, ge=1)


@dataclass
class EncoderSection:
    """``[encoder]``: the summary network of x by name (physgen.nn.encoder_for) and its options.

    ``name = ""`` (the default) flattens x; "a+b" concatenates two encoders, with ``options = {a = {...},
    b = {...}}``. The shape arguments come from the simulator's x.
    """

    name: str = ""
    options: dict = field(default_factory=dict)

    def fit_options(self) -> dict[str, Any]:
        """The ``encoder`` and ``encoder_options`` keywords of ``physgen.fit_posterior``."""
        return {"encoder": self.name or None, "encoder_options": dict(self.options) or None}


@dataclass
class ModelSection:
    """``[model]``: the conditional family by name, its hyperparameters and the θ bijection."""

    name: str = "nsf"
    options: dict = field(default_factory=dict)
    transform: str = choice("auto", "none", "unconstrained")


@dataclass
class TrainSection:
    """``[train]``: options of ``physgen.fit_posterior``.

    ``batch_size = 0``, ``lr = 0``, ``max_epochs = 0``, ``patience = 0``, ``ema < 0`` and
    ``schedule = "auto"`` (the defaults) leave the option to the model family; ``ema = 0`` turns the
    weight average off, ``schedule = ""`` means no schedule, ``max_time = 0`` no time limit and
    ``num_threads = 0`` the automatic thread count.
    """

    batch_size: int = bounded(0, ge=0, note="0 leaves it to the model family")
    lr: float = bounded(0.0, ge=0, note="0 leaves it to the model family")
    weight_decay: float = bounded(0.0, ge=0)
    max_epochs: int = bounded(0, ge=0, note="0 leaves it to the model family")
    patience: int = bounded(0, ge=0, note="0 leaves it to the model family")
    min_delta: float = bounded(0.0, ge=0)
    ema: float = bounded(-1.0, lt=1, note="a decay per step in [0, 1), 0 off; negative leaves it to the model family")
    validation_fraction: float = bounded(0.1, gt=0, lt=1)
    clip_norm: float = bounded(5.0, gt=0)
    schedule: str = choice("auto", "plateau", "cosine", "")
    max_time: float = bounded(0.0, ge=0, note="seconds; 0: no limit")
    seed: int = bounded(0, ge=0)
    device: str = "auto"
    num_threads: int = bounded(0, ge=0, note="0: automatic")

    def fit_options(self) -> dict[str, Any]:
        """The keyword arguments of ``physgen.fit_posterior``; options left to the family are absent."""
        options: dict[str, Any] = {
            k: v
            for k, v in (
                ("batch_size", self.batch_size),
                ("lr", self.lr),
                ("max_epochs", self.max_epochs),
                ("patience", self.patience),
            )
            if v
        }
        if self.ema >= 0:
            options["ema"] = self.ema or None
        if self.schedule != "auto":
            options["schedule"] = self.schedule or None
        options.update(
            weight_decay=self.weight_decay,
            min_delta=self.min_delta,
            validation_fraction=self.validation_fraction,
            clip_norm=self.clip_norm,
            max_time=self.max_time or None,
            seed=self.seed,
            device=self.device,
            num_threads=self.num_threads or "auto",
        )
        return options


@dataclass
class SampleSection:
    """``[sample]``: how many samples, for which observation (given, or simulated with a seed)."""

    n: int = bounded(10_000, ge=1)
    observation: list = field(default_factory=list)  # nested for a field or a point set
    observation_seed: int = bounded(1, ge=0)
    seed: int = bounded(0, ge=0)


@dataclass
class ClusterSection:
    """``[cluster]``: where simulation batches run (:func:`physgen.distributed.connect`) and how many training ranks
    (:mod:`physgen.train.ddp`); ``--scheduler`` and ``--nproc`` on the command line override it."""

    scheduler: str = ""
    workers: int = bounded(0, ge=0, note="0: one per CPU core")
    timeout: float = bounded(30.0, gt=0, note="seconds")
    retries: int = bounded(2, ge=0)
    nproc: int = bounded(1, ge=1)


@dataclass
class RunConfig:
    """A run config: ``[simulator]``, ``[simulation]``, ``[encoder]``, ``[model]``, ``[train]``, ``[sample]``,
    ``[cluster]``."""

    simulator: SimulatorSection = field(default_factory=SimulatorSection)
    simulation: SimulationSection = field(default_factory=SimulationSection)
    encoder: EncoderSection = field(default_factory=EncoderSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)
    sample: SampleSection = field(default_factory=SampleSection)
    cluster: ClusterSection = field(default_factory=ClusterSection)
