r"""Numba kernels of the multi-spin-coded checkerboard Metropolis update (see :mod:`simulators.ising.multispin`).

Layout: ``S[g, i, j]`` is one uint64 word holding the spin bit σ = (s + 1)/2 of site (i, j) of 64
lattices, lattice 64 g + ℓ in bit ℓ ("replica" or asynchronous multi-spin coding). Every bit lane is
an independent chain: neighbour sums, acceptance and the flip are bitwise operations on whole words,
and each lane has its own random bits.

One site word, four neighbour words ``n_k`` (periodic): the antialigned indicators ``a_k = s ^ n_k``
are added bit-sliced into the count c ∈ {0..4} of antialigned neighbours (planes c0, c1, c2, nine
operations), and the five (h = 0) or ten (field: (σ, c)) class masks are formed. ΔE = 2 J (4 - 2 c) +
2 h s depends on the class only. Sites of one colour are visited one word after the other; they share
no bond, so this is the checkerboard update.

Acceptance (exact to 2⁻³²): a lane of class k flips iff U < T_k, U a uniform 32-bit integer of its own
and ``T_k = ⌊p_k 2³²⌋``; classes with p_k = 1 flip without randomness (``A[g, k]``, one word of lanes).
The comparison runs bit-sliced from the most significant bit: at step j the word of threshold bits is
``tb = OR_k (mask_k & W[g, k, j])`` and a fresh random word r supplies bit j of every lane's U; lanes with
``tb & ~r`` are accepted, lanes with ``~tb & r`` rejected, lanes with equal bits stay undecided. The loop
ends when no lane is undecided (about log2(64) + 1.3 ≈ 7.3 random words per site word) or after 32 bits
(U = T: rejected). A lane's decision depends on its own bit column only, so lanes are independent
whatever the stopping step, and P(flip) = T_k / 2³² exactly.

Random words: xoshiro256** (Blackman & Vigna 2018; every output bit is of full quality, unlike the low
bits of the "+" variants), 4 × uint64 state passed in and written back, seeded by the caller from a
torch generator.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["sweep_words", "count_words", "xoshiro_words", "pack_words", "unpack_words"]

_U = np.uint64
_ONE = np.uint64(1)


@numba.njit(inline="always")
def _rotl(x, k):
    return (x << _U(k)) | (x >> _U(64 - k))


@numba.njit(inline="always")
def _next(s0, s1, s2, s3):
    r = _rotl(s1 * _U(5), 7) * _U(9)
    t = s1 << _U(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    return r, s0, s1, s2, s3


@numba.njit(cache=True, nogil=True)
def xoshiro_words(state, n):
    """``n`` xoshiro256** words from ``state`` (uint64 ``(4,)``, advanced in place) -> uint64 ``(n,)``."""
    s0, s1, s2, s3 = state[0], state[1], state[2], state[3]
    out = np.empty(n, dtype=np.uint64)
    for t in range(n):
        out[t], s0, s1, s2, s3 = _next(s0, s1, s2, s3)
    state[0], state[1], state[2], state[3] = s0, s1, s2, s3
    return out


@numba.njit(inline="always")
def _select(m0, m1, m2, m3, m4, Wk, j, base):
    return (
        (m0 & Wk[base, j])
        | (m1 & Wk[base + 1, j])
        | (m2 & Wk[base + 2, j])
        | (m3 & Wk[base + 3, j])
        | (m4 & Wk[base + 4, j])
    )


def sweep_words(S, W, A, n_half, state, field):
    """``n_half`` half sweeps of :func:`_sweep` with ``nclass`` = 10 (field), 3 (h = 0 and no lane needs
    random bits for c = 3, 4: the Metropolis rule) or 5, each a separately compiled copy with the class
    count a constant (compiled on first use; leaving out the all-zero planes of c = 3, 4 changes no
    decision, tested bit for bit). Arguments and return value as :func:`_sweep` with ``field`` (bool)
    for ``nclass``."""
    if field:
        return _sweep10(S, W, A, n_half, state)
    if not (W[:, 3].any() or W[:, 4].any()):
        return _sweep3(S, W, A, n_half, state)
    return _sweep5(S, W, A, n_half, state)


@numba.njit(inline="always")
def _sweep(S, W, A, n_half, state, nclass):
    """``n_half`` half sweeps (colour (i + j) even first, then odd, alternating) on every word group.

    Args:
        S: uint64 ``(G, L, L)`` spin-bit words (updated in place), L even.
        W: uint64 ``(G, K, 32)`` threshold bit planes, ``W[g, k, j]`` = bit 31 - j of T_k of every lane;
            K = 5 (class c, h = 0) or 10 (class c + 5 σ, with a field).
        A: uint64 ``(G, K)``: lanes whose class-k flip probability is 1.
        n_half: number of half sweeps (2 per sweep).
        state: uint64 ``(4,)`` xoshiro256** state, advanced in place.
        nclass: 10 (K = 10, the threshold bit selected by σ), 5, or 3 (only classes c = 0, 1, 2 draw bits).

    Returns:
        The number of random words drawn (int).
    """
    G, L = S.shape[0], S.shape[1]
    s0, s1, s2, s3 = state[0], state[1], state[2], state[3]
    drawn = 0
    for g in range(G):
        Sg, Wg, Ag = S[g], W[g], A[g]
        for half in range(n_half):
            colour = half % 2
            for i in range(L):
                up = i - 1 if i > 0 else L - 1
                dn = i + 1 if i < L - 1 else 0
                for j in range((i + colour) % 2, L, 2):
                    lf = j - 1 if j > 0 else L - 1
                    rt = j + 1 if j < L - 1 else 0
                    s = Sg[i, j]
                    a1 = s ^ Sg[up, j]
                    a2 = s ^ Sg[dn, j]
                    a3 = s ^ Sg[i, lf]
                    a4 = s ^ Sg[i, rt]
                    x1 = a1 ^ a2
                    k1 = a1 & a2
                    x2 = a3 ^ a4
                    k2 = a3 & a4
                    c0 = x1 ^ x2
                    c1 = (k1 ^ k2) | (x1 & x2)
                    m4 = k1 & k2
                    m3 = c1 & c0
                    m2 = c1 & ~c0
                    m1 = c0 & ~c1
                    m0 = ~(c0 | c1 | m4)
                    if nclass == 10:
                        acc0 = (m0 & Ag[0]) | (m1 & Ag[1]) | (m2 & Ag[2]) | (m3 & Ag[3]) | (m4 & Ag[4])
                        acc1 = (m0 & Ag[5]) | (m1 & Ag[6]) | (m2 & Ag[7]) | (m3 & Ag[8]) | (m4 & Ag[9])
                        acc = acc0 ^ ((acc0 ^ acc1) & s)
                    else:
                        acc = (m0 & Ag[0]) | (m1 & Ag[1]) | (m2 & Ag[2]) | (m3 & Ag[3]) | (m4 & Ag[4])
                    und = ~acc
                    b = 0
                    while und != _U(0) and b < 32:
                        r, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
                        if nclass == 10:
                            tb0 = _select(m0, m1, m2, m3, m4, Wg, b, 0)
                            tb1 = _select(m0, m1, m2, m3, m4, Wg, b, 5)
                            tb = tb0 ^ ((tb0 ^ tb1) & s)
                        elif nclass == 5:
                            tb = _select(m0, m1, m2, m3, m4, Wg, b, 0)
                        else:
                            tb = (m0 & Wg[0, b]) | (m1 & Wg[1, b]) | (m2 & Wg[2, b])
                        acc |= und & tb & ~r
                        und &= ~(tb ^ r)
                        b += 1
                    drawn += b
                    Sg[i, j] = s ^ acc
    state[0], state[1], state[2], state[3] = s0, s1, s2, s3
    return drawn


@numba.njit(cache=True, nogil=True)
def _sweep3(S, W, A, n_half, state):
    return _sweep(S, W, A, n_half, state, 3)


@numba.njit(cache=True, nogil=True)
def _sweep5(S, W, A, n_half, state):
    return _sweep(S, W, A, n_half, state, 5)


@numba.njit(cache=True, nogil=True)
def _sweep10(S, W, A, n_half, state):
    return _sweep(S, W, A, n_half, state, 10)


@numba.njit(inline="always")
def _vadd(planes, x, b):
    # add the bits of x (one per lane), of weight 2**b, to the bit-sliced per-lane counters planes[b..]
    while x != _U(0):
        t = planes[b] & x
        planes[b] ^= x
        x = t
        b += 1


@numba.njit(inline="always")
def _csa(a, b, c):
    # carry-save adder, per lane: a + b + c = sum + 2 carry
    u = a ^ b
    return u ^ c, (a & b) | (u & c)


@numba.njit(inline="always")
def _site(Sg, i, j, L):
    # the spin word of (i, j), its antialigned-bond words to the right and down, and the next site
    s = Sg[i, j]
    r, d = s ^ Sg[i, j + 1 if j < L - 1 else 0], s ^ Sg[i + 1 if i < L - 1 else 0, j]
    return s, r, d, i + (j == L - 1), j + 1 if j < L - 1 else 0


@numba.njit(cache=True, nogil=True)
def count_words(S):
    """Per-lane counts of antialigned bonds and of up spins.

    Carry-save (Harley-Seal) per-lane counting: 4 sites at a time, their 8 antialigned-bond words are
    reduced to ones/twos/fours planes and one word of weight 8 (4 up-spin words: one of weight 4), which
    is added to deep bit-sliced counters; L² is a multiple of 4 for even L.

    Args:
        S: uint64 ``(G, L, L)`` spin-bit words, L even.

    Returns:
        ``(anti, up)``, int64 ``(G, 64)`` each: lane ℓ of group g holds the number of antialigned
        bonds (2N bonds: right and down neighbour of every site) and of up spins of lattice 64 g + ℓ.
    """
    G, L = S.shape[0], S.shape[1]
    anti = np.zeros((G, 64), dtype=np.int64)
    up = np.zeros((G, 64), dtype=np.int64)
    for g in range(G):
        Sg = S[g]
        pa = np.zeros(48, dtype=np.uint64)  # planes of weight 2**b, b >= 3 used for the carries of 8
        pu = np.zeros(48, dtype=np.uint64)
        a1 = a2 = a4 = u1 = u2 = _U(0)
        i = j = 0
        for _ in range(L * L // 4):
            s0, r0, d0, i, j = _site(Sg, i, j, L)
            s1, r1, d1, i, j = _site(Sg, i, j, L)
            s2, r2, d2, i, j = _site(Sg, i, j, L)
            s3, r3, d3, i, j = _site(Sg, i, j, L)
            a1, ta = _csa(a1, r0, d0)
            a1, tb = _csa(a1, r1, d1)
            a2, fa = _csa(a2, ta, tb)
            a1, ta = _csa(a1, r2, d2)
            a1, tb = _csa(a1, r3, d3)
            a2, fb = _csa(a2, ta, tb)
            a4, e = _csa(a4, fa, fb)
            _vadd(pa, e, 3)
            u1, ta = _csa(u1, s0, s1)
            u1, tb = _csa(u1, s2, s3)
            u2, f = _csa(u2, ta, tb)
            _vadd(pu, f, 2)
        for lane in range(64):
            sh = _U(lane)
            anti[g, lane] = (
                np.int64((a1 >> sh) & _ONE) + 2 * np.int64((a2 >> sh) & _ONE) + 4 * np.int64((a4 >> sh) & _ONE)
            )
            up[g, lane] = np.int64((u1 >> sh) & _ONE) + 2 * np.int64((u2 >> sh) & _ONE)
            for b in range(2, 48):
                anti[g, lane] += np.int64((pa[b] >> sh) & _ONE) << b
                up[g, lane] += np.int64((pu[b] >> sh) & _ONE) << b
    return anti, up


@numba.njit(cache=True, nogil=True)
def pack_words(spins, G):
    """int8 ±1 (or 0/1 bits) ``spins (M, L, L)`` -> uint64 words ``(G, L, L)``: lattice m in bit m % 64 of
    group m // 64 (a site is up when its value is > 0; lanes beyond M are 0)."""
    M, L = spins.shape[0], spins.shape[1]
    S = np.zeros((G, L, L), dtype=np.uint64)
    for m in range(M):
        g, bit = m // 64, _U(m % 64)
        for i in range(L):
            for j in range(L):
                if spins[m, i, j] > 0:
                    S[g, i, j] |= _ONE << bit
    return S


@numba.njit(cache=True, nogil=True)
def unpack_words(S, M):
    """Inverse of :func:`pack_words`: uint64 ``(G, L, L)`` -> int8 ±1 ``(M, L, L)``."""
    L = S.shape[1]
    out = np.empty((M, L, L), dtype=np.int8)
    for m in range(M):
        g, bit = m // 64, _U(m % 64)
        for i in range(L):
            for j in range(L):
                out[m, i, j] = 2 * np.int8((S[g, i, j] >> bit) & _ONE) - 1
    return out
