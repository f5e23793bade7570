r"""sbibm's bernoulli_glm and bernoulli_glm_raw tasks: a Bernoulli GLM neuron driven by white noise.

θ = (b, h) ``(10,)``: an offset b and a 9-tap filter h. Prior N(0, B⁻¹) with precision B = blockdiag(0.5, FᵀF),
F = Δ² + diag(√(j/9))_{j=0..8}, Δ the 9×9 first-difference matrix (I minus the sub-diagonal; a smoothness prior).
Stimulus I_t ~ N(0, 1), t = 0..99, frozen (``numpy.random.RandomState(42).randn(100)`` in float32, sbibm's
``stimulus_I.pt``); design matrix X ``(100, 10)``: X[t, 0] = 1, X[t, 1 + j] = I_{t-j} for t >= j else 0.
y_t ~ Bernoulli(σ(ψ_t)), ψ = Xθ. ``bernoulli_glm``: x = (Σ_t y_t, the spike-triggered averages
Σ_t y_{t+l} I_t for l = 0..8) ``(10,)``, which is exactly Xᵀy (sbibm computes it by ``conv1d``;
tested to 3e-6 against sbibm's observations); ``bernoulli_glm_raw``: x = y ``(100,)``.

Exact likelihood. Raw: log p(y | θ) = yᵀψ - Σ_t log(1 + e^{ψ_t}). Summary: Xᵀy is sufficient and, the stimulus
being continuous, distinct spike trains give distinct Xᵀy, so the probability of s = Xᵀy is the probability
of its one spike train: log p(s | θ) = θᵀs - Σ_t log(1 + e^{(Xθ)_t}), the same function of θ (so both
variants have the same posterior, which sbibm samples by Pólya-Gamma Gibbs on the raw spikes).
There is no closed-form posterior: the references come from ``physgen.mcmc`` (physgen.mcmc.task_reference).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.nn.functional import softplus

from physgen.priors import MultivariateNormal
from simulators.sbibm._task import Task, rand, resolve_device

__all__ = ["BernoulliGLM", "BernoulliGLMRaw", "glm_design", "glm_prior_precision"]

_T, _TAPS, _SEED = 100, 9, 42


def glm_design() -> Tensor:
    """sbibm's design matrix X ``(100, 10)`` (float32): a column of ones, then the stimulus lagged by 0..8."""
    stim = torch.from_numpy(np.random.RandomState(_SEED).randn(_T).astype(np.float32))
    X = torch.zeros(_T, _TAPS + 1)
    X[:, 0] = 1.0
    for j in range(_TAPS):
        X[j:, 1 + j] = stim[: _T - j]
    return X


def glm_prior_precision() -> Tensor:
    """sbibm's prior precision B ``(10, 10)`` (float32)."""
    M = _TAPS
    D = torch.diag(torch.ones(M)) - torch.diag(torch.ones(M - 1), -1)
    F = D @ D + torch.diag(torch.arange(M) / M) ** 0.5
    B = torch.zeros(M + 1, M + 1)
    B[0, 0] = 0.5
    B[1:, 1:] = F.T @ F
    return B


class BernoulliGLM(Task):
    """sbibm's Bernoulli GLM with sufficient-statistic data (module docstring). θ ``(10,)``, x ``(10,)``.

    Args:
        device: device of the prior's and the design matrix's tensors (``"auto"`` picks cuda if available).
    """

    name = "bernoulli_glm"
    definition_version = "sbibm-1.1.0/1"
    raw = False

    def __init__(self, device=None):
        dev = resolve_device(device)
        self.dim = _TAPS + 1
        self.x_shape = (_T,) if self.raw else (self.dim,)
        self.config: dict = {}
        self.design = glm_design().to(dev)
        precision = glm_prior_precision().to(dev)
        self.prior = MultivariateNormal(torch.zeros(self.dim, device=dev), precision_matrix=precision)

    def _psi(self, theta: Tensor) -> Tensor:
        """ψ = Xθ: ``(*B, 10) -> (*B, 100)``."""
        return theta @ self.design.to(theta.device, theta.dtype).T

    def spikes(self, theta: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Spike trains y ``(*B, 100)`` in {0, 1} (θ's dtype)."""
        self._check(theta)
        psi = self._psi(theta)
        return (rand(psi.shape, psi, generator) < torch.sigmoid(psi)).to(theta.dtype)

    def summary(self, y: Tensor) -> Tensor:
        """Xᵀy: spike count and spike-triggered averages, ``(*B, 100) -> (*B, 10)``."""
        return y @ self.design.to(y.device, y.dtype)

    def simulate(self, theta: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """theta ``(*B, 10)`` -> x ``(*B, 10)`` (Xᵀy), or ``(*B, 100)`` (y) for the raw variant."""
        y = self.spikes(theta, generator=generator)
        return y if self.raw else self.summary(y)

    def log_likelihood(self, theta: Tensor, x: Tensor) -> Tensor:
        """θᵀs - Σ_t softplus(ψ_t) with s = x (or Xᵀx for raw): ``(*B, 10)``, x (broadcast) -> ``(*B,)``."""
        self._check(theta, x)
        s = self.summary(x) if self.raw else x
        return (theta * s).sum(-1) - softplus(self._psi(theta)).sum(-1)


class BernoulliGLMRaw(BernoulliGLM):
    """sbibm's Bernoulli GLM with the raw spike train as data (module docstring). θ ``(10,)``, x ``(100,)``."""

    name = "bernoulli_glm_raw"
    raw = True
