"""Simulators by name: the short names a config may use, and the one function that builds one.

physgen never imports ``simulators/`` statically: a name resolves to ``"package.module:Class"``, imported
when a command needs it.
"""

from __future__ import annotations

import importlib
from typing import Any

from physgen.config.errors import ConfigError

__all__ = ["SIMULATORS", "resolve_simulator"]

# short name -> "package.module:Class"
SIMULATORS: dict[str, str] = {
    "two_moons": "simulators.sbibm:TwoMoons",
    "gaussian_linear": "simulators.sbibm:GaussianLinear",
    "slcp": "simulators.sbibm:SLCP",
    "gaussian_mixture": "simulators.sbibm:GaussianMixture",
    "gaussian_linear_uniform": "simulators.sbibm:GaussianLinearUniform",
    "slcp_distractors": "simulators.sbibm:SLCPDistractors",
    "bernoulli_glm": "simulators.sbibm:BernoulliGLM",
    "bernoulli_glm_raw": "simulators.sbibm:BernoulliGLMRaw",
    "sir": "simulators.sbibm:SIR",
    "lotka_volterra": "simulators.sbibm:LotkaVolterra",
    "ising": "simulators.ising:Ising",
    "gaussian_field": "simulators.cosmology:GaussianField",
    "lognormal_field": "simulators.cosmology:LognormalField",
    "convergence_map": "simulators.cosmology:ConvergenceMap",
    "nbody": "simulators.cosmology:NBody",
    "thomas_process": "simulators.galaxies:ThomasProcess",
    "cox_process": "simulators.galaxies:CoxProcess",
}


def resolve_simulator(name: str, options: dict[str, Any] | None = None) -> Any:
    """Import and construct the simulator of a ``[simulator]`` section.

    Args:
        name: a key of :data:`SIMULATORS` or ``"package.module:Class"`` (any callable that returns a simulator).
        options: keyword arguments of its constructor.

    Raises:
        ConfigError: an unknown name, a target that cannot be imported, or options the constructor refuses.
    """
    options = dict(options or {})
    target = SIMULATORS.get(name, name)
    if ":" not in target:
        raise ConfigError(
            f"[simulator] name = {name!r} is not a known simulator; allowed: "
            f"{', '.join(repr(s) for s in SIMULATORS)} or 'package.module:Class'"
        )
    module, _, attr = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"[simulator] name = {name!r}: cannot import {target!r} ({err})") from None
    try:
        return factory(**options)
    except TypeError as err:
        raise ConfigError(f"[simulator] options {options} do not fit {target}: {err}") from None
