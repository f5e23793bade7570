r"""The exact likelihood of the Ising simulator (:class:`simulators.ising.model.Ising`): ln Z(θ) and the
sufficient statistics of an observation.

Conventions as in :mod:`simulators.ising.model`: ``log p(x | θ) = ln g(B, M) + β J B + β h M - ln Z(θ)`` with the
bond sum B = Σ_<ij> s_i s_j and the magnetisation M = Σ_i s_i of x. x is a configuration of spins ±1 (ln g = 0)
or the summaries (b, m) = (B, M) / N, for which g(B, M), the number of configurations with those sums, is known
by enumeration for L ≤ 4 and is constant in β at h = 0 (then ln g = 0: the likelihood of one configuration).
ln Z by enumeration for L ≤ 4 (any h) or by Kaufman's finite-torus formula (any L, h = 0)
(:mod:`simulators.ising.exact`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from simulators.ising.exact import (
    bond_sum,
    enumeration_log_z,
    kaufman_log_z,
    log_density_of_states,
    magnetisation_sum,
)

__all__ = ["ising_log_z", "sufficient_statistics", "check_x"]


def ising_log_z(L: int, J: float, h_fixed: float | None, beta: Tensor, h: Tensor) -> Tensor:
    """Exact ln Z of ``beta, h (M,)`` on the L×L torus with coupling J: ``(M,)`` float64.

    ``h_fixed`` is the simulator's fixed field (None when h is a parameter).

    Raises:
        NotImplementedError: a field (h a parameter or h_fixed != 0) at L > 4.
    """
    if L <= 4:
        return enumeration_log_z(L, beta, J, h)
    if h_fixed is None or h_fixed != 0.0:
        raise NotImplementedError(
            f"no exact partition function Z(β, h) with a field at L={L} > 4 (it needs the density of states, "
            "enumerated for L <= 4 only); exact likelihoods and posteriors exist for Ising(L <= 4, "
            "params=('beta', 'h')) or, for any L, at h = 0: Ising(L, params=('beta',)) (Kaufman)"
        )
    K = (beta * J).abs()  # Z(-K) = Z(K) on the bipartite torus
    tiny = K < 1e-6
    hi_t = L * L * (math.log(2.0) + K * K)  # ln Z ≈ N ln 2 + N K² as K -> 0
    return torch.where(tiny, hi_t, kaufman_log_z(L, torch.where(tiny, torch.ones_like(K), K)))


def sufficient_statistics(x: Tensor, L: int, output: str, h_fixed: float | None) -> tuple[Tensor, Tensor, Tensor]:
    """B, M and ln g(B, M) of observations ``x``: spins ``(*B, L, L)`` (``output="spins"``) or summaries
    ``(*B, 2)`` (``output="summary"``) -> three ``(*B,)`` float64 tensors.

    Raises:
        ValueError: spins other than ±1.
        NotImplementedError: a summary with a field (h a parameter or h_fixed != 0) at L > 4.
    """
    if output == "spins":
        if not bool((x.abs() == 1).all()):
            raise ValueError("x must contain spins ±1")
        B, M = bond_sum(x.to(torch.float64)), magnetisation_sum(x.to(torch.float64))
        return B, M, torch.zeros_like(B)
    n_sites = L * L
    B = torch.round(x[..., 0].to(torch.float64) * n_sites)
    M = torch.round(x[..., 1].to(torch.float64) * n_sites)
    if L <= 4:
        return B, M, log_density_of_states(L, B, M)
    if h_fixed == 0.0:  # ln g(B, M) is constant in β: the likelihood of one configuration (docstring)
        return B, M, torch.zeros_like(B)
    raise NotImplementedError(
        f"the likelihood of a summary (b, m) with a field needs Z(β, h) and the density of states g(B, M), "
        f"enumerated for L <= 4 only; got L={L}. Exact alternatives: Ising({L}, params=('beta',), "
        "output='summary') at h = 0 (any L), or L <= 4 with params=('beta', 'h')"
    )


def check_x(x: Tensor, x_shape: tuple[int, ...], L: int, output: str) -> None:
    """Raise a ValueError naming the expected shape ``(*B, *x_shape)`` when ``x`` is not a tensor of it."""
    nb = len(x_shape)
    if not isinstance(x, Tensor) or x.dim() < nb or tuple(x.shape[x.dim() - nb :]) != x_shape:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        hint = (
            f"a {got[-2]}×{got[-1]} lattice needs Ising(L={got[-1]})"
            if output == "spins" and isinstance(x, Tensor) and x.dim() >= 2 and x.shape[-1] == x.shape[-2]
            else f"output={output!r} gives x of shape {x_shape}"
        )
        raise ValueError(
            f"x must have shape (*B, {', '.join(map(str, x_shape))}) for this Ising(L={L}, "
            f"output={output!r}); got {got} ({hint})"
        )
