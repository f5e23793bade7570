r"""Informationally complete POVMs for tomography (Carrasquilla et al., Nat. Mach. Intell. 1, 155 (2019)).

A single-qubit POVM here is a set of ``K`` rank-one elements ``M_a = w_a |n_a><n_a|`` with
``sum_a M_a = I``, where ``|n_a>`` is the pure state of Bloch vector ``n_a``:

* ``"pauli6"``: ``w = 1/3``, ``n = +z, -z, +x, -x, +y, -y`` (a uniformly random Pauli basis, then a
  projective measurement; ``K = 6``, over-complete);
* ``"tetrahedral"``: ``w = 1/2``, ``n`` the vertices of a regular tetrahedron with one at ``+z``
  (``M_a = (I + n_a . sigma)/4``; ``K = 4``, minimal).

On N qubits the product POVM has outcomes ``a = (a_1..a_N)``, ``a_i in 0..K-1`` (a measurement record
is an ``(n, N)`` int64 array of them), and the Born rule gives ``P(a) = Tr(rho M_a1 x ... x M_aN)``;
for a pure state ``P(a) = prod_i w_ai |<n_a1 ... n_aN|psi>|^2``. The state is recovered from ``P``
with the dual frame ``Q_a = sum_b (T^+)_ab M_b``, ``T_ab = Tr(M_a M_b)``:
``rho = sum_a P(a) Q_a1 x ... x Q_aN`` (both POVMs are informationally complete).

Dense states follow :mod:`physgen.quantum.states` (length ``2^N``, site 0 the most significant bit,
``sigma = 0`` is ``|0>`` = spin up). Exact sampling (:func:`sample_povm`) measures the sites in turn:
after outcome ``a`` on a site the rest of the state is ``<n_a|psi>`` (rank-one elements), so a shot
costs ``O(2^N)``; GHZ states have closed forms for every N (:func:`ghz_povm_probability`,
:func:`sample_ghz_povm`).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "POVM",
    "get_povm",
    "check_outcomes",
    "povm_probabilities",
    "outcome_probability",
    "ghz_povm_probability",
    "sample_povm",
    "sample_ghz_povm",
    "reconstruct_density",
]

_PAULI = np.array([[[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]], dtype=np.complex128)


def _ket(n: np.ndarray) -> np.ndarray:
    """The qubit state ``(2,)`` of Bloch vector ``n``."""
    theta = math.acos(max(-1.0, min(1.0, float(n[2]))))
    phi = math.atan2(float(n[1]), float(n[0]))
    return np.array([math.cos(theta / 2), np.exp(1j * phi) * math.sin(theta / 2)], dtype=np.complex128)


class POVM:
    """A rank-one single-qubit POVM ``M_a = w_a |n_a><n_a|`` (module docstring).

    Attributes:
        name: ``"pauli6"`` or ``"tetrahedral"``.
        K: number of outcomes.
        weights: ``(K,)``; kets: ``(K, 2)`` complex ``|n_a>``; elements: ``(K, 2, 2)`` ``M_a``;
        overlap: ``(K, K)`` ``T_ab = Tr(M_a M_b)``; duals: ``(K, 2, 2)`` ``Q_a``.
    """

    def __init__(self, name: str, weights: np.ndarray, bloch: np.ndarray) -> None:
        self.name = name
        self.weights = np.asarray(weights, dtype=np.float64)
        self.bloch = np.asarray(bloch, dtype=np.float64)
        self.K = len(self.weights)
        self.kets = np.stack([_ket(n) for n in self.bloch])
        self.elements = self.weights[:, None, None] * np.einsum("ai,aj->aij", self.kets, self.kets.conj())
        if not np.allclose(self.elements.sum(0), np.eye(2), atol=1e-12):
            raise ValueError(f"the elements of POVM {name!r} do not sum to the identity.")
        self.overlap = np.real(np.einsum("aij,bji->ab", self.elements, self.elements))
        self.duals = np.einsum("ab,bij->aij", np.linalg.pinv(self.overlap), self.elements)

    def __repr__(self) -> str:
        return f"POVM({self.name!r}, K={self.K})"


def get_povm(name: str) -> POVM:
    """``"pauli6"`` or ``"tetrahedral"`` (the POVMs of Carrasquilla et al. 2019)."""
    if name == "pauli6":
        b = np.array([[0, 0, 1], [0, 0, -1], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]], dtype=np.float64)
        return POVM("pauli6", np.full(6, 1 / 3), b)
    if name == "tetrahedral":
        r = math.sqrt(2.0)
        b = np.array(
            [[0, 0, 1], [2 * r / 3, 0, -1 / 3], [-r / 3, math.sqrt(2 / 3), -1 / 3], [-r / 3, -math.sqrt(2 / 3), -1 / 3]]
        )
        return POVM("tetrahedral", np.full(4, 0.5), b)
    raise ValueError(f"unknown POVM {name!r}; use 'pauli6' or 'tetrahedral'.")


def check_outcomes(outcomes, povm: POVM, n_sites: int | None = None) -> np.ndarray:
    """Validate a measurement record: ``(n, N)`` integers in ``0..K-1``; returns it as int64.

    Raises:
        ValueError: wrong shape, or an outcome outside the POVM's alphabet (naming the first position).
    """
    a = np.asarray(outcomes)
    if a.ndim != 2 or (n_sites is not None and a.shape[1] != n_sites):
        want = f"(n, {n_sites})" if n_sites is not None else "(n, N)"
        raise ValueError(f"POVM outcomes must have shape {want}, got {a.shape}.")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            bad = np.argwhere(~np.isfinite(a) | (a != np.round(a)))[0]
            raise ValueError(
                f"POVM outcome at shot {bad[0]}, site {bad[1]} is {a[tuple(bad)]!r}, not an integer in 0..{povm.K - 1}."
            )
    bad_mask = (a < 0) | (a >= povm.K)
    if bad_mask.any():
        shot, site = np.argwhere(bad_mask)[0]
        raise ValueError(
            f"POVM outcome {a[shot, site].item()!r} at shot {shot}, site {site} is outside the {povm.name} POVM's alphabet "
            f"0..{povm.K - 1} ({int(bad_mask.sum())} such entries); check the record's POVM."
        )
    return a.astype(np.int64)


def _as_dense(psi) -> tuple[np.ndarray, int]:
    v = np.asarray(psi, dtype=np.complex128).ravel()
    n = round(math.log2(max(v.shape[0], 1)))
    if v.shape[0] < 2 or 2**n != v.shape[0]:
        raise ValueError(f"psi has length {v.shape[0]}, which is not 2**N.")
    return v / np.linalg.norm(v), n


def povm_probabilities(psi, povm: POVM) -> np.ndarray:
    """Exact ``P(a)`` of all ``K^N`` outcome strings: ``(K,)*N`` array (index ``[a_1, ..., a_N]``); N small."""
    v, n = _as_dense(psi)
    if povm.K**n > 2**24:
        raise ValueError(f"{povm.K}**{n} outcomes are too many to enumerate; use outcome_probability on samples.")
    t = v.reshape((2,) * n)
    bra = povm.kets.conj()  # (K, 2)
    for i in range(n):  # contract site i with <n_a|: the axis becomes the outcome a_i
        t = np.moveaxis(np.tensordot(bra, t, axes=([1], [i])), 0, i)
    w = povm.weights
    p = np.abs(t) ** 2
    for i in range(n):
        p = p * w.reshape((1,) * i + (-1,) + (1,) * (n - i - 1))
    return p


def outcome_probability(psi, povm: POVM, outcomes) -> np.ndarray:
    """Exact ``P(a)`` of each shot ``(n, N)`` of a dense state: ``(n,)`` float64 (``O(2^N)`` per shot)."""
    v, n = _as_dense(psi)
    a = check_outcomes(outcomes, povm, n)
    out = np.empty(len(a))
    bra = povm.kets.conj()
    for start in range(0, len(a), 512):
        chunk = a[start : start + 512]
        t = np.broadcast_to(v, (len(chunk), v.shape[0])).reshape(len(chunk), 2, -1)
        for i in range(n):  # contract the leading site with <n_{a_i}| per shot
            t = np.einsum("bs,bsr->br", bra[chunk[:, i]], t)
            if i < n - 1:
                t = t.reshape(len(chunk), 2, -1)
        out[start : start + len(chunk)] = np.abs(t[:, 0]) ** 2 * np.prod(povm.weights[chunk], axis=1)
    return out


def ghz_povm_probability(n_sites: int, povm: POVM, outcomes, phase: float = 0.0) -> np.ndarray:
    """Exact ``P(a)`` of shots of the GHZ state ``(|0..0> + e^{i phase}|1..1>)/sqrt 2`` for any N: ``(n,)``."""
    a = check_outcomes(outcomes, povm, n_sites)
    bra = povm.kets.conj()[a]  # (n, N, 2)
    amp = (np.prod(bra[..., 0], axis=1) + np.exp(1j * phase) * np.prod(bra[..., 1], axis=1)) / math.sqrt(2.0)
    return np.abs(amp) ** 2 * np.prod(povm.weights[a], axis=1)


def sample_povm(psi, povm: POVM, n_shots: int, *, seed: int | np.random.Generator | None = None) -> np.ndarray:
    """Exact POVM measurement records of a dense state: ``(n_shots, N)`` int64 outcomes, site by site."""
    v, n = _as_dense(psi)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    out = np.empty((n_shots, n), dtype=np.int64)
    bra, w = povm.kets.conj(), povm.weights
    for start in range(0, n_shots, 1024):
        B = min(1024, n_shots - start)
        t = np.broadcast_to(v, (B, v.shape[0])).reshape(B, 2, -1)  # (B, 2, rest) unnormalised
        for i in range(n):
            c = np.einsum("ks,bsr->bkr", bra, t)  # (B, K, rest): the state after each outcome
            p = w[None, :] * np.sum(np.abs(c) ** 2, axis=2)
            p /= p.sum(1, keepdims=True)
            k = (p.cumsum(1) < rng.random((B, 1))).sum(1).clip(max=povm.K - 1)
            out[start : start + B, i] = k
            t = c[np.arange(B), k]
            t = t / np.linalg.norm(t, axis=1, keepdims=True)
            if i < n - 1:
                t = t.reshape(B, 2, -1)
    return out


def sample_ghz_povm(
    n_sites: int, povm: POVM, n_shots: int, *, phase: float = 0.0, seed: int | np.random.Generator | None = None
) -> np.ndarray:
    """Exact POVM records of the N-qubit GHZ state for any N (the unmeasured part stays ``c0|0..0> + c1|1..1>``)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    c = np.zeros((n_shots, 2), dtype=np.complex128)
    c[:, 0], c[:, 1] = 1 / math.sqrt(2), np.exp(1j * phase) / math.sqrt(2)
    bra, w = povm.kets.conj(), povm.weights
    out = np.empty((n_shots, n_sites), dtype=np.int64)
    for i in range(n_sites):
        new = c[:, None, :] * bra[None, :, :]  # (B, K, 2): the amplitudes of |0..0>, |1..1> after outcome a
        if i < n_sites - 1:  # the two branches stay orthogonal
            p = w[None, :] * np.sum(np.abs(new) ** 2, axis=2)
        else:
            p = w[None, :] * np.abs(new.sum(2)) ** 2
        p /= p.sum(1, keepdims=True)
        k = (p.cumsum(1) < rng.random((n_shots, 1))).sum(1).clip(max=povm.K - 1)
        out[:, i] = k
        c = new[np.arange(n_shots), k]
        c /= np.linalg.norm(c, axis=1, keepdims=True)
    return out


def reconstruct_density(probabilities: np.ndarray, povm: POVM) -> np.ndarray:
    """``rho = sum_a P(a) Q_a1 x ... x Q_aN`` from the full ``(K,)*N`` outcome distribution: ``(2^N, 2^N)``."""
    p = np.asarray(probabilities)
    n = p.ndim
    rho = p.astype(np.complex128)
    for _ in range(n):  # replace the leading outcome axis by the operator indices (s_i, s'_i)
        rho = np.tensordot(rho, povm.duals, axes=([0], [0]))  # appends (2, 2)
    # axes are now (s_1, s'_1, s_2, s'_2, ...): bring to (s_1..s_N, s'_1..s'_N)
    rho = rho.transpose([2 * i for i in range(n)] + [2 * i + 1 for i in range(n)])
    return rho.reshape(2**n, 2**n)
