"""Schema of a workflow config: the file that ``physgen run`` reads and ``physgen validate RUN_DIR`` re-reads.

A workflow config is a run config (``[simulator]``, ``[simulation]``, ``[model]``, ``[train]``, ``[sample]``;
:mod:`physgen.config.run`) plus a ``[validate]`` section, the options of :func:`physgen.validate`::

    [validate]
    num_test = 500                   # held-out (θ, x) pairs for SBC, coverage and TARP
    num_posterior_samples = 500      # draws per test pair and per observation
    num_observations = 1             # observations simulated from the prior (when none are given)
    observations = []                # or the observations themselves, one x per item
    reference = "auto"               # auto (exact_posterior, else MCMC on log_likelihood), exact, mcmc or none
    num_reference_samples = 0        # MCMC draws per observation (0: max(num_posterior_samples, 2000))
    mcmc = { max_steps = 10000 }     # options of physgen.mcmc.reference_posterior (this is the default)
    seed = 0

The sizes default to 500 x 500 (physgen.validate's own defaults are 1,000 x 1,000): the N x S posterior draws
and their log-densities are most of a workflow's validation time, and 500 x 500 keeps a two-moons run
within a few minutes on two cores (docs/validation.md). ``mcmc`` caps the steps each emcee run spends on
estimating its autocorrelation time at 10,000 (the sampler's own default is 50,000), which bounds the
reference's cost on a multimodal posterior; whether the reference is trusted is still decided by R-hat
and ESS. A ``mcmc`` table in the file replaces the whole default (give max_steps again to keep it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from physgen.config.run import RunConfig
from physgen.config.schema import bounded, choice

__all__ = ["WorkflowConfig", "ValidateSection"]


@dataclass
class ValidateSection:
    """``[validate]``: the options of :func:`physgen.validate` (module docstring)."""

    num_test: int = bounded(500, ge=1)
    num_posterior_samples: int = bounded(500, ge=1)
    num_observations: int = bounded(1, ge=1)
    observations: list = field(default_factory=list)
    reference: str = choice("auto", "exact", "mcmc", "none")
    num_reference_samples: int = bounded(0, ge=0, note="0: max(num_posterior_samples, 2000)")
    mcmc: dict = field(default_factory=lambda: {"max_steps": 10_000})
    seed: int = bounded(0, ge=0)


@dataclass
class WorkflowConfig(RunConfig):
    """A run config and its ``[validate]`` section: simulate -> train -> validate (``physgen run``)."""

    validate: ValidateSection = field(default_factory=ValidateSection)
