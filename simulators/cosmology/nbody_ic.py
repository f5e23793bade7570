r"""Initial conditions of :mod:`simulators.cosmology.nbody`: linear growth and its derivatives, the linear field on
the particle lattice, and Lagrangian perturbation theory (Zel'dovich and 2LPT) displacements and momenta.

Growth (flat ΛCDM, exact): D(a) = (5 Ω_m / 2) E(a) ∫_0^a da' / (a' E(a'))^3 / (the same at a = 1), the integral by
64-point Gauss-Legendre in float64 (as :func:`simulators.cosmology.spectrum.growth_factor`, which it reproduces),
and its derivative in closed form, dD/da ∝ E'(a) I(a) + 1 / (a^3 E(a)^2), E' = -1.5 Ω_m a^-4 / E.
Differentiable in Ω_m. The momentum variable is p = a^3 E(a) dx/da (x comoving, Mpc/h; time in units of 1/H0),
so dx/da = p / (a^3 E) and dp/da = F / (a^2 E) with F = 1.5 Ω_m ∇∇^-2 δ (:mod:`nbody_pm`); linear theory is
x = q + D Ψ, p = G_p(a) Ψ with G_p = a^3 E dD/da, and d G_p / da = 1.5 Ω_m D / (a^2 E) is the growth equation.

Linear field: Fourier convention of :mod:`simulators.cosmology.fourier` on the N_p^3 particle lattice:
c_k = sqrt(P_lin(k, z = 0) / V) z_k (Hermitian unit noise z, c_0 = 0), δ_0(q) = Σ_k c_k e^{ik·q}. Its measured
P(k) is P_lin at z = 0 within cosmic variance (tested).

LPT (Scoccimarro 1998; the convention of jaxpm's ``lpt``), with Ψ[s]_k = i k s_k / k^2 (k_i set to 0 on its
Nyquist plane so that the field stays real):

    x = q + D1 Ψ1 + D2 Ψ2,            Ψ1 = Ψ[δ_0],   Ψ2 = Ψ[δ_2],
    δ_2 = Σ_{i<j} (φ_ii φ_jj - φ_ij^2),   φ_ij,k = k_i k_j c_k / k^2,
    D2 = (3/7) D1^2 Ω_m(a)^(-1/143),       (Bouchet et al. 1995; the sign of -3/7 is absorbed in Ψ2)
    p = a^2 E(a) (f1 D1 Ψ1 + f2 D2 Ψ2),   f1 = d ln D1 / d ln a,  f2 = 2 Ω_m(a)^(6/11),

with Ω_m(a) = Ω_m a^-3 / E(a)^2. ``order=1`` drops the D2 terms (Zel'dovich).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from simulators.cosmology.fourier import fourier_grid, hermitian_noise
from simulators.cosmology.power_table import mode_set
from simulators.cosmology.spectrum import linear_power

__all__ = ["growth", "omega_m_of_a", "white_noise", "linear_modes", "lpt_initial_conditions", "lattice"]


@lru_cache(maxsize=2)
def _gl(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


def _unnormalised_growth(a: Tensor, om: Tensor) -> tuple[Tensor, Tensor]:
    x, w = (torch.as_tensor(v, dtype=torch.float64, device=a.device) for v in _gl(64))
    ap = 0.5 * a.unsqueeze(-1) * (x + 1)
    Ep = torch.sqrt(om.unsqueeze(-1) * ap**-3 + 1 - om.unsqueeze(-1))
    integral = 0.5 * a * (w / (ap * Ep) ** 3).sum(-1)
    E = torch.sqrt(om * a**-3 + 1 - om)
    dE = -1.5 * om * a**-4 / E
    return 2.5 * om * E * integral, 2.5 * om * (dE * integral + 1.0 / (a**3 * E**2))


def growth(a: Tensor, omega_m: Tensor) -> tuple[Tensor, Tensor]:
    """Linear growth D(a) (D(1) = 1) and dD/da of flat ΛCDM, float64, broadcast of ``a`` and ``omega_m``."""
    a, om = torch.broadcast_tensors(torch.as_tensor(a, dtype=torch.float64), omega_m.to(torch.float64))
    D, dD = _unnormalised_growth(a, om)
    D1, _ = _unnormalised_growth(torch.ones_like(a), om)
    return D / D1, dD / D1


def hubble(a: Tensor, omega_m: Tensor) -> Tensor:
    """E(a) = H(a) / H0 of flat ΛCDM."""
    return torch.sqrt(omega_m * a**-3 + 1 - omega_m)


def omega_m_of_a(a: Tensor, omega_m: Tensor) -> Tensor:
    """Ω_m(a) = Ω_m a^-3 / E(a)^2."""
    return omega_m * a**-3 / hubble(a, omega_m) ** 2


def lattice(n: int, box_size: float, offset: float = 0.0, *, device=None, dtype=torch.float64) -> Tensor:
    """Unperturbed particle positions q ``(n^3, 3)`` in Mpc/h: i L / n + offset, C order of an n^3 grid."""
    i = torch.arange(n, device=device, dtype=dtype) * (box_size / n) + offset
    return torch.stack(torch.meshgrid(i, i, i, indexing="ij"), -1).reshape(-1, 3)


def white_noise(batch: tuple[int, ...], n: int, box_size: float, *, generator=None, dtype=torch.float64, device=None):
    """Hermitian unit complex noise z ``(*batch, n, n, n//2+1)`` on the particle lattice (k = 0 set to 0)."""
    z = hermitian_noise(
        batch,
        fourier_grid(n, 3, float(box_size), str(torch.device(device or "cpu"))),
        generator=generator,
        dtype=dtype,
        device=device,
    )
    z[..., 0, 0, 0] = 0
    return z


def linear_modes(noise: Tensor, omega_m: Tensor, sigma8: Tensor, box_size: float, fixed: dict) -> Tensor:
    """c_k = sqrt(P_lin(k, z=0) / V) z_k ``(B, n, n, n//2+1)`` complex128 (module docstring).

    Args:
        noise: ``(B or 1, n, n, n//2+1)`` from :func:`white_noise`.
        omega_m, sigma8: ``(B,)``.
        box_size: L in Mpc/h.
        fixed: Ω_b, h, n_s (keys ``Omega_b``, ``h``, ``n_s``).
    """
    n = noise.shape[-3]
    ms = mode_set(n, 3, float(box_size), str(noise.device))
    P = linear_power(ms.k, omega_m, sigma8, fixed["Omega_b"], fixed["h"], fixed["n_s"], quadrature="gauss")
    amp = (ms.gather(P) / box_size**3).sqrt()
    return amp * noise.to(torch.complex128)


def _k_vectors(n: int, box_size: float, device) -> tuple[list[Tensor], Tensor]:
    kf = 2 * math.pi / box_size
    full = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64, device=device) * kf
    half = torch.arange(n // 2 + 1, dtype=torch.float64, device=device) * kf
    kk = list(torch.meshgrid(full, full, half, indexing="ij"))
    k2 = kk[0] ** 2 + kk[1] ** 2 + kk[2] ** 2
    inv_k2 = torch.where(k2 > 0, 1 / torch.where(k2 > 0, k2, torch.ones_like(k2)), torch.zeros_like(k2))
    if n % 2 == 0:  # a gradient is imaginary-odd: drop the self-conjugate Nyquist planes
        kk = [torch.where(k.abs() == kf * (n // 2), torch.zeros_like(k), k) for k in kk]
    return kk, inv_k2


def _psi(ck: Tensor, kk: list[Tensor], inv_k2: Tensor, n: int) -> Tensor:
    """Ψ[c] = irfftn(i k c / k^2) ``(B, n^3, 3)``."""
    comps = [torch.fft.irfftn(1j * k * inv_k2 * ck, s=(n, n, n), dim=(-3, -2, -1), norm="forward") for k in kk]
    return torch.stack(comps, -1).reshape(ck.shape[0], -1, 3)


def lpt_initial_conditions(
    ck: Tensor, omega_m: Tensor, a_init: float, box_size: float, order: int = 2
) -> tuple[Tensor, Tensor]:
    """Displacements x - q and momenta p at ``a_init`` (module docstring), each ``(B, n^3, 3)`` float64.

    Args:
        ck: linear modes at z = 0 ``(B, n, n, n//2+1)`` (:func:`linear_modes`).
        omega_m: ``(B,)``.
        a_init: initial scale factor.
        box_size: L in Mpc/h.
        order: 1 (Zel'dovich) or 2 (2LPT).
    """
    n = ck.shape[-3]
    kk, inv_k2 = _k_vectors(n, box_size, ck.device)
    a = torch.full_like(omega_m, a_init, dtype=torch.float64)
    D1, dD1 = growth(a, omega_m)
    E = hubble(a, omega_m)
    f1 = a * dD1 / D1
    psi1 = _psi(ck, kk, inv_k2, n)
    col = lambda t: t.view(-1, 1, 1)  # noqa: E731
    disp = col(D1) * psi1
    mom = col(a**2 * E * f1 * D1) * psi1
    if order == 2:
        dims = (-3, -2, -1)
        phi = {}
        for i in range(3):
            for j in range(i, 3):
                phi[i, j] = torch.fft.irfftn(kk[i] * kk[j] * inv_k2 * ck, s=(n, n, n), dim=dims, norm="forward")
        delta2 = (
            phi[0, 0] * phi[1, 1]
            + phi[0, 0] * phi[2, 2]
            + phi[1, 1] * phi[2, 2]
            - phi[0, 1] ** 2
            - phi[0, 2] ** 2
            - phi[1, 2] ** 2
        )
        psi2 = _psi(torch.fft.rfftn(delta2, dim=dims, norm="forward"), kk, inv_k2, n)
        om_a = omega_m_of_a(a, omega_m)
        D2 = 3.0 / 7.0 * D1**2 * om_a ** (-1.0 / 143.0)
        f2 = 2.0 * om_a ** (6.0 / 11.0)
        disp = disp + col(D2) * psi2
        mom = mom + col(a**2 * E * f2 * D2) * psi2
    return disp, mom
