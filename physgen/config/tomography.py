"""Schema of a tomography config (``physgen tomography CONFIG.toml``); see ``examples/quantum/tomography_*.toml``.

A top-level ``name`` and the tables ``[state]`` (the exact state that is measured), ``[measurement]``
(which shots), ``[model]`` (the wavefunction, with a free sub-table ``[model.options]`` of its
constructor's keyword arguments) and ``[train]`` (the fit).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from physgen.config.schema import bounded, choice

__all__ = ["TomographyConfig", "StateSection", "MeasurementSection", "TomographyModelSection", "TomographyTrainSection"]


@dataclass
class StateSection:
    """``[state]``: the exact state, ``kind`` in ``tfim | ghz | w``.

    ``h, J, periodic`` apply to ``tfim``; ``phase`` to ``ghz`` (relative phase of ``|1..1>``)
    and ``w`` (phase ``j * phase`` on the component with site j flipped).
    """

    kind: str = choice("tfim", "ghz", "w")
    n_sites: int = bounded(10, ge=2)
    h: float = 1.0
    J: float = 1.0
    periodic: bool = False
    phase: float = 0.0


@dataclass
class MeasurementSection:
    """``[measurement]``: ``z_shots`` in the all-Z basis plus ``shots_per_basis`` in each extra basis.

    Extra bases: ``scheme = "none" | "random" | "pairs" | "global"`` (random: ``n_bases`` bases with at
    most ``max_non_z`` non-Z sites drawn from ``letters``; pairs: every letter pair on neighbouring
    sites; global: ``X^N`` and ``Y X^(N-1)``) and/or an explicit list ``bases``. ``records`` loads a
    saved records file instead.
    """

    z_shots: int = bounded(10000, ge=0)
    scheme: str = choice("none", "random", "pairs", "global")
    n_bases: int = bounded(0, ge=0)
    max_non_z: int = bounded(2, ge=0)
    letters: str = "XY"
    bases: list[str] = field(default_factory=list)
    shots_per_basis: int = bounded(0, ge=0)
    records: str = ""
    seed: int = bounded(0, ge=0)


@dataclass
class TomographyModelSection:
    """``[model]``: ``kind`` in ``rnn | transformer | rbm``; ``options`` are the class's keyword arguments."""

    kind: str = choice("rnn", "transformer", "rbm")
    options: dict = field(default_factory=dict)
    seed: int = bounded(0, ge=0)


@dataclass
class TomographyTrainSection:
    """``[train]``: the options of ``physgen.quantum.tomography.fit_tomography``."""

    epochs: int = bounded(30, ge=1)
    batch_size: int = bounded(200, ge=1)
    lr: float = bounded(5e-3, gt=0)
    schedule: str = "cosine"
    method: str = "auto"
    eval_every: int = bounded(5, ge=1)
    max_grad_norm: float = bounded(10.0, gt=0)
    device: str = "cpu"
    seed: int = bounded(0, ge=0)
    progress: bool = True


@dataclass
class TomographyConfig:
    """A tomography config: ``name``, ``[state]``, ``[measurement]``, ``[model]``, ``[train]``."""

    name: str = "tomography"
    state: StateSection = field(default_factory=StateSection)
    measurement: MeasurementSection = field(default_factory=MeasurementSection)
    model: TomographyModelSection = field(default_factory=TomographyModelSection)
    train: TomographyTrainSection = field(default_factory=TomographyTrainSection)
