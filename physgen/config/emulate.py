"""Schema of an emulator config: the file that ``physgen emulate`` reads.

It shares ``[simulator]``, ``[simulation]`` and ``[train]`` with the run config
(:mod:`physgen.config.run`); ``[model]`` names the emulator family, and ``[emulate]`` says how the emulator
is compared with the simulator::

    [model]
    name = "flow_matching"           # flow_matching, diffusion, gan, vae, nsf / maf (vector x), ...
    options = {}                     # hyperparameters of the family (and of its default network)
    network = {}                     # the network by name and options, e.g. {name = "unet", channels = [32, 64]}
    target_standardization = ""      # "" (per element for vectors, per channel for fields), feature, global, none
    x_transform = "none"             # none, log (x > 0), log1p (x > -1): learn u = ln(x + s), return x = e^u - s

    [emulate]
    num_theta = 20                   # parameter sets drawn from the prior for the comparison
    num_per_theta = 64               # simulations and emulated samples per parameter set
    statistics = {}                  # options of the comparison (e.g. {bins = 16})
    downstream = {}                  # non-empty: posteriors trained on emulated and on simulated data compared
                                     # by C2ST; keys: num_observations, num_samples and fit_posterior's
                                     # (model, encoder, max_epochs, ...)
    seed = 0
"""

from __future__ import annotations

from dataclasses import dataclass, field

from physgen.config.run import SimulationSection, SimulatorSection, TrainSection
from physgen.config.schema import bounded, choice

__all__ = ["EmulateConfig", "EmulatorModelSection", "EmulateSection"]


@dataclass
class EmulatorModelSection:
    """``[model]`` of an emulator: the family, its options, its network, the x standardisation and x's pointwise map."""

    name: str = "flow_matching"
    options: dict = field(default_factory=dict)
    network: dict = field(default_factory=dict)
    target_standardization: str = choice("", "feature", "channel", "global", "none")
    x_transform: str = choice("none", "log", "log1p")


@dataclass
class EmulateSection:
    """``[emulate]``: the simulator-vs-emulator comparison at ``num_theta`` prior draws."""

    num_theta: int = bounded(20, ge=1)
    num_per_theta: int = bounded(64, ge=2)
    statistics: dict = field(default_factory=dict)
    downstream: dict = field(default_factory=dict)
    seed: int = bounded(0, ge=0)


@dataclass
class EmulateConfig:
    """An emulator config: ``[simulator]``, ``[simulation]``, ``[model]``, ``[train]``, ``[emulate]``."""

    simulator: SimulatorSection = field(default_factory=SimulatorSection)
    simulation: SimulationSection = field(default_factory=SimulationSection)
    model: EmulatorModelSection = field(default_factory=EmulatorModelSection)
    train: TrainSection = field(default_factory=TrainSection)
    emulate: EmulateSection = field(default_factory=EmulateSection)
