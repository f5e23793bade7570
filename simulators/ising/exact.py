r"""Exact results for the 2D Ising model on the periodic L×L square lattice (the torus).

Hamiltonian and units (the same everywhere in :mod:`simulators.ising`)::

    H(s) = -J Σ_<ij> s_i s_j - h Σ_i s_i,        s_i = ±1,  N = L²,

where ``<ij>`` runs over the 2N nearest-neighbour bonds of the torus (each bond once; for
L = 2 each pair of sites is joined by two bonds, as the formulas below assume). Energies are
in the units of J and h; β = 1/(k_B T) with k_B = 1, so the weight is exp(-β H) and only the
products K = βJ and βh matter.

Kaufman (1949) partition function of the L×L torus at h = 0 (Ferdinand & Fisher 1969)::

    Z = ½ (2 sinh 2K)^{N/2} [ Π_r 2 cosh(L γ_{2r+1}/2) + Π_r 2 sinh(L γ_{2r+1}/2)
                            + Π_r 2 cosh(L γ_{2r}/2)   + Π_r 2 sinh(L γ_{2r}/2) ],   r = 0..L-1,

    cosh γ_q = cosh 2K coth 2K - cos(π q / L)   (γ_q > 0 for q ≥ 1),
    γ_0 = 2K + ln tanh K                         (negative above T_c, zero at K_c).

The sign of γ_0 makes the last product negative for K < K_c; the sum is evaluated as a signed
log-sum-exp with the q = 0 factor kept outside the logarithm, so the formula is smooth through
K_c. ⟨E⟩ = -∂ ln Z/∂β and C = β² ∂² ln Z/∂β² (k_B = 1) come from float64 autograd.

Exact enumeration (L ≤ 4, 2^16 states at most) tabulates the density of states g(B, M) of the
bond sum B = Σ_<ij> s_i s_j and the magnetisation M = Σ_i s_i; then for any (β, J, h)
``Z = Σ g(B, M) exp(βJ B + βh M)``. It is the oracle for the Kaufman formula (tested) and the
normaliser of the likelihood when h ≠ 0.

Onsager–Yang spontaneous magnetisation (infinite lattice): m_0 = (1 - sinh(2K)^-4)^{1/8} for
K > K_c = ½ ln(1 + √2), else 0.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

__all__ = [
    "BETA_C",
    "bond_sum",
    "magnetisation_sum",
    "energy",
    "kaufman_log_z",
    "kaufman_observables",
    "density_of_states",
    "log_density_of_states",
    "enumeration_log_z",
    "enumeration_observables",
    "onsager_magnetisation",
]

BETA_C: float = 0.5 * math.log(1.0 + math.sqrt(2.0))
"""Critical coupling K_c = βJ at the critical point of the infinite lattice (≈ 0.4406868)."""

_MAX_ENUM_L = 4


def bond_sum(spins: Tensor) -> Tensor:
    """Σ_<ij> s_i s_j over the 2N bonds of the torus.

    Args:
        spins: ``(*B, L, L)`` with entries ±1 (any real or integer dtype).

    Returns:
        ``(*B,)`` in the dtype of ``spins`` (float32 for integer input).
    """
    s = spins if spins.is_floating_point() else spins.to(torch.float32)
    return (s * (torch.roll(s, 1, -1) + torch.roll(s, 1, -2))).sum((-2, -1))


def magnetisation_sum(spins: Tensor) -> Tensor:
    """M = Σ_i s_i. ``spins: (*B, L, L)`` -> ``(*B,)``."""
    s = spins if spins.is_floating_point() else spins.to(torch.float32)
    return s.sum((-2, -1))


def energy(spins: Tensor, J: float | Tensor = 1.0, h: float | Tensor = 0.0) -> Tensor:
    """H(s) = -J Σ_<ij> s_i s_j - h Σ_i s_i. ``spins: (*B, L, L)``; J, h scalars or ``(*B,)``."""
    return -J * bond_sum(spins) - h * magnetisation_sum(spins)


def _log_2cosh(x: Tensor) -> Tensor:
    a = x.abs()
    return a + torch.log1p(torch.exp(-2.0 * a))


def _log_2sinh(x: Tensor) -> Tensor:
    # x > 0
    return x + torch.log1p(-torch.exp(-2.0 * x))


def kaufman_log_z(L: int, K: Tensor | float) -> Tensor:
    """ln Z of the L×L torus at h = 0 (Kaufman 1949), exact for every L ≥ 2.

    Args:
        L: linear size.
        K: coupling βJ > 0, any shape ``(*B,)``; float64 is used internally and the result
            is differentiable in K (autograd, also twice).

    Returns:
        ``(*B,)`` float64.
    """
    if L < 2:
        raise ValueError(f"kaufman_log_z needs L >= 2; got L={L}")
    K = torch.as_tensor(K, dtype=torch.float64)
    if bool((K <= 0).any()):
        raise ValueError("kaufman_log_z needs K = βJ > 0 (the formula uses ln tanh K)")
    Ke = K.unsqueeze(-1)
    q = torch.arange(2 * L, dtype=torch.float64, device=K.device)
    c = torch.cosh(2 * Ke) / torch.tanh(2 * Ke) - torch.cos(math.pi * q / L)
    # q >= 1: c > 1 strictly, so acosh is smooth; q = 0 uses the signed closed form.
    gam = torch.acosh(torch.clamp(c[..., 1:], min=1.0 + 1e-300))
    g0 = 2 * K + torch.log(torch.tanh(K))
    odd = gam[..., 0::2]  # q = 1, 3, ..., 2L-1
    even = gam[..., 1::2]  # q = 2, 4, ..., 2L-2
    x_odd, x_even, x0 = 0.5 * L * odd, 0.5 * L * even, 0.5 * L * g0
    l1 = _log_2cosh(x_odd).sum(-1)
    l2 = _log_2sinh(x_odd).sum(-1)
    l3 = _log_2cosh(x_even).sum(-1) + _log_2cosh(x0)
    l4_rest = _log_2sinh(x_even).sum(-1)  # the q = 0 factor 2 sinh(x0) is kept outside
    a = torch.stack([l1, l2, l3, l4_rest + _log_2cosh(x0)], -1).amax(-1).detach()
    total = torch.exp(l1 - a) + torch.exp(l2 - a) + torch.exp(l3 - a) + 2.0 * torch.sinh(x0) * torch.exp(l4_rest - a)
    N = L * L
    return -math.log(2.0) + 0.5 * N * torch.log(2.0 * torch.sinh(2 * K)) + a + torch.log(total)


def kaufman_observables(L: int, beta: Tensor | float, J: float = 1.0) -> dict[str, Tensor]:
    """Exact finite-lattice thermodynamics of the L×L torus at h = 0.

    Args:
        L: linear size.
        beta: inverse temperature(s), shape ``(*B,)``.
        J: coupling (> 0).

    Returns:
        dict of float64 ``(*B,)`` tensors: ``log_z``, ``energy_per_spin`` ⟨E⟩/N,
        ``specific_heat_per_spin`` C/N = β² Var(E)/N (k_B = 1).
    """
    if J <= 0:
        raise ValueError(f"kaufman_observables needs a ferromagnetic J > 0; got J={J}")
    with torch.enable_grad():
        b = torch.as_tensor(beta, dtype=torch.float64).detach().clone().requires_grad_(True)
        logz = kaufman_log_z(L, b * J)
        (d1,) = torch.autograd.grad(logz.sum(), b, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), b)
    N = L * L
    return {
        "log_z": logz.detach(),
        "energy_per_spin": (-d1 / N).detach(),
        "specific_heat_per_spin": (b.detach() ** 2 * d2 / N).detach(),
    }


@functools.lru_cache(maxsize=8)
def _dos_cpu(L: int) -> tuple[Tensor, Tensor, Tensor]:
    N = L * L
    idx = torch.arange(2**N, dtype=torch.int64)
    bits = (idx.unsqueeze(-1) >> torch.arange(N, dtype=torch.int64)) & 1
    s = (2 * bits - 1).to(torch.int8).reshape(-1, L, L)
    B = bond_sum(s).round().to(torch.int64)
    M = magnetisation_sum(s).round().to(torch.int64)
    key = (B + 2 * N) * (2 * N + 1) + (M + N)
    uniq, counts = torch.unique(key, return_counts=True)
    return uniq // (2 * N + 1) - 2 * N, uniq % (2 * N + 1) - N, counts


def density_of_states(L: int) -> tuple[Tensor, Tensor, Tensor]:
    """Joint density of states g(B, M) of the L×L torus by enumerating all 2^(L²) states.

    Args:
        L: 2 <= L <= 4.

    Returns:
        (B, M, g): int64 ``(K,)`` tensors of the distinct (bond sum, magnetisation) pairs and
        their multiplicities (``g.sum() == 2**(L*L)``).
    """
    if not 2 <= L <= _MAX_ENUM_L:
        raise ValueError(f"exact enumeration is limited to 2 <= L <= {_MAX_ENUM_L} (2^(L²) states); got L={L}")
    return tuple(t.clone() for t in _dos_cpu(L))  # type: ignore[return-value]


def log_density_of_states(L: int, B: Tensor, M: Tensor) -> Tensor:
    """ln g(B, M) of the L×L torus (2 <= L <= 4) at integer-valued B, M of any shape; -inf where g = 0."""
    Bs, Ms, g = density_of_states(L)
    N = L * L
    table = torch.full((4 * N + 1, 2 * N + 1), -math.inf, dtype=torch.float64)
    table[Bs + 2 * N, Ms + N] = g.to(torch.float64).log()
    table = table.to(B.device)
    bi, mi = (B + 2 * N).long(), (M + N).long()
    ok = (bi >= 0) & (bi <= 4 * N) & (mi >= 0) & (mi <= 2 * N)
    val = table[bi.clamp(0, 4 * N), mi.clamp(0, 2 * N)]
    return torch.where(ok, val, torch.full_like(val, -math.inf))


def _enum_weights(L: int, beta: Tensor, J: float | Tensor, h: float | Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    B, M, g = density_of_states(L)
    beta = torch.as_tensor(beta, dtype=torch.float64)
    dev = beta.device
    B, M, g = B.to(dev, torch.float64), M.to(dev, torch.float64), g.to(dev, torch.float64)
    J = torch.as_tensor(J, dtype=torch.float64, device=dev).unsqueeze(-1)
    h = torch.as_tensor(h, dtype=torch.float64, device=dev).unsqueeze(-1)
    b = beta.unsqueeze(-1)
    logw = torch.log(g) + b * J * B + b * h * M  # (*B, K)
    return logw, B, M, -(J * B + h * M)


def enumeration_log_z(L: int, beta: Tensor | float, J: float | Tensor = 1.0, h: float | Tensor = 0.0) -> Tensor:
    """ln Z by exact enumeration (2 <= L <= 4); beta, J, h broadcast to ``(*B,)``; float64."""
    logw, *_ = _enum_weights(L, torch.as_tensor(beta, dtype=torch.float64), J, h)
    return torch.logsumexp(logw, -1)


def enumeration_observables(L: int, beta: Tensor | float, J: float = 1.0, h: float = 0.0) -> dict[str, Tensor]:
    """Exact ⟨E⟩/N, C/N, ⟨|m|⟩, χ/N-style moments by enumeration (2 <= L <= 4).

    Returns:
        dict of float64 ``(*B,)`` tensors: ``log_z``, ``energy_per_spin``,
        ``specific_heat_per_spin``, ``abs_magnetisation`` ⟨|M|⟩/N, ``m2`` ⟨(M/N)²⟩.
    """
    beta = torch.as_tensor(beta, dtype=torch.float64)
    logw, B, M, E = _enum_weights(L, beta, J, h)
    logz = torch.logsumexp(logw, -1)
    p = torch.exp(logw - logz.unsqueeze(-1))
    N = L * L
    e1 = (p * E).sum(-1)
    e2 = (p * E * E).sum(-1)
    return {
        "log_z": logz,
        "energy_per_spin": e1 / N,
        "specific_heat_per_spin": beta**2 * (e2 - e1 * e1) / N,
        "abs_magnetisation": (p * M.abs()).sum(-1) / N,
        "m2": (p * M * M).sum(-1) / N**2,
    }


def onsager_magnetisation(beta: Tensor | float, J: float = 1.0) -> Tensor:
    """Spontaneous magnetisation of the infinite lattice, (1 - sinh(2βJ)^-4)^{1/8} above K_c, else 0.

    Args:
        beta: ``(*B,)``; J: coupling.

    Returns:
        ``(*B,)`` float64.
    """
    K = torch.as_tensor(beta, dtype=torch.float64) * J
    inside = 1.0 - torch.sinh(2 * K).clamp_min(1e-300) ** -4
    return torch.where(K > BETA_C, inside.clamp_min(0.0) ** 0.125, torch.zeros_like(K))
