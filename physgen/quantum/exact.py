r"""Exact ground states and closed-form energies used as oracles.

Exact diagonalization: the Hamiltonian restricted to a basis (full space, or the
``Sz = 0`` sector of an Sz-conserving model with even N) is diagonalized with
``scipy.sparse.linalg.eigsh`` (Lanczos, smallest algebraic); small spaces use dense
``numpy.linalg.eigh``. The TFIM uses a matrix-free ``LinearOperator`` so N = 22-24 fits in
memory. Dense basis index ``= sum_i sigma_i 2^(N-1-i)``.

Closed forms (Pauli-matrix Hamiltonians, see :mod:`physgen.quantum.hamiltonians`):

* TFIM chain, periodic, ``H = -J sum Z_i Z_{i+1} - h sum X_i`` with J >= 0: after
  Jordan-Wigner the ground state lies in the even-fermion-parity sector, whose fermions
  obey antiperiodic boundary conditions, ``k = pi (2m+1)/N``, m = 0..N-1, and

      E0 = - sum_k sqrt(J^2 + h^2 - 2 J h cos k).

  (An unpaired mode at k = pi, present for odd N, has energy 2(J + h) > 0 and stays empty.)
* TFIM chain, open: in Majorana operators ``a_1..a_2N``, ``H = (i/4) sum M_pq a_p a_q``
  with real antisymmetric M: ``M_{2i-1,2i} = 2h`` (field on site i), ``M_{2i,2i+1} = 2J``
  (bond i, i+1). The single-particle energies are the N singular values ``eps_l`` of M
  (each appears twice), and ``E0 = -(1/2) sum_l eps_l = -(1/4) sum(svd(M))``.
* Heisenberg chain, periodic, ``H = J sum P_{i,i+1} = 4 J sum S_i.S_{i+1}``: the Bethe
  ansatz with M = N/2 real rapidities ``lambda_j`` solving

      N * 2 arctan(2 lambda_j) = 2 pi I_j + sum_{l != j} 2 arctan(lambda_j - lambda_l),
      I_j = -(M-1)/2, ..., (M-1)/2,

  gives ``E0 = 4 J [N/4 - sum_j 2 / (1 + 4 lambda_j^2)]``. For N -> inf the energy per
  bond tends to ``4 J (1/4 - ln 2)`` (only asymptotically).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.sparse.linalg as spla
from scipy.optimize import fsolve

import torch
from torch import nn

from physgen.quantum.hamiltonians import SpinHamiltonian, TransverseFieldIsing, as_log_psi
from physgen.quantum.wavefunctions import as_wavefunction

__all__ = [
    "ground_state",
    "ground_state_energy",
    "sector_states",
    "tfim_chain_energy",
    "heisenberg_chain_bethe_energy",
    "HEISENBERG_ENERGY_PER_BOND_INF",
    "all_configs",
    "exact_variational_energy",
]

#: Heisenberg chain ground-state energy per bond for N -> inf, Pauli units: 4 (1/4 - ln 2).
HEISENBERG_ENERGY_PER_BOND_INF = 4.0 * (0.25 - math.log(2.0))

_DENSE_MAX = 256


def sector_states(n_sites: int, n_down: int) -> np.ndarray:
    """Sorted dense indices of the states with exactly ``n_down`` sites at sigma = 1.

    ``n_down = N/2`` is the ``Sz = 0`` sector.
    """
    if not 0 <= n_down <= n_sites:
        raise ValueError(f"n_down must be in [0, {n_sites}], got {n_down}.")
    if n_sites > 30:
        raise ValueError(f"n_sites={n_sites} is too large for exact enumeration.")
    idx = np.arange(2**n_sites, dtype=np.int64)
    # popcount
    c = idx.copy()
    count = np.zeros_like(idx)
    while np.any(c):
        count += c & 1
        c >>= 1
    return idx[count == n_down]


def _lowest(op, n: int, *, tol: float = 1e-12) -> tuple[float, np.ndarray]:
    if n <= _DENSE_MAX:
        mat = op.toarray() if hasattr(op, "toarray") else op @ np.eye(n)
        w, v = np.linalg.eigh(mat)
        return float(w[0]), v[:, 0]
    v0 = np.random.default_rng(0).standard_normal(n)
    ncv = min(n - 1, 40 if n <= 2**20 else 12)  # Lanczos memory is ncv * n doubles
    w, v = spla.eigsh(op, k=1, which="SA", v0=v0, tol=tol, ncv=ncv)
    return float(w[0]), v[:, 0]


def _fix_sign(psi: np.ndarray) -> np.ndarray:
    psi = psi / np.linalg.norm(psi)
    k = int(np.argmax(np.abs(psi)))
    return psi if psi[k] >= 0 else -psi


def ground_state(hamiltonian: SpinHamiltonian, *, sector: str | None = "auto") -> tuple[float, np.ndarray]:
    """Exact ground state by sparse diagonalization.

    Args:
        hamiltonian: a :class:`TransverseFieldIsing` or :class:`Heisenberg` with N <= ~24
            (TFIM, matrix-free) or N <= ~26 (Heisenberg in the Sz = 0 sector).
        sector: ``"auto"`` uses the ``Sz = 0`` sector for Sz-conserving models with even N
            (the antiferromagnetic ground state lives there); ``None`` uses the full space;
            ``"sz0"`` demands the Sz = 0 sector (an error for odd N).

    Returns:
        ``(energy, psi)``: the ground-state energy and a real normalised ``(2^N,)`` vector
        in the dense basis order (sign fixed so the largest component is positive).
    """
    N = hamiltonian.n_sites
    if sector not in ("auto", None, "sz0"):
        raise ValueError(f"sector must be 'auto', None or 'sz0', got {sector!r}.")
    use_sector = False
    if sector == "sz0":
        if not hamiltonian.conserves_sz:
            raise ValueError(f"{type(hamiltonian).__name__} does not conserve Sz; use sector=None.")
        if N % 2:
            raise ValueError(f"the Sz = 0 sector needs an even number of sites, got N={N}.")
        use_sector = True
    elif sector == "auto":
        use_sector = hamiltonian.conserves_sz and N % 2 == 0 and N > 2
    if use_sector:
        states = sector_states(N, N // 2)
        mat = hamiltonian.matrix_in_basis(states)
        e, v = _lowest(mat, len(states))
        psi = np.zeros(2**N)
        psi[states] = v
        return e, _fix_sign(psi)
    if N > 24:
        raise ValueError(f"exact diagonalization of the full space needs N <= 24, got N={N}.")
    if isinstance(hamiltonian, TransverseFieldIsing) and 2**N > _DENSE_MAX:
        e, v = _lowest(hamiltonian.matvec_operator(), 2**N)
    else:
        e, v = _lowest(hamiltonian.to_sparse(), 2**N)
    return e, _fix_sign(v)


def ground_state_energy(hamiltonian: SpinHamiltonian, **kwargs) -> float:
    """The ground-state energy of :func:`ground_state`."""
    return ground_state(hamiltonian, **kwargs)[0]


def tfim_chain_energy(N: int, *, J: float = 1.0, h: float = 1.0, periodic: bool = True) -> float:
    """Free-fermion ground-state energy of the TFIM chain ``-J sum ZZ - h sum X`` (Pauli).

    Args:
        N: number of sites (>= 2; periodic chains need N >= 3).
        J: coupling; for periodic chains with odd N it must be >= 0 (an odd antiferromagnetic
            ring is frustrated and the formula does not apply).
        h: transverse field (its sign does not change the spectrum).
        periodic: periodic (closed form over antiperiodic momenta) or open (Majorana SVD).
    """
    if N < 2:
        raise ValueError(f"N must be >= 2, got {N}.")
    h = abs(float(h))
    J = float(J)
    if periodic:
        if N < 3:
            raise ValueError("a periodic chain needs N >= 3 (N = 2 would double the bond).")
        if J < 0 and N % 2:
            raise ValueError("the closed form needs J >= 0 for odd periodic N (frustrated ring).")
        J = abs(J)
        k = np.pi * (2 * np.arange(N) + 1) / N
        return float(-np.sum(np.sqrt(J * J + h * h - 2 * J * h * np.cos(k))))
    M = np.zeros((2 * N, 2 * N))
    for i in range(N):
        M[2 * i, 2 * i + 1] = 2 * h
        if i < N - 1:
            M[2 * i + 1, 2 * i + 2] = 2 * J
    M = M - M.T
    return float(-0.25 * np.sum(np.linalg.svd(M, compute_uv=False)))


def heisenberg_chain_bethe_energy(N: int, *, J: float = 1.0) -> float:
    """Bethe-ansatz ground-state energy of the periodic Heisenberg chain, Pauli units.

    ``H = J sum_i (X_i X_{i+1} + Y_i Y_{i+1} + Z_i Z_{i+1})`` with J > 0 and even N >= 4.
    Solves the Bethe equations for N/2 real rapidities (Newton / fsolve from the
    fixed-point iterate) and returns ``4 J (N/4 - sum_j 2/(1 + 4 lambda_j^2))``.
    """
    if N < 4 or N % 2:
        raise ValueError(f"the Bethe-ansatz ground state needs an even N >= 4, got N={N}.")
    if J <= 0:
        raise ValueError(f"the antiferromagnetic Bethe ground state needs J > 0, got J={J}.")
    M = N // 2
    I = np.arange(M) - (M - 1) / 2.0

    def rhs(lam: np.ndarray) -> np.ndarray:
        d = lam[:, None] - lam[None, :]
        return np.tan((np.pi * I + np.arctan(d).sum(1)) / N) / 2.0

    lam = np.tan(np.pi * I / N) / 2.0
    for _ in range(2000):
        new = rhs(lam)
        if np.max(np.abs(new - lam)) < 1e-14:
            lam = new
            break
        lam = 0.5 * lam + 0.5 * new

    def eqs(lam: np.ndarray) -> np.ndarray:
        d = lam[:, None] - lam[None, :]
        return 2 * N * np.arctan(2 * lam) - 2 * np.pi * I - 2 * np.arctan(d).sum(1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lam = fsolve(eqs, lam, xtol=1e-13)
    if np.max(np.abs(eqs(lam))) > 1e-9:
        raise RuntimeError(f"Bethe equations did not converge for N={N}.")
    e_half = J * (N / 4.0 - np.sum(2.0 / (1.0 + 4.0 * lam**2)))
    return float(4.0 * e_half)


def all_configs(N: int) -> np.ndarray:
    """``(2^N, N)`` array of sigma in the dense basis order (helper for enumeration)."""
    idx = np.arange(2**N, dtype=np.int64)
    return ((idx[:, None] >> np.arange(N - 1, -1, -1)[None, :]) & 1).astype(np.int64)


@torch.no_grad()
def exact_variational_energy(
    model: nn.Module, hamiltonian: SpinHamiltonian, *, chunk_size: int = 65536, sz0: bool | None = None
) -> float:
    """``<psi|H|psi> / <psi|psi>`` by enumerating all ``2^N`` states (N <= ~22).

    Uses the dense state vector and the sparse Hamiltonian (TFIM: matrix-free). ``sz0=True`` evaluates the
    model projected onto the Sz = 0 sector: the state that VMC optimises when a Metropolis sampler with
    Sz-conserving exchange moves draws the samples (an RBM on the Heisenberg model). The default (None) does so
    for models that vanish outside the sector (``u1=True``) and an Sz-conserving Hamiltonian.
    """
    wf = as_wavefunction(model)
    N = hamiltonian.n_sites
    if N > 22:
        raise ValueError(f"exact enumeration needs N <= 22, got N={N}.")
    sector = bool(getattr(model, "u1", False)) and hamiltonian.conserves_sz if sz0 is None else bool(sz0)
    if sector and not hamiltonian.conserves_sz:
        raise ValueError(f"sz0=True needs an Sz-conserving Hamiltonian; {type(hamiltonian).__name__} is not.")
    if sector:  # the model vanishes outside Sz = 0: enumerate the sector only
        states = sector_states(N, N // 2)
        cfg = torch.as_tensor(((states[:, None] >> np.arange(N - 1, -1, -1)[None, :]) & 1), dtype=torch.float64)
    else:
        cfg = torch.as_tensor(all_configs(N), dtype=torch.float64)
    lps = torch.cat(
        [as_log_psi(wf.log_psi(c.to(next(model.parameters()).device))).cpu() for c in cfg.split(chunk_size)]
    )
    lps = lps.to(torch.complex128)
    lps = lps - lps.real.max()
    psi = torch.exp(lps).numpy()
    if sector:
        hpsi = hamiltonian.matrix_in_basis(states) @ psi
    elif isinstance(hamiltonian, TransverseFieldIsing):
        op = hamiltonian.matvec_operator()
        hpsi = op.matvec(psi.real) + 1j * op.matvec(psi.imag)
    else:
        hpsi = hamiltonian.to_sparse() @ psi
    return float(np.real(np.vdot(psi, hpsi)) / np.real(np.vdot(psi, psi)))
