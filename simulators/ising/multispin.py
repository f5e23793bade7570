r"""Multi-spin-coded checkerboard Metropolis: 64 lattices per machine word, numba on one CPU core.

``Ising(L, algorithm="multispin")`` runs the same Markov chain as ``algorithm="metropolis"`` (the
checkerboard sublattice update of :mod:`simulators.ising.kernels`, same acceptance rules: Metropolis with
63/64 at ΔE = 0, or heat bath; any J > 0, any h, per-lattice β and h), coded differently: the spin bit
σ = (s + 1)/2 of one site of 64 lattices shares a uint64 word (lattice 64 g + ℓ in bit ℓ), so neighbour
counts, the acceptance test and the flip are a few dozen bitwise word operations per 64 spin updates
(:mod:`simulators.ising.multispin_kernels`). Sites of one colour have no common bond, so updating them
one word after the other is the checkerboard update, with exact detailed balance.

Random numbers: every lane (lattice) draws its own bits, so the 64 lattices of a word are independent
chains (no random number is shared between lanes), and a lane of class k flips with probability
⌊p_k 2³²⌋ / 2³² (p_k = 1 exactly for ΔE < 0 under the Metropolis rule): exact to 2⁻³², like the int8
kernel. The bits come from xoshiro256**, seeded from the torch generator, so the same generator seed
gives the same lattices.

Supported: any even L >= 2 (the checkerboard needs a bipartite torus; L odd raises ValueError), any
batch (padded to a multiple of 64 lattices; padding lanes cost a word operation, not randomness), h = 0
(5 classes) and h != 0 (10 classes, about 1.6x the time per sweep, measured), rules "metropolis" and "heatbath".
CPU only (numba): θ on another device is simulated on the CPU and the result moved back. numba is a
dependency of physgen (also named by the extra ``physgen[fast]``); without it this kernel raises ImportError.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np
import torch
from torch import Tensor

from simulators.ising.kernels import acceptance_probabilities

__all__ = ["LANES", "pack_lanes", "unpack_lanes", "class_tables", "MultispinChain", "load_kernels"]

LANES = 64
"""Lattices per uint64 word."""


def load_kernels() -> ModuleType:
    """The numba kernel module; ImportError saying how to install numba when it is missing."""
    try:
        return importlib.import_module("simulators.ising.multispin_kernels")
    except ImportError as err:
        raise ImportError(
            "Ising(algorithm='multispin') needs numba, a dependency of physgen that is not installed here: "
            "pip install numba (or pip install 'physgen[fast]'); without it use algorithm='metropolis' "
            f"(the int8 checkerboard kernel, same Markov chain). Import error: {err}"
        ) from err


def _check_l(L: int) -> None:
    if isinstance(L, bool) or not isinstance(L, int) or L < 2 or L % 2:
        raise ValueError(
            f"the multi-spin kernel needs an even L >= 2 (checkerboard on a bipartite torus; any batch size "
            f"works, lattices are packed 64 per word); got L={L!r}"
        )


def pack_lanes(spins: np.ndarray) -> np.ndarray:
    """Pack spins ``(M, L, L)`` (±1 or bits 0/1, any integer dtype; up = value > 0) into uint64 words
    ``(G, L, L)``, G = ⌈M/64⌉: lattice m sits in bit m % 64 of group m // 64; lanes beyond M are 0."""
    spins = np.asarray(spins)
    if spins.ndim != 3 or spins.shape[1] != spins.shape[2]:
        raise ValueError(f"spins must have shape (M, L, L); got {spins.shape}")
    _check_l(int(spins.shape[-1]))
    return load_kernels().pack_words(np.ascontiguousarray(spins, dtype=np.int8), -(-spins.shape[0] // LANES))


def unpack_lanes(words: np.ndarray, M: int) -> np.ndarray:
    """Inverse of :func:`pack_lanes`: uint64 ``(G, L, L)`` -> int8 ±1 spins ``(M, L, L)``."""
    return load_kernels().unpack_words(words, M)


def _lane_words(bits: np.ndarray) -> np.ndarray:
    """bool ``(G*64, *rest)`` (lane-major) -> uint64 ``(G, *rest)`` with lane ℓ in bit ℓ."""
    G = bits.shape[0] // LANES
    x = np.moveaxis(bits.reshape(G, LANES, *bits.shape[1:]), 1, -1).astype(np.uint64)
    return np.bitwise_or.reduce(x << np.arange(LANES, dtype=np.uint64), axis=-1)


def class_tables(beta: Tensor, J: Tensor, h: Tensor, rule: str = "metropolis") -> tuple[np.ndarray, np.ndarray, bool]:
    """Per-lane threshold bit planes of the flip classes.

    A lane's class is c, its number of antialigned neighbours (h = 0 everywhere: 5 classes, since p
    depends on ΔE = 2 J (4 - 2 c) only), or c + 5 σ (10 classes, any lattice with h != 0). The flip
    probabilities are :func:`~simulators.ising.kernels.acceptance_probabilities` (column u + 5 σ with
    u = 4 - c for σ = 1 and u = c for σ = 0).

    Args:
        beta, J, h: ``(M,)``.
        rule: ``"metropolis"`` or ``"heatbath"``.

    Returns:
        ``W`` uint64 ``(G, K, 32)`` (bit 31 - j of ``T_k = ⌊p_k 2³²⌋`` of every lane in ``W[g, k, j]``),
        ``A`` uint64 ``(G, K)`` (lanes with p_k = 1), and ``field`` (K == 10). Padding lanes have p = 1
        in every class (they never draw random bits; their spins are discarded).
    """
    p = acceptance_probabilities(beta, J, h, rule).cpu().numpy()  # (M, 10), column u + 5σ
    field = bool((h.cpu() != 0).any())
    c = np.arange(5)
    cols = np.concatenate([c, 9 - c]) if field else 9 - c  # class c (+ 5σ) -> column u + 5σ
    pk = p[:, cols]  # (M, K)
    M, K = pk.shape
    G = -(-M // LANES)
    T = np.full((G * LANES, K), 2**32, dtype=np.int64)
    T[:M] = np.floor(pk * 2.0**32).astype(np.int64)
    always = T >= 2**32
    bits = ((T[:, :, None] >> np.arange(31, -1, -1)) & 1).astype(bool) & ~always[:, :, None]
    return _lane_words(bits), _lane_words(always), field


class MultispinChain:
    """M lattices under multi-spin-coded checkerboard Metropolis (the ``Chain`` interface of
    :mod:`simulators.ising.chains`: ``equilibrate``, ``advance``, ``measure``, ``spins``).

    Args:
        spins: int8 ±1 ``(M, L, L)`` initial configurations (any device; computed on the CPU).
        beta, J, h: ``(M,)`` per-lattice parameters.
        rule: ``"metropolis"`` or ``"heatbath"``.
        generator: torch generator (its device's); seeds the xoshiro256** stream once.
    """

    def __init__(self, spins: Tensor, beta: Tensor, J: Tensor, h: Tensor, rule: str, generator: torch.Generator | None):
        self.k = load_kernels()
        _check_l(int(spins.shape[-1]))
        self.device, self.M, self.L = spins.device, spins.shape[0], spins.shape[-1]
        self.S = pack_lanes(spins.cpu().numpy())
        self.W, self.A, self.field = class_tables(beta, J, h, rule)
        dev = generator.device if generator is not None else torch.device("cpu")
        seed = torch.empty(4, dtype=torch.int64, device=dev).random_(-(2**63), None, generator=generator)
        self.state = seed.cpu().numpy().view(np.uint64).copy()
        if not self.state.any():  # xoshiro's one forbidden state
            self.state[0] = np.uint64(1)
        self.random_words = 0

    def equilibrate(self, n: int) -> None:
        self.advance(n)

    def advance(self, n: int) -> None:
        """``n`` full sweeps (both colours) of every lattice."""
        if n > 0:
            self.random_words += int(self.k.sweep_words(self.S, self.W, self.A, 2 * n, self.state, self.field))

    def measure(self) -> tuple[Tensor, Tensor]:
        """Bond sum Σ_<ij> s_i s_j and magnetisation Σ_i s_i, int64 ``(M,)`` each."""
        anti, up = self.k.count_words(self.S)
        n = self.L * self.L
        b = torch.from_numpy(2 * n - 2 * anti.reshape(-1)[: self.M])
        m = torch.from_numpy(2 * up.reshape(-1)[: self.M] - n)
        return (b, m) if self.device.type == "cpu" else (b.to(self.device), m.to(self.device))

    def spins(self) -> Tensor:
        """int8 ±1 ``(M, L, L)`` on the device of the initial spins."""
        return torch.from_numpy(unpack_lanes(self.S, self.M)).to(self.device)
