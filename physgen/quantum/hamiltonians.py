r"""Spin-1/2 Hamiltonians in Pauli matrices and their batched local energy.

Conventions: a configuration ``sigma`` is a ``(B, N)`` tensor of 0/1; the spin value is
``s_i = 1 - 2 sigma_i`` (``sigma = 0`` is spin up, eigenvalue +1 of ``Z``). Dense basis
index ``= sum_i sigma_i 2^(N-1-i)`` (site 0 is the most significant bit).

Models (``X, Y, Z`` are Pauli matrices, **not** spin-1/2 operators ``S = sigma/2``):

* transverse-field Ising  ``H = -J sum_<ij> Z_i Z_j - h sum_i X_i``;
* Heisenberg (J1-J2)      ``H = J sum_<ij> (X_i X_j + Y_i Y_j + Z_i Z_j)
  + J2 sum_<<ij>> (X_i X_j + Y_i Y_j + Z_i Z_j)``; in spin-1/2 units this is
  ``4 J sum S_i.S_j`` (so energies are 4x the usual spin-1/2 values).

Matrix elements: ``Z_i Z_j`` is diagonal with value ``s_i s_j``; ``X_i`` flips site i with
element 1; ``X_i X_j + Y_i Y_j = 2 (S+_i S-_j + S-_i S+_j)`` flips an anti-parallel pair
with element 2 and annihilates a parallel pair.

Local energy: for a wavefunction given by ``log psi`` (complex),

    E_loc(sigma) = sum_sigma' H_{sigma sigma'} psi(sigma') / psi(sigma)
                 = H_diag(sigma) + sum_{sigma' != sigma} H_{sigma sigma'} exp(log psi(sigma') - log psi(sigma)).

All connected configurations of the whole batch are evaluated in one (optionally chunked)
call of ``log_psi``. A wavefunction given as ``(log|psi|, sign)`` is accepted too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from physgen.quantum.lattice import Lattice, lattice_from_config

__all__ = ["SpinHamiltonian", "TransverseFieldIsing", "Heisenberg", "as_log_psi", "hamiltonian_from_config"]

LogPsi = Callable[[Tensor], Any]


def as_log_psi(out: Any) -> Tensor:
    """Normalise a wavefunction output to a complex ``(B,)`` tensor ``log psi``.

    Accepts a complex tensor, a real tensor (log of a positive amplitude) or a tuple
    ``(log_abs, sign)`` with ``sign`` in {-1, +1} (or complex phase factors).
    """
    if isinstance(out, tuple):
        log_abs, sign = out
        sign = torch.as_tensor(sign, device=log_abs.device)
        if sign.is_complex():
            return log_abs.to(torch.complex128 if log_abs.dtype == torch.float64 else torch.complex64) + torch.log(sign)
        phase = torch.where(sign < 0, math.pi, 0.0).to(log_abs.dtype)
        return torch.complex(log_abs, phase)
    if not out.is_complex():
        return torch.complex(out, torch.zeros_like(out))
    return out


def _call(log_psi: Any, sigma: Tensor) -> Tensor:
    fn = log_psi.log_psi if hasattr(log_psi, "log_psi") else log_psi
    return as_log_psi(fn(sigma))


def _check_sigma(sigma: Tensor, n_sites: int) -> Tensor:
    if sigma.ndim != 2 or sigma.shape[-1] != n_sites:
        raise ValueError(
            f"sigma must have shape (B, {n_sites}) for this {n_sites}-site Hamiltonian, got {tuple(sigma.shape)}; "
            "the lattice of the Hamiltonian and the wavefunction's n_sites must match."
        )
    return sigma


class SpinHamiltonian:
    """Base class: a real Hamiltonian on ``lattice`` with Pauli-string terms.

    Subclasses implement :meth:`diagonal` and :meth:`connected` (torch, batched) and
    :meth:`_matrix_arrays` (numpy, for exact diagonalization).
    """

    lattice: Lattice
    conserves_sz: bool = False

    @property
    def n_sites(self) -> int:
        return self.lattice.n_sites

    # ----- torch side -------------------------------------------------------------------
    def diagonal(self, sigma: Tensor) -> Tensor:
        """Diagonal elements ``H_{sigma sigma}``. sigma: ``(B, N)`` -> ``(B,)`` float64."""
        raise NotImplementedError

    def connected(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Off-diagonal connections of a batch.

        Args:
            sigma: ``(B, N)`` configurations.

        Returns:
            sigma_conn: ``(K, N)`` connected configurations (same dtype as sigma),
            mels: ``(K,)`` float64 matrix elements ``H_{sigma sigma'}``,
            batch_index: ``(K,)`` long, the row of ``sigma`` each connection belongs to.
        """
        raise NotImplementedError

    def local_energy(
        self,
        log_psi: LogPsi,
        sigma: Tensor,
        log_psi_sigma: Tensor | None = None,
        *,
        chunk_size: int | None = None,
    ) -> Tensor:
        """Batched local energy ``E_loc(sigma) = <sigma|H|psi> / <sigma|psi>``.

        Args:
            log_psi: a wavefunction module (with ``.log_psi``) or a callable
                ``sigma (B', N) -> (B',)`` giving complex ``log psi`` (or ``(log|psi|, sign)``).
            sigma: ``(B, N)`` configurations of 0/1.
            log_psi_sigma: ``(B,)`` precomputed ``log psi(sigma)`` (saves one call).
            chunk_size: evaluate connected configurations in chunks of this many rows.

        Returns:
            ``(B,)`` complex128 local energies.
        """
        sigma = _check_sigma(sigma, self.n_sites)
        with torch.no_grad():
            if log_psi_sigma is None:
                log_psi_sigma = _call(log_psi, sigma)
            lp0 = log_psi_sigma.detach().to(torch.complex128)
            e = self.diagonal(sigma).to(torch.complex128)
            conn, mels, bidx = self.connected(sigma)
            if conn.shape[0] > 0:
                # neighbouring samples share connected configurations: evaluate each distinct one once
                uniq, inv = torch.unique(conn, dim=0, return_inverse=True)
                if chunk_size is None or uniq.shape[0] <= chunk_size:
                    lpc = _call(log_psi, uniq).detach().to(torch.complex128)
                else:
                    lpc = torch.cat([_call(log_psi, c).detach().to(torch.complex128) for c in uniq.split(chunk_size)])
                lpc = lpc[inv]
                ratio = torch.exp(lpc - lp0[bidx]) * mels.to(torch.complex128)
                e = e.index_add(0, bidx, ratio)
        return e

    # ----- numpy side (exact diagonalization) -----------------------------------------
    def _matrix_arrays(self, states: np.ndarray) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray, float]]]:
        """Diagonal and off-diagonal terms on basis states given as dense indices.

        Returns ``diag`` (len(states),) and a list of ``(rows, target_indices, value)``
        where ``target_indices`` are dense indices (not positions) of the connected states.
        """
        raise NotImplementedError

    def matrix_in_basis(self, states: np.ndarray) -> sp.csr_matrix:
        """Sparse matrix of H restricted to sorted dense basis indices ``states``.

        The set must be closed under H (e.g. all states, or a fixed-Sz sector of a
        Hamiltonian that conserves Sz).
        """
        states = np.asarray(states, dtype=np.int64)
        diag, terms = self._matrix_arrays(states)
        n = len(states)
        rows = [np.arange(n)]
        cols = [np.arange(n)]
        vals = [diag]
        for r, tgt, v in terms:
            pos = np.searchsorted(states, tgt)
            pos = np.minimum(pos, n - 1)
            if not np.all(states[pos] == tgt):
                raise ValueError("the basis is not closed under this Hamiltonian (use the full space).")
            rows.append(r)
            cols.append(pos)
            vals.append(np.full(len(r), v))
        return sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n), dtype=np.float64
        )

    def to_sparse(self) -> sp.csr_matrix:
        """The full ``(2^N, 2^N)`` Hamiltonian as a CSR matrix (basis index: site 0 = MSB)."""
        N = self.n_sites
        if N > 24:
            raise ValueError(f"to_sparse builds a 2^N matrix; N={N} is too large (use N <= 24).")
        return self.matrix_in_basis(np.arange(2**N, dtype=np.int64))

    def to_dense(self) -> np.ndarray:
        """The full Hamiltonian as a dense array (small N only)."""
        if self.n_sites > 14:
            raise ValueError(f"to_dense needs N <= 14, got N={self.n_sites}; use to_sparse().")
        return self.to_sparse().toarray()

    def to_config(self) -> dict:
        raise NotImplementedError


