r"""Particle-mesh pieces of :mod:`simulators.cosmology.nbody`: cloud-in-cell (CIC) painting and read-out on a
periodic mesh, and the FFT Poisson force. Batched over B, differentiable in the particle positions.

Mesh: n^3 cells of side h = L / n (L in Mpc/h); a particle at x (Mpc/h) has mesh coordinate u = x / h and
spreads its mass over the 8 cells around it with weights Π_i (1 - |u_i - c_i|) (CIC). The density contrast is
δ = counts / n̄ - 1 with n̄ = N_particles / n^3 particles per cell.

Force (the kernels of FastPM, Feng et al. 2016, and of jaxpm's defaults): the potential uses the exact inverse
Laplacian, the gradient the 4-point finite difference of the mesh,

    F_k = 1.5 Ω_m · i g(k) δ_k / k^2,    g_i(k) = (8 sin(k_i h) - sin(2 k_i h)) / (6 h),

(g = k + O(k^5 h^4); it vanishes at the Nyquist plane, so the force field is real), then read out at the
particles with the same CIC weights. F is in Mpc/h (the units of H0 = 1): linear theory gives F = 1.5 Ω_m D Ψ
for a Zel'dovich displacement D Ψ. The 1.5 Ω_m factor is applied by the caller.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

__all__ = ["cic_weights", "cic_paint", "cic_read", "pm_force", "density_contrast"]


def cic_weights(pos: Tensor, n: int, box_size: float) -> tuple[Tensor, Tensor]:
    """The 8 CIC neighbours of every particle.

    Args:
        pos: ``(B, N, 3)`` positions in Mpc/h (any real values: wrapped periodically).
        n: mesh cells per side.
        box_size: L in Mpc/h.

    Returns:
        index ``(B, 8, N)`` long, flat cell index including the batch offset b n^3 (into a ``(B * n^3,)`` array),
        weight ``(B, 8, N)`` in pos's dtype (differentiable in pos; the 8 weights sum to 1).
    """
    B = pos.shape[0]
    u = pos * (n / box_size)
    base = torch.floor(u.detach())
    frac = u - base  # in [0, 1), carries the gradient
    lo = torch.remainder(base.long(), n)
    hi = torch.where(lo == n - 1, torch.zeros_like(lo), lo + 1)
    stride = (n * n, n, 1)
    cell = [(lo[..., d] * stride[d], hi[..., d] * stride[d]) for d in range(3)]  # (B, N) each
    w = [(1.0 - frac[..., d], frac[..., d]) for d in range(3)]
    offset = (torch.arange(B, device=pos.device) * n**3).view(B, 1)
    cx = [cell[0][i] + offset for i in (0, 1)]
    index = [cx[i] + cell[1][j] + cell[2][k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    wxy = [w[0][i] * w[1][j] for i in (0, 1) for j in (0, 1)]
    weight = [wxy[2 * i + j] * w[2][k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    return torch.stack(index, 1), torch.stack(weight, 1)


def cic_paint(index: Tensor, weight: Tensor, n: int, mass: Tensor | float = 1.0) -> Tensor:
    """Particle counts on the mesh, ``(B, 8, N)`` CIC index/weight -> ``(B, n, n, n)`` (each particle adds ``mass``)."""
    B = index.shape[0]
    out = torch.zeros(B * n**3, dtype=weight.dtype, device=weight.device)
    out = out.index_add(0, index.reshape(-1), (weight * mass).reshape(-1))
    return out.view(B, n, n, n)


def cic_read(fields: Tensor, index: Tensor, weight: Tensor) -> Tensor:
    """Interpolate C mesh fields at the particles: ``(B, C, n, n, n)`` -> ``(B, N, C)``."""
    B, C = fields.shape[:2]
    flat = fields.reshape(B, C, -1).transpose(0, 1).reshape(C, -1)  # (C, B n^3)
    vals = flat.index_select(1, index.reshape(-1)).view(C, *index.shape)  # (C, B, 8, N)
    return (vals * weight).sum(2).permute(1, 2, 0)


@lru_cache(maxsize=16)
def _kernel(n: int, box_size: float, device: str, dtype: torch.dtype) -> Tensor:
    """The force kernel i g(k) / k^2 (0 at k = 0), complex ``(3, n, n, n//2+1)`` on the rfft grid."""
    h = box_size / n
    kf = 2 * math.pi / box_size
    full = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64, device=device) * kf
    half = torch.arange(n // 2 + 1, dtype=torch.float64, device=device) * kf
    kx, ky, kz = torch.meshgrid(full, full, half, indexing="ij")
    k2 = kx**2 + ky**2 + kz**2
    inv_k2 = torch.where(k2 > 0, 1.0 / torch.where(k2 > 0, k2, torch.ones_like(k2)), torch.zeros_like(k2))
    g = torch.stack([(8 * torch.sin(k * h) - torch.sin(2 * k * h)) / (6 * h) for k in (kx, ky, kz)])
    cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
    return (1j * g * inv_k2).to(cdtype)


def density_contrast(index: Tensor, weight: Tensor, n: int, n_particles: int) -> Tensor:
    """δ = counts / n̄ - 1 on the mesh, ``(B, n, n, n)``, from the CIC neighbours of ``n_particles`` particles."""
    return cic_paint(index, weight, n, mass=n**3 / n_particles) - 1.0


def pm_force(pos: Tensor, n: int, box_size: float, n_particles: int | None = None) -> Tensor:
    """The PM force per unit 1.5 Ω_m at the particles, ``(B, N, 3)`` Mpc/h -> ``(B, N, 3)`` (module docstring).

    Args:
        pos: positions in Mpc/h.
        n: mesh cells per side.
        box_size: L in Mpc/h.
        n_particles: N (default ``pos.shape[1]``).
    """
    index, weight = cic_weights(pos, n, box_size)
    delta = density_contrast(index, weight, n, n_particles or pos.shape[1])
    kernel = _kernel(n, float(box_size), str(pos.device), pos.dtype)
    fk = kernel * torch.fft.rfftn(delta, dim=(-3, -2, -1)).unsqueeze(1)  # (B, 3, n, n, n/2+1)
    forces = torch.fft.irfftn(fk, s=(n, n, n), dim=(-3, -2, -1))
    return cic_read(forces, index, weight)
