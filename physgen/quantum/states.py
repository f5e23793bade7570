"""Dense test states of N qubits and exact projective measurements of them (the data side of tomography).

Re-exported by ``simulators/quantum_data.py``: ``ghz_state``, ``w_state``, ``tfim_ground_state`` (exact
diagonalisation, sign fixed to >= 0),
``measure(psi, bases, n_shots, seed=...)`` -- exact Born sampling of the rotated state
``|psi_b(s)|**2`` over all ``2**N`` outcomes (``O(N 2**N)`` per basis, N <= 24) -- and basis
schemes ``random_bases`` (at most ``max_non_z`` X/Y sites, Torlai et al., Nat. Phys. 14, 447
(2018)) and ``pair_bases`` (nearest-neighbour pairs in XX, XY, YX, YY). A GHZ state's relative
phase is invisible in every basis with fewer than N non-Z sites (all its reduced states are
diagonal), so GHZ tomography needs global bases such as ``"X"*N`` and ``"Y" + "X"*(N-1)``.

Conventions (dense index order, Pauli basis codes, outcomes) are those of :mod:`physgen.quantum.measurements`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from physgen.quantum.measurements import MeasurementRecords, parse_bases, rotate_dense

__all__ = ["ghz_state", "w_state", "tfim_ground_state", "born_probabilities", "measure", "random_bases", "pair_bases"]


def ghz_state(n_sites: int, phase: float = 0.0) -> np.ndarray:
    """GHZ state ``(|0...0> + e^{i phase} |1...1>) / sqrt(2)``: ``(2**N,)`` complex128."""
    _check_n(n_sites)
    psi = np.zeros(2**n_sites, dtype=np.complex128)
    psi[0] = 1.0 / math.sqrt(2.0)
    psi[-1] = np.exp(1j * phase) / math.sqrt(2.0)
    return psi


def w_state(n_sites: int, phase: float = 0.0) -> np.ndarray:
    """W state ``sum_j e^{i j phase} |0..1_j..0> / sqrt(N)``: ``(2**N,)`` (float64 when phase = 0).

    A non-zero ``phase`` twists the relative phases of the N single-flip components (a plane
    wave of one flipped spin); local pair bases (XX, XY, YX, YY) resolve it.
    """
    _check_n(n_sites)
    idx = [2 ** (n_sites - 1 - i) for i in range(n_sites)]
    if phase == 0.0:
        psi = np.zeros(2**n_sites, dtype=np.float64)
        psi[idx] = 1.0 / math.sqrt(n_sites)
        return psi
    psi = np.zeros(2**n_sites, dtype=np.complex128)
    psi[idx] = np.exp(1j * phase * np.arange(n_sites)) / math.sqrt(n_sites)
    return psi


def tfim_ground_state(
    n_sites: int | None = None,
    *,
    h: float = 1.0,
    J: float = 1.0,
    periodic: bool = False,
    lattice=None,
) -> tuple[float, np.ndarray]:
    """Exact ground state of the transverse-field Ising model (chain or any ``Lattice``).

    Args:
        n_sites: chain length (ignored when ``lattice`` is given).
        h, J: couplings of ``H = -J sum Z Z - h sum X``.
        periodic: periodic chain (default open).
        lattice: a ``physgen.quantum.lattice.Lattice`` (e.g. ``Square(3, 3)``).

    Returns:
        ``(energy, psi)`` with ``psi`` ``(2**N,)`` float64, normalised, all entries >= 0.
    """
    from physgen.quantum.exact import ground_state
    from physgen.quantum.hamiltonians import TransverseFieldIsing
    from physgen.quantum.lattice import Chain

    if lattice is None:
        if n_sites is None:
            raise ValueError("give n_sites (a chain) or lattice=...")
        _check_n(n_sites)
        lattice = Chain(n_sites, periodic=periodic)
    energy, psi = ground_state(TransverseFieldIsing(lattice, J=J, h=h))
    psi = np.real_if_close(np.asarray(psi))
    if np.iscomplexobj(psi):
        raise RuntimeError("exact ground state of the TFIM came back complex; expected a real vector.")
    psi = psi.astype(np.float64)
    if psi.sum() < 0:
        psi = -psi
    psi /= np.linalg.norm(psi)
    return float(energy), psi


def _check_n(n_sites: int) -> None:
    if not isinstance(n_sites, (int, np.integer)) or n_sites < 1:
        raise ValueError(f"n_sites must be a positive integer, got {n_sites!r}.")
    if n_sites > 24:
        raise ValueError(f"n_sites = {n_sites}: dense states of 2**N amplitudes are limited to N <= 24.")


def _as_state(psi: np.ndarray | Tensor) -> tuple[Tensor, int]:
    t = torch.as_tensor(psi).detach().cpu()
    if t.dim() != 1:
        raise ValueError(f"psi must be a dense vector of shape (2**N,); got shape {tuple(t.shape)}.")
    n = int(round(math.log2(max(t.shape[0], 1))))
    if t.shape[0] < 2 or 2**n != t.shape[0]:
        raise ValueError(f"psi has length {t.shape[0]}, which is not 2**N for an integer N >= 1.")
    t = t.to(torch.complex128)
    norm = float(torch.linalg.vector_norm(t))
    if not math.isfinite(norm) or abs(norm - 1.0) > 1e-6:
        raise ValueError(f"psi has norm {norm:.6g}; normalise it first (psi / np.linalg.norm(psi)).")
    return t, n


def born_probabilities(psi: np.ndarray | Tensor, basis: str | Tensor) -> np.ndarray:
    """Probabilities ``|psi_b(s)|**2`` of all ``2**N`` outcomes in one basis: ``(2**N,)`` float64."""
    t, n = _as_state(psi)
    p = rotate_dense(t, parse_bases(basis, n)[0]).abs().square().numpy()
    return p / p.sum()


def measure(
    psi: np.ndarray | Tensor,
    bases: str | Sequence[str],
    n_shots: int | Sequence[int],
    *,
    seed: int | np.random.Generator | None = None,
) -> MeasurementRecords:
    """Exact projective measurements of ``psi`` in local Pauli bases.

    Args:
        psi: ``(2**N,)`` normalised dense state (numpy or torch, real or complex).
        bases: one basis string (``"ZZXZ..."``, one letter per site) or a list of them.
        n_shots: shots *per basis* (an int for all, or one int per basis).
        seed: an int or a ``numpy.random.Generator`` (same seed, same records).

    Returns:
        :class:`MeasurementRecords` with ``outcomes (n, N)`` 0/1 and ``bases (n, N)`` codes, the
        shots of each basis consecutive in the order given; ``n = sum of shots``.
    """
    t, n = _as_state(psi)
    codes = parse_bases(bases, n)
    if isinstance(n_shots, (int, np.integer)):
        shots = [int(n_shots)] * codes.shape[0]
    else:
        shots = [int(s) for s in n_shots]
        if len(shots) != codes.shape[0]:
            raise ValueError(f"{len(shots)} shot counts for {codes.shape[0]} bases; give one count per basis.")
    if any(s < 0 for s in shots):
        raise ValueError(f"shot counts must be >= 0, got {shots}.")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    weights = 2 ** np.arange(n - 1, -1, -1)
    outs, bs = [], []
    for b, s in zip(codes, shots):
        p = rotate_dense(t, b).abs().square().numpy()
        idx = rng.choice(p.shape[0], size=s, p=p / p.sum())
        outs.append(((idx[:, None] // weights) % 2).astype(np.int64))
        bs.append(b.expand(s, n))
    outcomes = torch.from_numpy(np.concatenate(outs, axis=0))
    return MeasurementRecords(outcomes, torch.cat(bs, dim=0))


def random_bases(
    n_sites: int,
    n_bases: int,
    *,
    max_non_z: int = 2,
    letters: str = "XY",
    seed: int | np.random.Generator | None = None,
) -> list[str]:
    """Random local bases: each has between 1 and ``max_non_z`` sites in X or Y, the rest Z.

    Args:
        n_sites: N.
        n_bases: how many bases to draw (duplicates are possible).
        max_non_z: the most non-Z sites per basis (the likelihood sums ``2**k`` terms for k of them).
        letters: which non-Z letters to draw from (``"XY"`` or ``"X"`` for real states).
        seed: an int or a ``numpy.random.Generator``.

    Returns:
        a list of ``n_bases`` basis strings.
    """
    _check_n(n_sites)
    if not 1 <= max_non_z <= n_sites:
        raise ValueError(f"max_non_z must be in 1..{n_sites}, got {max_non_z}.")
    if not letters or any(c not in "XY" for c in letters):
        raise ValueError(f"letters must be a non-empty subset of 'XY', got {letters!r}.")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    out = []
    for _ in range(n_bases):
        k = int(rng.integers(1, max_non_z + 1))
        sites = rng.choice(n_sites, size=k, replace=False)
        b = ["Z"] * n_sites
        for i in sites:
            b[int(i)] = letters[int(rng.integers(len(letters)))]
        out.append("".join(b))
    return out


def pair_bases(n_sites: int, *, periodic: bool = False, letters: str = "XY") -> list[str]:
    """All nearest-neighbour pair bases of a chain: sites (i, i+1) in {X, Y}^2, Z elsewhere."""
    _check_n(n_sites)
    pairs = [(i, i + 1) for i in range(n_sites - 1)]
    if periodic and n_sites > 2:
        pairs.append((n_sites - 1, 0))
    out = []
    for i, j in pairs:
        for a in letters:
            for c in letters:
                b = ["Z"] * n_sites
                b[i], b[j] = a, c
                out.append("".join(b))
    return out
