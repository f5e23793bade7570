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

States and exact Born sampling (the data side) live in :mod:`physgen.quantum.states`.
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
    c = int(parse_bases(code, 1)[0, 0]) if isinstance(code, str) else code
    if c not in (0, 1, 2):
        raise ValueError(f"basis code {c!r} is not one of 0 (Z), 1 (X), 2 (Y).")
    return torch.as_tensor(_UNITARIES[c], dtype=dtype, device=device)


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
            raise ValueError(f"invalid basis code {int(codes[bad][0])}: allowed codes are 0 (Z), 1 (X), 2 (Y).")
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
    rows = torch.as_tensor(codes).reshape(-1, codes.shape[-1]).tolist()
    return ["".join(PAULI_LETTERS[c] for c in row) for row in rows]


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

    def to(self, device) -> MeasurementRecords:
        return MeasurementRecords(self.outcomes.to(device), self.bases.to(device))

    def __getitem__(self, idx) -> MeasurementRecords:
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
            path,
            {"outcomes": self.outcomes.to(torch.uint8), "bases": self.bases.to(torch.uint8)},
            "measurement_records",
            config,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> MeasurementRecords:
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