def _bits(states: np.ndarray, N: int) -> np.ndarray:
    """``(len(states), N)`` array of sigma_i for dense indices (site 0 = MSB)."""
    shifts = np.arange(N - 1, -1, -1, dtype=np.int64)
    return ((states[:, None] >> shifts[None, :]) & 1).astype(np.int8)


def _spins(sigma: Tensor) -> Tensor:
    return 1.0 - 2.0 * sigma.to(torch.float64)


class TransverseFieldIsing(SpinHamiltonian):
    """Transverse-field Ising model ``H = -J sum_<ij> Z_i Z_j - h sum_i X_i`` (Pauli matrices).

    Args:
        lattice: a :class:`~physgen.quantum.lattice.Chain` or ``Square``.
        J: Ising coupling (J > 0 ferromagnetic).
        h: transverse field.
    """

    def __init__(self, lattice: Lattice, J: float = 1.0, h: float = 1.0) -> None:
        if not isinstance(lattice, Lattice):
            raise TypeError(f"lattice must be a physgen.quantum.lattice.Lattice, got {type(lattice).__name__}.")
        self.lattice = lattice
        self.J = float(J)
        self.h = float(h)
        self._edges = torch.as_tensor(lattice.edges, dtype=torch.long)

    def __repr__(self) -> str:
        return f"TransverseFieldIsing({self.lattice!r}, J={self.J}, h={self.h})"

    def diagonal(self, sigma: Tensor) -> Tensor:
        s = _spins(sigma)
        e = self._edges.to(sigma.device)
        if len(e) == 0:
            return torch.zeros(sigma.shape[0], dtype=torch.float64, device=sigma.device)
        return -self.J * (s[:, e[:, 0]] * s[:, e[:, 1]]).sum(-1)

    def connected(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        B, N = sigma.shape
        dev = sigma.device
        if self.h == 0.0:
            return (
                sigma[:0],
                torch.zeros(0, dtype=torch.float64, device=dev),
                torch.zeros(0, dtype=torch.long, device=dev),
            )
        eye = torch.eye(N, dtype=sigma.dtype, device=dev)
        conn = (sigma[:, None, :] + eye[None] - 2 * sigma[:, None, :] * eye[None]).reshape(B * N, N)
        mels = torch.full((B * N,), -self.h, dtype=torch.float64, device=dev)
        bidx = torch.arange(B, device=dev).repeat_interleave(N)
        return conn, mels, bidx

    def local_energy(self, log_psi, sigma, log_psi_sigma=None, *, chunk_size=None):
        """As :meth:`SpinHamiltonian.local_energy`; uses ``log_psi.log_psi_single_flips`` when the
        wavefunction provides it (autoregressive prefix sharing), otherwise the generic path."""
        flips = getattr(log_psi, "log_psi_single_flips", None)
        if flips is None or self.h == 0.0:
            return super().local_energy(log_psi, sigma, log_psi_sigma, chunk_size=chunk_size)
        sigma = _check_sigma(sigma, self.n_sites)
        with torch.no_grad():
            if log_psi_sigma is None:
                log_psi_sigma = _call(log_psi, sigma)
            rows = max(1, (chunk_size or 10**9) // self.n_sites)
            parts = [flips(s) for s in sigma.split(rows)]
            if any(p is None for p in parts):
                return super().local_energy(log_psi, sigma, log_psi_sigma, chunk_size=chunk_size)
            lpf = torch.cat(parts).to(torch.complex128)
            lp0 = log_psi_sigma.detach().to(torch.complex128)
            off = torch.exp(lpf - lp0[:, None]).sum(-1) * (-self.h)
            return self.diagonal(sigma).to(torch.complex128) + off

    def _matrix_arrays(self, states):
        N = self.n_sites
        bits = _bits(states, N)
        s = 1 - 2 * bits.astype(np.int64)
        e = self.lattice.edges
        diag = -self.J * (s[:, e[:, 0]] * s[:, e[:, 1]]).sum(-1).astype(np.float64) if len(e) else np.zeros(len(states))
        terms = []
        if self.h != 0.0:
            rows = np.arange(len(states))
            for i in range(N):
                terms.append((rows, states ^ (1 << (N - 1 - i)), -self.h))
        return diag, terms

    def matvec_operator(self):
        """A scipy ``LinearOperator`` for the full space (no matrix stored; for ED up to ~24 spins)."""
        from scipy.sparse.linalg import LinearOperator

        N = self.n_sites
        states = np.arange(2**N, dtype=np.int64)
        diag, _ = self._matrix_arrays(states)
        flips = [states ^ (1 << (N - 1 - i)) for i in range(N)] if N <= 20 else None
        h = self.h

        def mv(x: np.ndarray) -> np.ndarray:
            x = np.asarray(x).reshape(-1)
            y = diag * x
            if h != 0.0:
                for i in range(N):
                    idx = flips[i] if flips is not None else states ^ (1 << (N - 1 - i))
                    y -= h * x[idx]
            return y

        return LinearOperator((2**N, 2**N), matvec=mv, dtype=np.float64)

    def to_config(self) -> dict:
        return {"type": "tfim", "J": self.J, "h": self.h, "lattice": self.lattice.to_config()}


class Heisenberg(SpinHamiltonian):
    """Heisenberg (J1-J2) model in Pauli matrices: ``H = J sum_<ij> P_ij + J2 sum_<<ij>> P_ij``.

    ``P_ij = X_i X_j + Y_i Y_j + Z_i Z_j`` (Pauli matrices, i.e. ``4 S_i.S_j``); energies
    are 4x those of the spin-1/2 convention. Conserves total Sz.

    Args:
        lattice: chain or square lattice.
        J: nearest-neighbour coupling (J > 0 antiferromagnetic).
        J2: next-nearest-neighbour coupling (0 disables it).
    """

    conserves_sz = True

    def __init__(self, lattice: Lattice, J: float = 1.0, J2: float = 0.0) -> None:
        if not isinstance(lattice, Lattice):
            raise TypeError(f"lattice must be a physgen.quantum.lattice.Lattice, got {type(lattice).__name__}.")
        self.lattice = lattice
        self.J = float(J)
        self.J2 = float(J2)
        bonds = [(lattice.edges, self.J)]
        if self.J2 != 0.0 and len(lattice.next_edges):
            bonds.append((lattice.next_edges, self.J2))
        self._bonds_np = np.concatenate([b for b, _ in bonds]) if bonds else np.zeros((0, 2), np.int64)
        self._coup_np = np.concatenate([np.full(len(b), c) for b, c in bonds]) if bonds else np.zeros(0)
        self._bonds = torch.as_tensor(self._bonds_np, dtype=torch.long)
        self._coup = torch.as_tensor(self._coup_np, dtype=torch.float64)

    def __repr__(self) -> str:
        return f"Heisenberg({self.lattice!r}, J={self.J}, J2={self.J2})"

    def diagonal(self, sigma: Tensor) -> Tensor:
        s = _spins(sigma)
        b = self._bonds.to(sigma.device)
        return (s[:, b[:, 0]] * s[:, b[:, 1]] * self._coup.to(sigma.device)).sum(-1)

    def connected(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        B, N = sigma.shape
        dev = sigma.device
        b = self._bonds.to(dev)
        coup = self._coup.to(dev)
        sl = sigma.long()
        anti = sl[:, b[:, 0]] != sl[:, b[:, 1]]  # (B, n_bonds)
        rows, k = anti.nonzero(as_tuple=True)
        conn = sigma[rows].clone()
        i, j = b[k, 0], b[k, 1]
        r = torch.arange(len(rows), device=dev)
        conn[r, i] = 1 - conn[r, i]
        conn[r, j] = 1 - conn[r, j]
        return conn, 2.0 * coup[k], rows

    def _matrix_arrays(self, states):
        N = self.n_sites
        bits = _bits(states, N)
        s = 1 - 2 * bits.astype(np.int64)
        b = self._bonds_np
        diag = (s[:, b[:, 0]] * s[:, b[:, 1]] * self._coup_np).sum(-1).astype(np.float64)
        terms = []
        for (i, j), c in zip(b, self._coup_np):
            rows = np.nonzero(bits[:, i] != bits[:, j])[0]
            tgt = states[rows] ^ ((1 << (N - 1 - int(i))) | (1 << (N - 1 - int(j))))
            terms.append((rows, tgt, 2.0 * float(c)))
        return diag, terms

    def to_config(self) -> dict:
        return {"type": "heisenberg", "J": self.J, "J2": self.J2, "lattice": self.lattice.to_config()}


def hamiltonian_from_config(config: dict) -> SpinHamiltonian:
    """Rebuild a Hamiltonian from :meth:`SpinHamiltonian.to_config` output."""
    lat = lattice_from_config(config["lattice"])
    kind = config.get("type")
    if kind == "tfim":
        return TransverseFieldIsing(lat, J=config.get("J", 1.0), h=config.get("h", 1.0))
    if kind == "heisenberg":
        return Heisenberg(lat, J=config.get("J", 1.0), J2=config.get("J2", 0.0))
    raise ValueError(f"unknown Hamiltonian type {kind!r}; use 'tfim' or 'heisenberg'.")
