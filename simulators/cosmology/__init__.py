"""Cosmology simulators: the linear matter spectrum, Gaussian / lognormal fields, a weak-lensing-like map.

The pieces: ``spectrum.py`` (EH98 transfer function, growth, σ8 normalisation, comoving distance,
which parameters are in θ), ``fourier.py`` (Fourier convention, Hermitian noise, the binned P(k)
estimator, the exact Gaussian log-likelihood), ``power_table.py`` (the grid's distinct |k| and the
ln Ω_m interpolation table that make P(k) cheap per θ), ``fisher.py`` (Fisher forecast), ``fields.py`` (:class:`GaussianField`,
:class:`LognormalField`), ``convergence.py`` (:class:`ConvergenceMap`) and ``nbody.py`` (:class:`NBody`, a
particle-mesh N-body code; ``nbody_ic.py`` and ``nbody_pm.py`` hold its initial conditions and forces). Units: Mpc/h, h/Mpc,
(Mpc/h)^dim.
"""

from __future__ import annotations

from simulators.cosmology.convergence import ConvergenceMap
from simulators.cosmology.fields import GaussianField, LognormalField
from simulators.cosmology.fisher import fisher_matrix, fisher_sigma
from simulators.cosmology.fourier import (
    FourierGrid,
    bin_modes,
    check_grid,
    default_edges,
    fourier_grid,
    gaussian_log_likelihood,
    hermitian_noise,
    power_spectrum,
)
from simulators.cosmology.nbody import NBody
from simulators.cosmology.spectrum import (
    C_OVER_H0,
    DEFAULT_COSMOLOGY,
    DEFAULT_PRIOR_BOUNDS,
    CosmologyParameters,
    comoving_distance,
    eh98_transfer,
    growth_factor,
    linear_power,
    sigma_r,
)

__all__ = [
    "ConvergenceMap",
    "GaussianField",
    "LognormalField",
    "NBody",
    "CosmologyParameters",
    "linear_power",
    "eh98_transfer",
    "growth_factor",
    "sigma_r",
    "comoving_distance",
    "C_OVER_H0",
    "DEFAULT_COSMOLOGY",
    "DEFAULT_PRIOR_BOUNDS",
    "FourierGrid",
    "fourier_grid",
    "check_grid",
    "hermitian_noise",
    "bin_modes",
    "default_edges",
    "power_spectrum",
    "gaussian_log_likelihood",
    "fisher_matrix",
    "fisher_sigma",
]
