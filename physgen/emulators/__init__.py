"""Emulators: conditional generative models of a simulator's output x given θ, cheaper than the simulator.

* :class:`IsingEmulator` (:mod:`physgen.emulators.ising`): autoregressive q(s | β) of Ising configurations,
  exact sampling and exact log q; trained by maximum likelihood on MCMC samples or variationally
  (:mod:`physgen.emulators.ising_training`); neural importance sampling (:mod:`physgen.emulators.ising_nis`).
* :class:`AutoregressiveLattice` (:mod:`physgen.emulators.lattice_family`): the same network as a
  :class:`physgen.core.ConditionalModel` family for ``physgen.fit_emulator`` (``target_standardization="none"``).
* :class:`PointCloudFlow` (:mod:`physgen.emulators.point_cloud`, model ``"point_cloud"``): padded point sets in a
  periodic box, N from a negative-binomial mixture, positions by flow matching on the torus.
"""

from physgen.emulators.ising import ExtrapolationWarning, IsingEmulator
from physgen.emulators.ising_nis import NISResult, importance_sample
from physgen.emulators.ising_training import fit_maximum_likelihood, fit_variational
from physgen.emulators.lattice_family import AutoregressiveLattice
from physgen.emulators.point_cloud import PointCloudFlow

__all__ = [
    "IsingEmulator",
    "ExtrapolationWarning",
    "fit_maximum_likelihood",
    "fit_variational",
    "importance_sample",
    "NISResult",
    "AutoregressiveLattice",
    "PointCloudFlow",
]
