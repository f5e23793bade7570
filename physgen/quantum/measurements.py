"""Projective measurements of N qubits in local Pauli bases: conventions, validation, rotations.

Conventions (shared with the rest of ``physgen.quantum``):

* A configuration ``sigma`` is a 0/1 vector; ``sigma_i = 0`` is spin up (Z eigenvalue +1).
* A dense state ``psi`` has length ``2**N`` with index ``sum_i sigma_i * 2**(N-1-i)`` (site 0 is
  the most significant bit).
* A *basis* is one Pauli letter per site, e.g. ``"ZZXZ"``; in tensors it is stored as integer
  codes ``Z = 0, X = 1, Y = 2`` (shape ``(N,)`` or ``(n, N)``).
* A measurement *outcome* on site i is 0 for the eigenvalue +1 of the measured Pauli operator
  and 1 for -1 (so the Z-basis outcome is ``sigma_i`` itself).

Measuring in basis b is a rotation followed by a Z measurement. With the single-site matrices
``U_b[s, s'] = <s_b | s'>`` (``|s_b>`` the eigenvector of Pauli b with eigenvalue ``1 - 2 s``)

    U_Z = [[1, 0], [0, 1]],   U_X = [[1, 1], [1, -1]] / sqrt(2),   U_Y = [[1, -i], [1, i]] / sqrt(2)

the amplitude of outcome ``s`` in the product basis ``b`` is

    psi_b(s) = sum_{s'} prod_i U_{b_i}[s_i, s'_i] psi(s'),

where only the non-Z sites need to be summed (``U_Z`` is the identity): ``2**k`` terms for ``k``
non-Z sites. The Born probability of the outcome is ``|psi_b(s)|**2``; it is normalised because
``prod_i U_{b_i}`` is unitary.

:class:`MeasurementRecords` holds ``n`` shots: ``outcomes (n, N)`` and ``bases (n, N)`` (codes),
validated on construction; it saves to and loads from a physgen safetensors file.

States and sampling (the data side, re-exported by ``simulators/quantum_data.py``):
``ghz_state``, ``w_state``, ``tfim_ground_state`` (exact diagonalisation, sign fixed to >= 0),
``measure(psi, bases, n_shots, seed=...)`` -- exact Born sampling of the rotated state
``|psi_b(s)|**2`` over all ``2**N`` outcomes (``O(N 2**N)`` per basis, N <= 24) -- and basis
schemes ``random_bases`` (at most ``max_non_z`` X/Y sites, Torlai et al., Nat. Phys. 14, 447
(2018)) and ``pair_bases`` (nearest-neighbour pairs in XX, XY, YX, YY). A GHZ state's relative
phase is invisible in every basis with fewer than N non-Z sites (all its reduced states are
diagonal), so GHZ tomography needs global bases such as ``"X"*N`` and ``"Y" + "X"*(N-1)``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "PAULI_LETTERS",
    "BASIS_CODE",
    "basis_unitary",
    "parse_bases",
    "bases_to_strings",
    "check_outcomes",
    "MeasurementRecords",
    "rotate_dense",
    "enumerate_configs",
    "ghz_state",
    "w_state",
    "tfim_ground_state",
    "born_probabilities",
    "measure",
    "random_bases",
    "pair_bases",
]

PAULI_LETTERS = ("Z", "X", "Y")
BASIS_CODE = {"Z": 0, "X": 1, "Y": 2}

_S = 1.0 / math.sqrt(2.0)
_UNITARIES = np.array(
    [
        [[1.0, 0.0], [0.0, 1.0]],
        [[_S, _S], [_S, -_S]],
        [[_S, -1j * _S], [_S, 1j * _S]],
    ],
    dtype=np.complex128,
)


def basis_unitary(code: int | str, *, dtype: torch.dtype = torch.complex128, device=None) -> Tensor:
    """The 2x2 matrix ``U_b[s, s'] = <s_b|s'>`` of one Pauli basis (a letter or a code 0/1/2)."""
    if isinstance(code, str):
        code = parse_bases(code, 1)[0, 0].item()
    if code not in (0, 1, 2):
        raise ValueError(f"basis code {code!r} is not one of 0 (Z), 1 (X), 2 (Y).")
    return torch.as_tensor(_UNITARIES[code], dtype=dtype, device=device)


def _unitaries(dtype: torch.dtype, device) -> Tensor:
    """All three matrices stacked: ``(3, 2, 2)``."""
    return torch.as_tensor(_UNITARIES, device=device).to(dtype)


def parse_bases(bases: str | Sequence[str] | Tensor | np.ndarray, n_sites: int) -> Tensor:
    """Validate bases and return their integer codes.

    Args:
        bases: one basis string (``"ZZXZ"``), a sequence of basis strings, or an integer
            array/tensor of codes of shape ``(N,)`` or ``(n, N)``.
        n_sites: N, the number of qubits each basis must cover.

    Returns:
        codes: ``(n, N)`` long tensor (``n = 1`` for a single basis).

    Raises:
        ValueError: a basis of the wrong length, an unknown letter or an invalid code.
    """
    if isinstance(bases, str):
        bases = [bases]
    if isinstance(bases, (Tensor, np.ndarray)):
        codes = torch.as_tensor(bases)
        if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
            if not torch.all(codes == torch.round(codes.real if codes.is_complex() else codes.float())):
                raise ValueError("basis codes must be integers 0 (Z), 1 (X), 2 (Y); got non-integer values.")
        codes = codes.real.long() if codes.is_complex() else codes.long()
        if codes.dim() == 1:
            codes = codes.unsqueeze(0)
        if codes.dim() != 2 or codes.shape[1] != n_sites:
            raise ValueError(
                f"basis codes have shape {tuple(codes.shape)}, expected (n, {n_sites}): one code per site "
                f"for a {n_sites}-site system."
            )
        bad = (codes < 0) | (codes > 2)
        if bool(bad.any()):
            raise ValueError(
                f"invalid basis code {int(codes[bad][0])}: allowed codes are 0 (Z), 1 (X), 2 (Y)."
            )
        return codes
    if not isinstance(bases, Sequence) or len(bases) == 0:
        raise ValueError("bases must be a basis string like 'ZZXZ', a non-empty list of them, or a code array.")
    rows = []
    for j, b in enumerate(bases):
        if not isinstance(b, str):
            raise ValueError(f"basis #{j} is {b!r}, not a string of Pauli letters like 'ZZXZ'.")
        if len(b) != n_sites:
            raise ValueError(
                f"basis #{j} {b!r} has {len(b)} letters but the system has {n_sites} sites; "
                "give one Pauli letter (X, Y or Z) per site."
            )
        row = []
        for i, ch in enumerate(b.upper()):
            if ch not in BASIS_CODE:
                raise ValueError(
                    f"basis #{j} {b!r} has the invalid letter {ch!r} at site {i}; allowed letters are X, Y, Z."
                )
            row.append(BASIS_CODE[ch])
        rows.append(row)
    return torch.tensor(rows, dtype=torch.long)


def bases_to_strings(codes: Tensor) -> list[str]:
    """Inverse of :func:`parse_bases`: ``(n, N)`` codes -> list of n basis strings."""
    codes = torch.as_tensor(codes).reshape(-1, codes.shape[-1]).tolist()
    return ["".join(PAULI_LETTERS[c] for c in row) for row in codes]


def check_outcomes(outcomes: Tensor | np.ndarray, n_sites: int | None = None) -> Tensor:
    """Validate measurement outcomes and return them as a ``(n, N)`` long tensor.

    Raises:
        ValueError: not 2-D, wrong number of sites, or values other than 0 and 1.
    """
    out = torch.as_tensor(outcomes)
    if out.dim() == 1:
        out = out.unsqueeze(0)
    if out.dim() != 2:
        raise ValueError(f"outcomes must have shape (n_shots, n_sites); got {tuple(out.shape)}.")
    if n_sites is not None and out.shape[1] != n_sites:
        raise ValueError(
            f"each measurement record has {out.shape[1]} outcomes but the system has {n_sites} sites; "
            "records must hold one 0/1 outcome per site."
        )
    if out.is_complex():
        raise ValueError("outcomes must be real 0/1 values, got a complex array.")
    if out.numel() and not bool(((out == 0) | (out == 1)).all()):
        bad = out[(out != 0) & (out != 1)][0].item()
        raise ValueError(
            f"outcomes must be 0 (eigenvalue +1) or 1 (eigenvalue -1); found {bad!r}. "
            "Convert spins s = +-1 with sigma = (1 - s) / 2."
        )
    return out.long()


@dataclass
class MeasurementRecords:
    """Shots of a projective measurement in local Pauli bases.

    Attributes:
        outcomes: ``(n, N)`` long, 0/1 per site (0 = eigenvalue +1).
        bases: ``(n, N)`` long basis codes (0 = Z, 1 = X, 2 = Y) per shot and site.
    """

    outcomes: Tensor
    bases: Tensor

    def __post_init__(self) -> None:
        self.outcomes = check_outcomes(self.outcomes)
        n_sites = self.outcomes.shape[1]
        bases = self.bases
        if isinstance(bases, (str, list, tuple)):
            bases = parse_bases(bases, n_sites)
            if bases.shape[0] == 1:
                bases = bases.expand(self.outcomes.shape[0], n_sites)
        self.bases = parse_bases(bases, n_sites).to(self.outcomes.device)
        if self.bases.shape[0] != self.outcomes.shape[0]:
            raise ValueError(
                f"{self.outcomes.shape[0]} outcome rows but {self.bases.shape[0]} basis rows; give one basis "
                "per shot (or a single basis for all shots)."
            )

    @property
    def n_sites(self) -> int:
        return self.outcomes.shape[1]

    def __len__(self) -> int:
        return self.outcomes.shape[0]

    def to(self, device) -> "MeasurementRecords":
        return MeasurementRecords(self.outcomes.to(device), self.bases.to(device))

    def __getitem__(self, idx) -> "MeasurementRecords":
        return MeasurementRecords(self.outcomes[idx], self.bases[idx])

    def basis_counts(self) -> dict[str, int]:
        """Number of shots per distinct basis string."""
        uniq, counts = torch.unique(self.bases, dim=0, return_counts=True)
        return dict(zip(bases_to_strings(uniq), counts.tolist()))

    def save(self, path: str | os.PathLike, meta: dict | None = None) -> Path:
        """Write a physgen safetensors file of kind ``"measurement_records"``."""
        from physgen.io import save_file

        config = {"n_sites": self.n_sites, "n_shots": len(self), "meta": meta or {}}
        return save_file(
            path, {"outcomes": self.outcomes.to(torch.uint8), "bases": self.bases.to(torch.uint8)},
            "measurement_records", config,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MeasurementRecords":
        """Read records written by :meth:`save` (validated again on load)."""
        from physgen.io import load_file

        tensors, _ = load_file(path, kind="measurement_records")
        return cls(tensors["outcomes"].long(), tensors["bases"].long())


def rotate_dense(psi: Tensor, basis: Tensor | str) -> Tensor:
    """Amplitudes of every outcome in one product basis: ``psi_b = (⊗_i U_{b_i}) psi``.

    Args:
        psi: ``(*B, 2**N)`` (real or complex), dense in the standard index order.
        basis: a basis string or ``(N,)`` codes.

    Returns:
        ``(*B, 2**N)`` complex tensor; entry ``idx(s)`` is ``psi_b(s)``.
    """
    n = int(round(math.log2(psi.shape[-1])))
    if 2**n != psi.shape[-1]:
        raise ValueError(f"a dense state must have length 2**N; got {psi.shape[-1]}.")
    codes = parse_bases(basis, n)[0]
    cdtype = torch.complex128 if psi.dtype in (torch.float64, torch.complex128) else torch.complex64
    out = psi.to(cdtype)
    batch = out.shape[:-1]
    u_all = _unitaries(cdtype, out.device)
    out = out.reshape(*batch, *([2] * n))
    nb = len(batch)
    for i, c in enumerate(codes.tolist()):
        if c == 0:
            continue
        # contract U[s, s'] with the axis of site i, then move the new axis back in place
        out = torch.tensordot(out, u_all[c], dims=([nb + i], [1]))
        out = torch.movedim(out, -1, nb + i)
    return out.reshape(*batch, 2**n)


def enumerate_configs(n_sites: int, *, device=None, dtype: torch.dtype = torch.long) -> Tensor:
    """All ``2**N`` configurations in the dense index order: ``(2**N, N)`` 0/1."""
    idx = torch.arange(2**n_sites, device=device)
    shifts = torch.arange(n_sites - 1, -1, -1, device=device)
    return ((idx[:, None] >> shifts) & 1).to(dtype)


# -- states and exact sampling ---------------------------------------------------------


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
