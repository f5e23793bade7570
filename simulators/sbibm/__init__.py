"""The ten sbibm benchmark tasks (Lueckmann et al. 2021).

gaussian_linear, gaussian_linear_uniform, two_moons, slcp, slcp_distractors, gaussian_mixture,
bernoulli_glm, bernoulli_glm_raw, sir, lotka_volterra. Definitions follow ``sbibm/tasks/*/task.py``
(priors, simulators, noise); each task's math, and its departures from sbibm's code, are in its
module docstring (and docs/sbibm_tasks.md). Every task follows the ``physgen.core.Simulator`` protocol
with an exact ``log_likelihood``; θ outside the prior's support has prior log-probability -inf. Tasks with
an exact sampler have ``reference_posterior(x_obs, n, seed=...)`` (``x_obs: (F,)`` -> ``(n, D)`` on
``x_obs``'s device; the same seed gives the same samples); the others (bernoulli_glm, bernoulli_glm_raw,
sir, lotka_volterra) get MCMC references from :func:`physgen.mcmc.task_reference`.
``observation(task, k)`` is sbibm's own x_o number k = 1..10.
"""

from __future__ import annotations

from physgen.core import Simulator
from simulators.sbibm.bernoulli_glm import BernoulliGLM, BernoulliGLMRaw
from simulators.sbibm.gaussian_linear import GaussianLinear
from simulators.sbibm.gaussian_linear_uniform import GaussianLinearUniform
from simulators.sbibm.gaussian_mixture import GaussianMixture
from simulators.sbibm.lotka_volterra import LotkaVolterra
from simulators.sbibm.observations import observation, observations, true_parameters
from simulators.sbibm.sir import SIR
from simulators.sbibm.slcp import SLCP
from simulators.sbibm.slcp_distractors import SLCPDistractors
from simulators.sbibm.two_moons import TwoMoons

__all__ = [
    "GaussianLinear",
    "GaussianLinearUniform",
    "TwoMoons",
    "SLCP",
    "SLCPDistractors",
    "GaussianMixture",
    "BernoulliGLM",
    "BernoulliGLMRaw",
    "SIR",
    "LotkaVolterra",
    "TASKS",
    "get_task",
    "observation",
    "observations",
    "true_parameters",
]

TASKS: dict[str, type] = {
    "gaussian_linear": GaussianLinear,
    "gaussian_linear_uniform": GaussianLinearUniform,
    "two_moons": TwoMoons,
    "slcp": SLCP,
    "slcp_distractors": SLCPDistractors,
    "gaussian_mixture": GaussianMixture,
    "bernoulli_glm": BernoulliGLM,
    "bernoulli_glm_raw": BernoulliGLMRaw,
    "sir": SIR,
    "lotka_volterra": LotkaVolterra,
}


def get_task(name: str, **kwargs) -> Simulator:
    """Build a benchmark task by name (``TASKS`` keys); kwargs go to its constructor.

    Raises:
        ValueError: ``name`` is not a key of ``TASKS`` (the message lists them).
    """
    if name not in TASKS:
        raise ValueError(f"unknown sbibm task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name](**kwargs)
