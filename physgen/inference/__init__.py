"""Conditional estimators: one core (:class:`ConditionalEstimator`) with two roles on top.

* :class:`Posterior` q(θ | x), trained by :func:`fit_posterior`;
* :class:`Emulator` q(x | θ), trained by :func:`fit_emulator`;
* :func:`load` reads either back from its file (by ``kind``, with a format version).
"""

from physgen.inference.emulator import Emulator
from physgen.inference.estimator import ConditionalEstimator
from physgen.inference.fitting import fit_emulator, fit_posterior
from physgen.inference.persist import load
from physgen.inference.posterior import Posterior, SamplingError

__all__ = ["ConditionalEstimator", "Posterior", "Emulator", "SamplingError", "fit_posterior", "fit_emulator", "load"]
