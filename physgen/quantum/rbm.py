r"""Restricted Boltzmann machine wavefunction (real or complex), sampled by Metropolis.

With spins ``s_i = 1 - 2 sigma_i`` and ``M = alpha * N`` hidden units traced out,

    log psi(sigma) = sum_i a_i s_i + sum_j log cosh(b_j + sum_i W_ji s_i)  [+ i pi sum_i m_i sigma_i],

unnormalised (Metropolis needs ratios only). ``complex=True`` makes ``a, b, W`` complex
(stored as separate real and imaginary parameters so every optimiser sees real tensors);
``marshall=True`` adds the Marshall sign of a bipartite lattice.

``symmetry=`` (a :class:`~physgen.quantum.symmetry.SymmetryGroup` of the lattice) ties the weights so that
``psi(g sigma) = psi(sigma)`` for every ``g`` of the group (the symmetric RBM of Carleo and Troyer, Science
355, 602 (2017)): ``alpha`` filters ``w_f`` (``(alpha, N)`` parameters), each applied to every transformed
configuration, i.e. ``M = alpha |G|`` hidden units ``theta_{f,g} = b_f + sum_i w_{f,i} (g s)_i``, one visible
bias per orbit of sites. With the global spin flip in the group the visible and hidden biases are zero
(``log cosh`` is even, so ``psi(-s) = psi(s)``). :meth:`RBMWavefunction.weights` expands the tied
parameters into the dense ``a (N,)``, ``b (M,)``, ``W (M, N)`` that the samplers use. ``log cosh`` is evaluated
stably as ``z + log(1 + exp(-2z)) - log 2`` with ``z`` reflected to ``Re z >= 0``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from physgen.quantum.lattice import Lattice

if TYPE_CHECKING:
    from physgen.quantum.symmetry import SymmetryGroup

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
        symmetry: a symmetry group of ``lattice`` (module docstring); then ``alpha`` counts filters and the
            RBM has ``alpha |G|`` hidden units. Needs ``lattice``.

    Raises:
        ValueError: ``alpha < 1``, a lattice of another size, ``marshall`` on a non-bipartite lattice, or a
            symmetry group of another lattice (the message names both).
    """

    marshall_mask: Tensor  # (N,) buffer: the sublattice m_i of the Marshall sign (zeros without it)
    orbit: Tensor  # (N,) buffer (symmetric RBM only): the orbit of each site, i.e. its visible bias
    inverse_perms: Tensor  # (G, N) buffer (symmetric RBM only): the inverse site permutations of the group

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
        symmetry: SymmetryGroup | None = None,
    ) -> None:
        super().__init__()
        if lattice is not None and lattice.n_sites != n_sites:
            raise ValueError(
                f"the lattice has {lattice.n_sites} sites but the RBM was built with n_sites={n_sites}; they must match."
            )
        if alpha < 1:
            raise ValueError(f"alpha must be >= 1, got {alpha}.")
        self.n_sites = int(n_sites)
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        parts = 2 if complex else 1

        def init(*shape):
            return nn.Parameter(torch.randn(parts, *shape, generator=g, dtype=dtype) * init_std)

        self.symmetric = symmetry is not None
        if symmetry is None:
            M = int(alpha * n_sites)
            self.a = init(n_sites)
            self.b = init(M)
            self.W = init(M, n_sites)
        else:
            if lattice is None or repr(symmetry.lattice) != repr(lattice):
                raise ValueError(
                    f"the symmetry group acts on {symmetry.lattice!r} but the RBM was built for "
                    f"{lattice!r} with n_sites={n_sites}; pass lattice= the group's lattice."
                )
            flip = bool(symmetry.flips.any())
            perms = symmetry.perms[~symmetry.flips] if flip else symmetry.perms  # the permutations, once each
            orbit = _orbits(perms)
            self.register_buffer("orbit", orbit, persistent=False)
            self.register_buffer("inverse_perms", torch.argsort(perms, dim=1), persistent=False)  # (G, N)
            self.a = init(int(orbit.max()) + 1)
            self.b = init(alpha)
            self.W = init(alpha, n_sites)
            M = int(alpha * len(perms))
            if flip:  # psi(-s) = psi(s) needs a = b = 0 (log cosh is even)
                with torch.no_grad():
                    self.a.zero_()
                    self.b.zero_()
                self.a.requires_grad_(False)
                self.b.requires_grad_(False)
        self.n_hidden = M
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
            "symmetry": None if symmetry is None else repr(symmetry),
        }

    def _param(self, p: Tensor) -> Tensor:
        return torch.complex(p[0], p[1]) if self.is_complex else p[0]

    def weights(self) -> tuple[Tensor, Tensor, Tensor]:
        """The dense RBM parameters ``a (N,)``, ``b (M,)``, ``W (M, N)`` (complex for a complex RBM), with the
        tied weights of a symmetric RBM expanded (differentiable)."""
        a, b, W = self._param(self.a), self._param(self.b), self._param(self.W)
        if not self.symmetric:
            return a, b, W
        G = self.inverse_perms.shape[0]
        # hidden unit (f, g): theta = b_f + w_f . (g s), (g s)_i = s_{perm_g[i]}  =>  W[(f, g), j] = w_f[inv_g[j]]
        W_full = W[:, self.inverse_perms].reshape(-1, self.n_sites)
        return a[self.orbit], b.repeat_interleave(G), W_full

    def forward(self, sigma: Tensor) -> Tensor:
        """Same as :meth:`log_psi`."""
        return self.log_psi(sigma)

    def log_psi(self, sigma: Tensor) -> Tensor:
        """Unnormalised complex ``log psi``. sigma: ``(B, N)`` of 0/1 -> ``(B,)`` complex."""
        if sigma.ndim != 2 or sigma.shape[-1] != self.n_sites:
            raise ValueError(f"sigma must have shape (B, {self.n_sites}), got {tuple(sigma.shape)}.")
        dt = self.a.dtype
        s = 1.0 - 2.0 * sigma.to(dt)
        a, b, W = self.weights()
        if self.is_complex:
            s = s.to(a.dtype)
        theta = s @ W.T + b
        out = s @ a + log_cosh(theta).sum(-1)
        if not out.is_complex():
            out = torch.complex(out, torch.zeros_like(out))
        if self.marshall:
            out = out + 1j * math.pi * (sigma.to(dt) @ self.marshall_mask)
        return out


def _orbits(perms: Tensor) -> Tensor:
    """Orbit label of every site under the permutations ``(G, N)`` (labels 0..k-1 in order of first site)."""
    N = perms.shape[1]
    label = [-1] * N
    k = 0
    for i in range(N):
        if label[i] < 0:
            for j in set(perms[:, i].tolist()) | {i}:
                label[j] = k
            k += 1
    return torch.as_tensor(label, dtype=torch.long)
