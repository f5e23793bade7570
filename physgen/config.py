"""Typed run configurations read from TOML.

A run config has up to four sections; every key is checked: an unknown key is an error that
names it and the allowed keys, and a value of the wrong type names the key and the type.

    [simulator]
    name = "two_moons"               # a short name (see SIMULATORS) or "package.module:Class"
    options = {}                     # keyword arguments of the simulator's constructor

    [simulation]
    n = 10000
    seed = 0
    batch_size = 1000

    [model]
    name = "nsf"                     # nsf, maf, flow_matching, flow_matching_fast, diffusion
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
"""

from __future__ import annotations

import dataclasses
import importlib
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunConfig", "load_config", "parse_config", "ConfigError", "resolve_simulator", "SIMULATORS", "check_keys"]

# short names -> "module:Class"; physgen never imports simulators/ statically.
SIMULATORS = {
    "two_moons": "simulators.benchmarks:TwoMoons",
    "gaussian_linear": "simulators.benchmarks:GaussianLinear",
    "slcp": "simulators.benchmarks:SLCP",
    "gaussian_mixture": "simulators.benchmarks:GaussianMixture",
    "ising": "simulators.ising:Ising",
    "gaussian_field": "simulators.cosmology:GaussianField",
    "lognormal_field": "simulators.cosmology:LognormalField",
    "thomas_process": "simulators.galaxies:ThomasProcess",
}


class ConfigError(ValueError):
    """A configuration file or section is invalid."""


@dataclass
class SimulatorSection:
    name: str = "two_moons"
    options: dict = field(default_factory=dict)


@dataclass
class SimulationSection:
    n: int = 10_000
    seed: int = 0
    batch_size: int = 10_000


@dataclass
class ModelSection:
    name: str = "nsf"
    options: dict = field(default_factory=dict)
    transform: str = "auto"


@dataclass
class TrainSection:
    batch_size: int = 0  # 0 = the model family's default (flows and flow_matching_fast 512, others 256)
    lr: float = 0.0  # 0 = the model family's default (1e-3; flow_matching_fast 2e-3)
    weight_decay: float = 0.0
    max_epochs: int = 0  # 0 = the model family's default (1000; cosine schedules: diffusion 200, flow matching 350)
    patience: int = 0  # 0 = the model family's default (20; flow matching 350: no early stopping)
    min_delta: float = 0.0
    ema: float = -1.0  # < 0 = the model family's default (0.999 for every family); 0 = off
    validation_fraction: float = 0.1
    clip_norm: float = 5.0
    schedule: str = "auto"  # "auto" = the model family's default ("plateau"; flow matching, diffusion "cosine"); "" = none
    max_time: float = 0.0  # 0 = no limit
    seed: int = 0
    device: str = "auto"
    num_threads: int = 0  # 0 = "auto": one thread for networks under 1M parameters (physgen.fit)


@dataclass
class SampleSection:
    n: int = 10_000
    observation: list = field(default_factory=list)
    observation_seed: int = 1
    seed: int = 0


@dataclass
class RunConfig:
    simulator: SimulatorSection = field(default_factory=SimulatorSection)
    simulation: SimulationSection = field(default_factory=SimulationSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)
    sample: SampleSection = field(default_factory=SampleSection)


def check_keys(given: dict, allowed: typing.Iterable[str], where: str) -> None:
    """Raise ConfigError naming the first unknown key and the allowed ones."""
    allowed = list(allowed)
    for key in given:
        if key not in allowed:
            raise ConfigError(f"unknown key {key!r} in {where}; allowed keys: {', '.join(allowed)}")


def _check_type(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp) or tp
    if origin is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{where} must be a {origin.__name__}; got a bool ({value!r})")
    if not isinstance(value, origin):
        raise ConfigError(f"{where} must be of type {origin.__name__}; got {type(value).__name__} ({value!r})")
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"[{where}] must be a table; got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    check_keys(data, fields, f"[{where}]")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, key)
        else:
            kwargs[key] = _check_type(value, tp, f"{where}.{key}" if where else key)
    return cls(**kwargs)


def parse_config(data: dict) -> RunConfig:
    """Build a RunConfig from a dict (as read from TOML), checking keys and types."""
    fields = [f.name for f in dataclasses.fields(RunConfig)]
    check_keys(data, fields, "the config's top level (sections)")
    hints = typing.get_type_hints(RunConfig)
    return RunConfig(**{k: _build(hints[k], v, k) for k, v in data.items()})


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a TOML run config."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from None
    try:
        return parse_config(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def resolve_simulator(section: SimulatorSection):
    """Instantiate the simulator named in a config section."""
    target = SIMULATORS.get(section.name, section.name)
    if ":" not in target:
        raise ConfigError(
            f"unknown simulator {section.name!r}; use one of {', '.join(SIMULATORS)} or 'package.module:Class'"
        )
    module, _, cls = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"cannot import simulator {target!r}: {err}") from None
    try:
        return factory(**section.options)
    except TypeError as err:
        raise ConfigError(f"[simulator] options {section.options} do not fit {target}: {err}") from None
