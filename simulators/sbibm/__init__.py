"""The sbibm benchmark tasks (Lueckmann et al. 2021): gaussian_linear, two_moons, slcp, gaussian_mixture.

Definitions follow ``sbibm/tasks/*/task.py`` (priors, simulators, noise); each task's math, and the
two deliberate departures from sbibm's code, are in its module docstring. Every task follows the
``physgen.core.Simulator`` protocol with an exact ``log_likelihood``; θ outside the prior box has
prior log-probability -inf. ``reference_posterior(x_obs, n, seed=...)`` takes ``x_obs: (F,)`` and
returns ``(n, D)`` on ``x_obs``'s device; the same seed gives the same samples.
"""

from __future__ import annotations

from physgen.core import Simulator
from simulators.sbibm.gaussian_linear import GaussianLinear
from simulators.sbibm.gaussian_mixture import GaussianMixture
from simulators.sbibm.slcp import SLCP
from simulators.sbibm.two_moons import TwoMoons

__all__ = ["GaussianLinear", "TwoMoons", "SLCP", "GaussianMixture", "TASKS", "get_task"]

TASKS: dict[str, type] = {
    "gaussian_linear": GaussianLinear,
    "two_moons": TwoMoons,
    "slcp": SLCP,
    "gaussian_mixture": GaussianMixture,
}


def get_task(name: str, **kwargs) -> Simulator:
    """Build a benchmark task by name (``TASKS`` keys); kwargs go to its constructor.

    Raises:
        ValueError: ``name`` is not a key of ``TASKS`` (the message lists them).
    """
    if name not in TASKS:
        raise ValueError(f"unknown sbibm task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name](**kwargs)
