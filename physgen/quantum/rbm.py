r"""Restricted Boltzmann machine wavefunction (real or complex), sampled by Metropolis.

With spins ``s_i = 1 - 2 sigma_i`` and ``M = alpha * N`` hidden units traced out,

    log psi(sigma) = sum_i a_i s_i + sum_j log cosh(b_j + sum_i W_ji s_i)  [+ i pi sum_i m_i sigma_i],

unnormalised (Metropolis needs ratios only). ``complex=True`` makes ``a, b, W`` complex
(stored as separate real and imaginary parameters so every optimiser sees real tensors);
``marshall=True`` adds the Marshall sign of a bipartite lattice. ``log cosh`` is evaluated
stably as ``z + log(1 + exp(-2z)) - log 2`` with ``z`` reflected to ``Re z >= 0``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from physgen.quantum.lattice import Lattice

__all__ = ["RBMWavefunction", "log_cosh"]


def log_cosh(z: Tensor) -> Tensor:
    """Stable ``log cosh z`` for real or complex ``z`` (any shape)."""
    if z.is_complex():
        z = torch.where(z.real < 0, -z, z)
        return z + torch.log1p(torch.exp(-2 * z)) - math.log(2.0)
    a = z.abs()
    return a + torch.log1p(torch.exp(-2 * a)) - math.log(2.0)


class RBMWavefunction(nn.Module):
    """RBM wavefunction ``log psi = a.s + sum_j log cosh(b_j + W_j.s)``.

    Args:
        n_sites: number of visible spins N.
        alpha: hidden-unit density (M = alpha * N hidden units).
        complex: complex parameters (sign/phase structure); real gives a positive psi.
        lattice: optional lattice (checked against n_sites; needed for ``marshall``).
        marshall: built-in Marshall sign ``(-1)^{sum_i m_i sigma_i}``.
        init_std: standard deviation of the random initial weights.
        dtype: real parameter dtype.
        seed: seed of the initialisation (None: torch's global generator).
    """

    marshall_mask: Tensor  # (N,) buffer: the sublattice m_i of the Marshall sign (zeros without it)

    def __init__(
        self,
        n_sites: int,
        alpha: int = 1,
        *,
        complex: bool = False,
        lattice: Lattice | None = None,
        marshall: bool = False,
        init_std: float = 0.01,
        dtype: torch.dtype = torch.float64,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if lattice is not None and lattice.n_sites != n_sites:
            raise ValueError(
                f"the lattice has {lattice.n_sites} sites but the RBM was built with n_sites={n_sites}; they must match."
            )
        if alpha < 1:
            raise ValueError(f"alpha must be >= 1, got {alpha}.")
        self.n_sites = int(n_sites)
        M = int(alpha * n_sites)
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        parts = 2 if complex else 1

        def init(*shape):
            return nn.Parameter(torch.randn(parts, *shape, generator=g, dtype=dtype) * init_std)

        self.a = init(n_sites)
        self.b = init(M)
        self.W = init(M, n_sites)
        self.is_complex = bool(complex)
        if marshall:
            if lattice is None or not lattice.bipartite:
                raise ValueError("marshall=True needs a bipartite lattice (pass lattice=...).")
            m = torch.as_tensor(lattice.sublattice, dtype=dtype)
        else:
            m = torch.zeros(n_sites, dtype=dtype)
        self.marshall = bool(marshall)
        self.register_buffer("marshall_mask", m, persistent=False)
        self.config = {
            "type": "rbm",
            "n_sites": n_sites,
            "alpha": alpha,
            "complex": complex,
            "marshall": marshall,
            "dtype": str(dtype).replace("torch.", ""),
        }

    def _param(self, p: Tensor) -> Tensor:
        return torch.complex(p[0], p[1]) if self.is_complex else p[0]

    def forward(self, sigma: Tensor) -> Tensor:
        """Same as :meth:`log_psi`."""
        return self.log_psi(sigma)

    def log_psi(self, sigma: Tensor) -> Tensor:
        """Unnormalised complex ``log psi``. sigma: ``(B, N)`` of 0/1 -> ``(B,)`` complex."""
        if sigma.ndim != 2 or sigma.shape[-1] != self.n_sites:
            raise ValueError(f"sigma must have shape (B, {self.n_sites}), got {tuple(sigma.shape)}.")
        dt = self.a.dtype
        s = 1.0 - 2.0 * sigma.to(dt)
        a, b, W = self._param(self.a), self._param(self.b), self._param(self.W)
        if self.is_complex:
            s = s.to(a.dtype)
        theta = s @ W.T + b
        out = s @ a + log_cosh(theta).sum(-1)
        if not out.is_complex():
            out = torch.complex(out, torch.zeros_like(out))
        if self.marshall:
            out = out + 1j * math.pi * (sigma.to(dt) @ self.marshall_mask)
        return out
