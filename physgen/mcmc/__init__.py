"""MCMC references for posteriors with an explicit likelihood, and their convergence checks.

* :func:`log_posterior`: prior + ``simulator.log_likelihood`` at one observation, -inf outside the support.
* :func:`reference_posterior`: emcee's ensemble sampler, several independent runs, checked by arviz,
  returned as ``arviz.InferenceData``; ``sampler="batched"`` uses many batched Metropolis chains instead
  (:func:`batched_reference`), the faster reference for torch likelihoods that are cheap in batches.
* :func:`batched_metropolis`: adaptive random-walk Metropolis for many chains and many observations
  at once in torch (CPU or GPU).
* :func:`check_convergence` / :class:`Convergence`: rank-normalised split R-hat, bulk and tail ESS.
* :func:`draws`: the draws of an ``InferenceData`` as a ``(n, D)`` float64 tensor.
* :func:`task_reference`: a benchmark task's reference posterior for one observation (exact sampler or MCMC
  gated by the checks above), cached on disk once per task and observation (:class:`TaskReference`).

See docs/mcmc.md.
"""

from physgen.mcmc.batched_reference import batched_reference
from physgen.mcmc.convergence import Convergence, check_convergence, draws
from physgen.mcmc.density import log_posterior
from physgen.mcmc.emcee_reference import reference_posterior
from physgen.mcmc.metropolis import batched_metropolis
from physgen.mcmc.task_reference import ReferenceNotConverged, TaskReference, reference_cache_dir, task_reference

__all__ = [
    "log_posterior",
    "reference_posterior",
    "batched_reference",
    "batched_metropolis",
    "check_convergence",
    "Convergence",
    "draws",
    "task_reference",
    "TaskReference",
    "ReferenceNotConverged",
    "reference_cache_dir",
]
