r"""Checkerboard Metropolis / heat-bath kernel for a batch of periodic L×L Ising lattices (one (β, J, h) each).

Conventions: H = -J Σ_<ij> s_i s_j - h Σ_i s_i on the torus, weight exp(-β H), k_B = 1
(see :mod:`simulators.ising.exact`). Spins are int8 ±1. ``M`` lattices are updated at once.

Checkerboard Metropolis
    The lattice is bipartite (L even): sites with i + j even (sublattice A) only have
    neighbours in B and vice versa, so all sites of one colour can be updated in parallel
    without breaking detailed balance. The spins are stored *compressed by colour*,
    ``A[i, k] = s[i, 2k + i % 2]`` and ``B[i, k] = s[i, 2k + 1 - i % 2]`` (each ``(M, L, L/2)``),
    so a half sweep touches only the L²/2 sites it updates. The neighbours of ``A[i, k]`` are
    ``B[i ± 1, k]``, ``B[i, k]`` and ``B[i, k - 1]`` (even i) or ``B[i, k + 1]`` (odd i); for B
    the horizontal offset is mirrored. The neighbour sums are formed in place with slice adds.
    The kernel works on spin bits σ = (s + 1)/2 (int8): the neighbour sum of bits is the
    number of up neighbours u, and n = 2u - 4. A flip of s with neighbour sum n costs
    ΔE = 2 s (J n + h); only the 10 pairs (σ, u) occur, so each lattice has a table (column
    u + 5σ) of acceptance probabilities, stored as int32 thresholds ``t = ⌊p 2³²⌋ - 2³¹``
    (saturated at 2³¹ - 1). A uniform random int32 ``r`` (two per 64-bit draw) accepts the
    flip iff ``r < t`` and the flip is ``σ ^= accept``: no exp, no float random numbers, and
    the probability is exact to 2⁻³² (p = 1 moves are accepted with probability 1 - 2⁻³²).

    Acceptance rule. ``"metropolis"``: p = min(1, e^{-βΔE}) for ΔE ≠ 0 and p = 63/64
    (``P_ZERO``) for ΔE = 0. The p < 1 is deliberate: with p = 1 at ΔE = 0 the *parallel*
    sublattice update is not ergodic. In a diagonal stripe state s_ij = f((i + j) mod 4),
    f = (+, +, -, -), every site has n = 0, so each colour flips as a whole every half sweep
    and the chain cycles forever (L ≡ 0 mod 4; at L = 2 similar cycles exist). Any symmetric
    acceptance is valid at ΔE = 0; p < 1 makes these cycles transient (tested against exact
    enumeration at L = 2 and 4). p = 63/64 rather than ½ keeps the autocorrelation time close
    to that of plain Metropolis (measurements in docs/simulators_ising.md).
    ``"heatbath"`` (Glauber): p = 1/(1 + e^{βΔE}).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "to_sublattices",
    "from_sublattices",
    "neighbour_sum_a",
    "neighbour_sum_b",
    "P_ZERO",
    "acceptance_probabilities",
    "acceptance_thresholds",
    "metropolis_sweeps",
    "CheckerboardSweeper",
    "sublattice_bond_sum",
    "sublattice_magnetisation_sum",
]

P_ZERO = 63.0 / 64.0
"""Acceptance probability of ΔE = 0 flips under the "metropolis" rule (see the module docstring)."""

_I32_MIN = -(2**31)
_I32_MAX = 2**31 - 1


def to_sublattices(spins: Tensor) -> tuple[Tensor, Tensor]:
    """Split ``spins: (M, L, L)`` into the colour-compressed ``A, B: (M, L, L/2)`` (contiguous)."""
    a = torch.empty(spins.shape[:-1] + (spins.shape[-1] // 2,), dtype=spins.dtype, device=spins.device)
    b = torch.empty_like(a)
    a[..., 0::2, :] = spins[..., 0::2, 0::2]
    a[..., 1::2, :] = spins[..., 1::2, 1::2]
    b[..., 0::2, :] = spins[..., 0::2, 1::2]
    b[..., 1::2, :] = spins[..., 1::2, 0::2]
    return a, b


def from_sublattices(a: Tensor, b: Tensor) -> Tensor:
    """Inverse of :func:`to_sublattices`: ``A, B: (M, L, L/2)`` -> ``(M, L, L)``."""
    s = torch.empty(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype, device=a.device)
    s[..., 0::2, 0::2] = a[..., 0::2, :]
    s[..., 1::2, 1::2] = a[..., 1::2, :]
    s[..., 0::2, 1::2] = b[..., 0::2, :]
    s[..., 1::2, 0::2] = b[..., 1::2, :]
    return s


def _vertical_and_self(other: Tensor, out: Tensor) -> None:
    # out[i, k] = other[i-1, k] + other[i+1, k] + other[i, k]  (rows periodic)
    out[:, 1:] = other[:, :-1]
    out[:, 0] = other[:, -1]
    out[:, :-1] += other[:, 1:]
    out[:, -1] += other[:, 0]
    out += other


def _add_left(other: Tensor, out: Tensor, rows: slice) -> None:
    # out[i, k] += other[i, k - 1] (periodic in k) for the selected rows
    o, t = out[:, rows], other[:, rows]
    o[..., 1:] += t[..., :-1]
    o[..., 0] += t[..., -1]


def _add_right(other: Tensor, out: Tensor, rows: slice) -> None:
    # out[i, k] += other[i, k + 1] (periodic in k) for the selected rows
    o, t = out[:, rows], other[:, rows]
    o[..., :-1] += t[..., 1:]
    o[..., -1] += t[..., 0]


def neighbour_sum_a(b: Tensor, out: Tensor | None = None) -> Tensor:
    """Sum of the four neighbours of every A site, from ``B: (M, L, L/2)`` -> ``(M, L, L/2)``."""
    out = torch.empty_like(b) if out is None else out
    _vertical_and_self(b, out)
    _add_left(b, out, slice(0, None, 2))
    _add_right(b, out, slice(1, None, 2))
    return out


def neighbour_sum_b(a: Tensor, out: Tensor | None = None) -> Tensor:
    """Sum of the four neighbours of every B site, from ``A: (M, L, L/2)`` -> ``(M, L, L/2)``."""
    out = torch.empty_like(a) if out is None else out
    _vertical_and_self(a, out)
    _add_right(a, out, slice(0, None, 2))
    _add_left(a, out, slice(1, None, 2))
    return out


def sublattice_bond_sum(a: Tensor, b: Tensor) -> Tensor:
    """Σ_<ij> s_i s_j per lattice from sublattice *bits* σ = (s + 1)/2 (every bond has exactly
    one end in A). ``a, b: (M, L, L/2)`` -> ``(M,)`` int64."""
    s = 2 * a.to(torch.int16) - 1
    n = 2 * neighbour_sum_a(b).to(torch.int16) - 4
    return (s * n).sum((-2, -1), dtype=torch.int64)


def sublattice_magnetisation_sum(a: Tensor, b: Tensor) -> Tensor:
    """Σ_i s_i per lattice from sublattice bits. ``(M, L, L/2)`` -> ``(M,)`` int64."""
    n_up = a.sum((-2, -1), dtype=torch.int64) + b.sum((-2, -1), dtype=torch.int64)
    return 2 * n_up - 2 * a.shape[-1] * a.shape[-2]


def acceptance_probabilities(beta: Tensor, J: Tensor, h: Tensor, rule: str = "metropolis") -> Tensor:
    """Per-lattice flip probabilities p of the 10 local situations (s, n), float64 ``(M, 10)``.

    Args:
        beta, J, h: ``(M,)`` (float; computed in float64).

    Returns:
        column ``5 (s + 1)/2 + (n + 4)/2`` holds ``p = min(1, exp(-2 β s (J n + h)))`` (63/64 at
        ΔE = 0) for ``rule="metropolis"``, ``1/(1 + exp(2 β s (J n + h)))`` for ``"heatbath"``.
    """
    dev = beta.device
    s = torch.tensor([-1.0] * 5 + [1.0] * 5, dtype=torch.float64, device=dev)
    n = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0] * 2, dtype=torch.float64, device=dev)
    b, j, f = (t.to(torch.float64).unsqueeze(-1) for t in (beta, J, h))
    de = 2.0 * s * (j * n + f)
    p = torch.exp(torch.clamp(-b * de, max=0.0))
    if rule == "heatbath":
        p = torch.sigmoid(-b * de)
    elif rule == "metropolis":
        p = torch.where(de == 0, torch.full_like(p, P_ZERO), p)
    else:
        raise ValueError(f"unknown update rule {rule!r}; use 'metropolis' or 'heatbath'")
    return p


def acceptance_thresholds(beta: Tensor, J: Tensor, h: Tensor, rule: str = "metropolis") -> Tensor:
    """Per-lattice int32 thresholds ``⌊p 2³²⌋ - 2³¹``, ``(M, 10)``, p from :func:`acceptance_probabilities`."""
    p = acceptance_probabilities(beta, J, h, rule)
    t = torch.floor(p * 2.0**32) + _I32_MIN
    return t.clamp(_I32_MIN, _I32_MAX).to(torch.int64).to(torch.int32)


def _half_sweep(sig: Tensor, u: Tensor, table: Tensor, rbuf: Tensor, generator: torch.Generator | None) -> None:
    """Metropolis update of every site of the bit array ``sig`` in place; ``u`` holds the number
    of up neighbours and is overwritten."""
    m = sig.shape[0]
    u.add_(sig, alpha=5)  # table column u + 5 σ
    thr = torch.gather(table, 1, u.view(m, -1).to(torch.int64))
    rbuf.random_(_I32_MIN * 2**32, None, generator=generator)
    r = rbuf.view(torch.int32)[: sig.numel()].view(thr.shape)
    sig.bitwise_xor_(torch.lt(r, thr).view(sig.shape))


class CheckerboardSweeper:
    """Checkerboard sweeps on fixed sublattice buffers with every view and work buffer built once.

    The per-sweep work is ~15 in-place tensor operations; on small batches torch's per-call
    overhead (and Python slicing) rivals the arithmetic, so the slices of the neighbour-sum
    plan, the int64 index buffer, the threshold buffer, the random buffer and the flip mask
    are all allocated here and reused. Random numbers are consumed exactly as by
    :func:`metropolis_sweeps`.

    Args:
        a, b: int8 ``(M, L, L/2)`` sublattice bits (updated in place by :meth:`sweep`).
        table: ``(M, 10)`` int32 thresholds.
    """

    def __init__(self, a: Tensor, b: Tensor, table: Tensor):
        self.a, self.b, self.table = a, b, table
        m = a.shape[0]
        self.u = torch.empty_like(a)
        self.idx = torch.empty((m, a[0].numel()), dtype=torch.int64, device=a.device)
        self.thr = torch.empty((m, a[0].numel()), dtype=torch.int32, device=a.device)
        self.flip = torch.empty((m, a[0].numel()), dtype=torch.bool, device=a.device)
        self.rbuf = torch.empty((a.numel() + 1) // 2, dtype=torch.int64, device=a.device)
        self.r = self.rbuf.view(torch.int32)[: a.numel()].view(m, -1)
        self.u_flat = self.u.view(m, -1)
        self.plan_a = self._plan(b, left_rows=slice(0, None, 2), right_rows=slice(1, None, 2))
        self.plan_b = self._plan(a, left_rows=slice(1, None, 2), right_rows=slice(0, None, 2))

    def _plan(self, src: Tensor, left_rows: slice, right_rows: slice) -> list[tuple[str, Tensor, Tensor]]:
        u = self.u
        ops = [
            ("copy", u[:, 1:], src[:, :-1]),
            ("copy", u[:, 0], src[:, -1]),
            ("add", u[:, :-1], src[:, 1:]),
            ("add", u[:, -1], src[:, 0]),
            ("add", u, src),
        ]
        ol, tl = u[:, left_rows], src[:, left_rows]  # += src[i, k - 1]
        ops += [("add", ol[..., 1:], tl[..., :-1]), ("add", ol[..., 0], tl[..., -1])]
        orr, tr = u[:, right_rows], src[:, right_rows]  # += src[i, k + 1]
        ops += [("add", orr[..., :-1], tr[..., 1:]), ("add", orr[..., -1], tr[..., 0])]
        return ops

    def _half(self, sig: Tensor, plan, generator: torch.Generator | None) -> None:
        for op, dst, src in plan:
            if op == "copy":
                dst.copy_(src)
            else:
                dst.add_(src)
        self.u.add_(sig, alpha=5)  # table column u + 5 σ
        self.idx.copy_(self.u_flat)
        torch.gather(self.table, 1, self.idx, out=self.thr)
        self.rbuf.random_(_I32_MIN * 2**32, None, generator=generator)
        torch.lt(self.r, self.thr, out=self.flip)
        sig.view(self.flip.shape).bitwise_xor_(self.flip)

    def sweep(self, n_sweeps: int, generator: torch.Generator | None = None) -> None:
        """Run ``n_sweeps`` full sweeps (A half sweep, then B)."""
        for _ in range(n_sweeps):
            self._half(self.a, self.plan_a, generator)
            self._half(self.b, self.plan_b, generator)


def metropolis_sweeps(
    a: Tensor,
    b: Tensor,
    table: Tensor,
    n_sweeps: int,
    *,
    generator: torch.Generator | None = None,
) -> None:
    """Run ``n_sweeps`` checkerboard sweeps in place on spin *bits* σ = (s + 1)/2.

    Args:
        a, b: int8 contiguous ``(M, L, L/2)`` sublattice bits σ ∈ {0, 1} (modified in place).
            With bits, the number of up neighbours u ∈ {0..4} (n = 2u - 4) and σ index the
            table directly (column ``u + 5 σ``), so no signed arithmetic is needed.
        table: ``(M, 10)`` int32 thresholds from :func:`acceptance_thresholds`.
        n_sweeps: number of full sweeps (each = A half sweep then B half sweep).
        generator: torch generator on the spins' device.
    """
    CheckerboardSweeper(a, b, table).sweep(n_sweeps, generator)
