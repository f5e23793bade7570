"""Conditional estimators: one core (:class:`ConditionalEstimator`) with two roles on top.

* :class:`Posterior` q(θ | x), trained by :func:`fit_posterior`;
* :class:`Emulator` q(x | θ), trained by :func:`fit_emulator`;
* :class:`Likelihood` q(x | θ) as a likelihood for MCMC (NLE), trained by :func:`fit_likelihood`;
* :func:`load` reads either back from its file (by ``kind``, with a format version).
"""

from physgen.inference.emulator import Emulator
from physgen.inference.estimator import ConditionalEstimator
from physgen.inference.fitting import fit_emulator, fit_posterior
from physgen.inference.likelihood import Likelihood, LikelihoodSamples, fit_likelihood
from physgen.inference.persist import load
from physgen.inference.posterior import Posterior, SamplingError

__all__ = [
    "ConditionalEstimator",
    "Posterior",
    "Emulator",
    "Likelihood",
    "LikelihoodSamples",
    "SamplingError",
    "fit_posterior",
    "fit_emulator",
    "fit_likelihood",
    "load",
]
