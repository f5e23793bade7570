r"""A linear-Gaussian baseline q₀(z | c) = N(z; W c + b, S) for the ODE families.

Flow matching and diffusion learn a correction to the exact vector field / denoiser of this
Gaussian instead of the whole field. :meth:`LinearGaussian.fit` sets it to the least-squares
(maximum-likelihood) fit of the training targets on the contexts, before the first epoch; the
networks' output layers start at zero, so an untrained model *is* that Gaussian, and a posterior
that is Gaussian with a mean linear in the context (gaussian_linear) needs no learned correction.
Unfitted, the baseline is N(0, I), whose denoiser ``x / (1 + σ²)`` is EDM's skip connection.

Closed forms (S = Q diag(λ) Qᵀ, m = W c + b):

* denoiser of x_σ = z + σ ε:  E[z | x_σ] = m + Q diag(λ / (λ + σ²)) Qᵀ (x_σ - m);
* flow-matching field of x_t = (1 - s t) x₀ + t z (s = 1 - σ_min), x₀ ~ N(0, I):
  E[z - s x₀ | x_t] = m + Q diag((t λ - s a) / (a² + t² λ)) Qᵀ (x_t - t m),  a = 1 - s t.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


@torch.no_grad()
def least_squares(target: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Linear-Gaussian maximum likelihood: target ``(n, D)`` ≈ W c + b for context ``(n, C)`` (None: b =
    the mean). Returns W ``(D, C)`` (empty without context), b ``(D,)`` and the residual covariance ``(D, D)``,
    in the target's dtype; computed in float64 with a tiny ridge."""
    z = target.double()
    n, dim = z.shape
    if context is not None and context.shape[-1] > 0:
        design = torch.cat([context.double(), torch.ones_like(z[:, :1])], dim=1)
        gram = design.T @ design + 1e-6 * n * torch.eye(design.shape[1], dtype=z.dtype, device=z.device)
        beta = torch.linalg.solve(gram, design.T @ z)
        weight, bias, resid = beta[:-1].T, beta[-1], z - design @ beta
    else:
        weight = z.new_zeros(dim, 0)
        bias = z.mean(0)
        resid = z - bias
    cov = resid.T @ resid / max(n - 1, 1)
    return weight.to(target.dtype), bias.to(target.dtype), cov.to(target.dtype)


class LinearGaussian(nn.Module):
    """N(W c + b, Q diag(λ) Qᵀ) over D-vectors given C-vector contexts (buffers, saved with the model)."""

    weight: Tensor  # buffers registered in __init__: W (D, C), b (D,), Q (D, D), λ (D,)
    bias: Tensor
    eigvecs: Tensor
    eigvals: Tensor

    def __init__(self, dim: int, context_dim: int):
        super().__init__()
        self.dim, self.context_dim = dim, context_dim
        self.register_buffer("weight", torch.zeros(dim, context_dim))
        self.register_buffer("bias", torch.zeros(dim))
        self.register_buffer("eigvecs", torch.eye(dim))
        self.register_buffer("eigvals", torch.ones(dim))

    @torch.no_grad()
    def fit(self, target: Tensor, context: Tensor | None) -> None:
        """Least squares of target ``(n, D)`` on context ``(n, C)``; S = covariance of the residuals."""
        weight, bias, cov = least_squares(target, context if self.context_dim > 0 else None)
        if self.context_dim > 0:
            self.weight.copy_(weight)
        self.bias.copy_(bias)
        lam, q = torch.linalg.eigh(cov.double())
        self.eigvals.copy_(lam.clamp_min(1e-6))
        self.eigvecs.copy_(q)

    def mean(self, context: Tensor | None, like: Tensor) -> Tensor:
        """m(c) = W c + b, ``(*B, D)`` broadcastable against ``like``."""
        if self.context_dim > 0 and context is not None:
            return context @ self.weight.T + self.bias
        return self.bias.expand_as(like)

    def denoise(self, x: Tensor, sigma: Tensor | float, m: Tensor) -> Tensor:
        """E[z | x_σ]: x ``(*N, D)``, σ scalar or ``(*N,)``, m ``(*N, D)`` (broadcast) -> ``(*N, D)``."""
        var = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).pow(2)
        gain = self.eigvals / (self.eigvals + (var.unsqueeze(-1) if var.dim() else var))
        return m + ((x - m) @ self.eigvecs * gain) @ self.eigvecs.T

    def velocity(self, x: Tensor, t: Tensor | float, m: Tensor, s: float) -> Tensor:
        """Exact OT-path field of the Gaussian: x ``(*N, D)``, t scalar or ``(*N,)``, m ``(*N, D)``."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.dim():
            t = t.unsqueeze(-1)
        return m + ((x - t * m) @ self.eigvecs * self._ot_gain(t, s)) @ self.eigvecs.T

    def _ot_gain(self, t: Tensor, s: float) -> Tensor:
        """Eigenvalues of the field's linear part on the OT path, (tλ − s a)/(a² + t²λ) with a = 1 − s t;
        t broadcasts against the eigenvalues ``(D,)``."""
        a = 1.0 - s * t
        return (t * self.eigvals - s * a) / (a * a + t * t * self.eigvals)

    def velocity_affine(self, t: Tensor, m: Tensor, s: float) -> tuple[Tensor, Tensor]:
        """The field of :meth:`velocity` at K times ``t (K,)`` as affine maps, for one mean m ``(D,)``:
        (A ``(K, D, D)``, b ``(K, D)``) with velocity(x, t_k) = x @ A[k] + b[k]."""
        t = t.reshape(-1, 1)
        A = (self.eigvecs.unsqueeze(0) * self._ot_gain(t, s).unsqueeze(1)) @ self.eigvecs.T
        return A, m.reshape(1, -1) - t * (m.reshape(1, 1, -1) @ A).squeeze(1)

    def noised_sample(self, eps: Tensor, mean: Tensor, sigma: float) -> Tensor:
        """A draw of x_σ = z + σ ε' with z ~ N(mean, S) from standard normal ``eps (*N, D)``."""
        return mean + (eps * (self.eigvals + sigma**2).sqrt()) @ self.eigvecs.T

    def noised_log_prob(self, x: Tensor, mean: Tensor, sigma: float) -> Tensor:
        """log N(x; mean, S + σ² I): ``(*N, D) -> (*N,)``."""
        var = self.eigvals + sigma**2
        y = (x - mean) @ self.eigvecs
        return -0.5 * ((y * y / var).sum(-1) + var.log().sum() + self.dim * math.log(2 * math.pi))
