"""physgen: simulation-based inference, emulators and neural quantum states on PyTorch.

Public API:
    simulate(simulator, n, *, seed, ...) -> SimulationSet
    fit_posterior(data, *, model="nsf", encoder=None, **options) -> Posterior      q(θ | x)
    fit_emulator(data, *, model="flow_matching", **options) -> Emulator           q(x | θ)
    fit_likelihood(data, *, model="nsf", **options) -> Likelihood                 q(x | θ) for MCMC (NLE)
    Posterior / Emulator .sample / .log_prob / .save, load(path)
    fit(module, data, ...)          the training loop shared by every family
    priors                          BoxUniform, LogUniform, LogNormal, Joint, MultivariateNormal
    diagnostics                     c2st, ...
    validate(posterior, simulator, ...) -> Report   calibration, MCMC reference, misspecification
    run(config, run_dir) -> Report  simulate -> train -> validate, resumable per stage (``physgen run``)
    emulate(config, run_dir) -> Report  simulate -> train an emulator -> compare with the simulator
"""

__version__ = "0.1.0"

from physgen import priors
from physgen.data import SimulationError, SimulationSet, load_simulations, simulate
from physgen.inference import (
    Emulator,
    Likelihood,
    Posterior,
    SamplingError,
    fit_emulator,
    fit_likelihood,
    fit_posterior,
    load,
)
from physgen.io import CheckpointError
from physgen.lock import FolderLockedError
from physgen.train import FitResult, TrainingError, fit
from physgen.validation import validate
from physgen.pipeline import run
from physgen.emulation import emulate

__all__ = [
    "__version__",
    "simulate",
    "load_simulations",
    "SimulationSet",
    "SimulationError",
    "fit_posterior",
    "Posterior",
    "fit_emulator",
    "Emulator",
    "fit_likelihood",
    "Likelihood",
    "load",
    "fit",
    "FitResult",
    "TrainingError",
    "SamplingError",
    "CheckpointError",
    "FolderLockedError",
    "priors",
    "validate",
    "run",
    "emulate",
]
