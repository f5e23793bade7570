r"""Compiled (numba) Metropolis sweeps for :class:`~physgen.quantum.rbm_sampler.RBMSampler`.

The cache of a chain ``c``: spins ``s[c] (N,)`` of +-1, the effective angles ``theta[c] (M,)``, their
``t[c] = tanh theta[c]``, ``lc[c] = sum_j Re log cosh theta_cj`` and ``lp[c] = log|psi|`` (both up to
a constant). With ``W2 = 2 W^T (N, M)``, flipping site ``i`` (spin ``s_i``) shifts ``theta`` by
``d = -s_i W2[i]`` (updated exactly, by addition, on acceptance) and multiplies ``|psi|`` by

    exp(-2 Re a_i s_i) prod_j |cosh(theta_j + d_j) / cosh theta_j|.

Two evaluations of the product, chosen per call by :class:`RBMSampler`:

* ``safe`` (real weights with ``max |W2| <= 8`` and ``max_i sum_j |W2_ij| < 300``): with the tables
  ``ch = cosh W2``, ``sh = sinh W2`` each factor is ``ch_ij - s_i t_j sh_ij``, so a proposal costs ``M``
  multiply-adds and one ``log``; ``t`` is recomputed as ``tanh theta`` (``M`` tanh) only on acceptance.
  The bounds keep the product finite and its cancellation error below ~1e-9 relative;
* otherwise (complex weights, large weights) ``sum_j Re log cosh(theta_j + d_j) - lc``: one ``exp`` and
  one ``log1p`` per hidden unit, accurate for any weights.

Real and complex RBMs share the code (numba compiles one version per dtype; ``abs`` is the modulus).
The random numbers (sites or bonds, ``log u``) are drawn by the caller from its torch generator, so the
chain is reproducible and the same as :meth:`RBMSampler._sweeps_torch` with the same draws.
"""

from __future__ import annotations

import math

import numpy as np

try:
    import numba

    HAVE_NUMBA = True
except ImportError:  # the torch path of RBMSampler is used instead (_jit then leaves the functions as they are)
    HAVE_NUMBA = False

__all__ = ["HAVE_NUMBA", "flip_sweeps", "exchange_sweeps"]


def _jit(f):
    return numba.njit(cache=True, nogil=True)(f) if HAVE_NUMBA else f


@_jit
def _rlc(z):  # pragma: no cover - compiled
    """``Re log cosh z + log 2`` of a real or complex scalar (stable)."""
    x = abs(z.real)
    e = math.exp(-2.0 * x)
    return x + 0.5 * math.log1p(2.0 * e * math.cos(2.0 * z.imag) + e * e)


@_jit
def _log_ratio(theta, t, lc, W2, ch, sh, i, si, safe):  # pragma: no cover - compiled
    """``log|psi'/psi|`` of the RBM part (without the visible bias) for flipping site ``i`` of one chain.

    ``safe``: ``prod_j (ch_ij - s_i t_j sh_ij)`` (one log); else ``sum_j Re log cosh(theta_j - s_i W2_ij)``
    minus the cached ``lc`` (one log and one exp per hidden unit, accurate for any weights)."""
    if safe:
        prod = ch[i, 0] * 0.0 + 1.0
        for j in range(t.shape[0]):
            prod *= ch[i, j] - si * t[j] * sh[i, j]
        return math.log(abs(prod))
    acc = 0.0
    for j in range(theta.shape[0]):
        acc += _rlc(theta[j] - si * W2[i, j])
    return acc - lc


@_jit
def _apply_flip(theta_in, theta_out, t, W2, i, si, safe):  # pragma: no cover - compiled
    """``theta_out = theta_in - s_i W2[i]`` (exact) and, when ``safe``, ``t = tanh theta_out``."""
    for j in range(theta_in.shape[0]):
        theta_out[j] = theta_in[j] - si * W2[i, j]
        if safe:
            t[j] = np.tanh(theta_out[j])


@_jit
def flip_sweeps(s, theta, t, lc, lp, W2, ch, sh, a, sites, logu, safe):  # pragma: no cover - compiled
    """Single-site Metropolis steps ``sites[c, k]`` for every chain, in place; returns the accepted count.

    Shapes: s (C, N) float; theta, t (C, M); lc, lp (C,); W2, ch, sh (N, M); a (N,) real; sites (C, K) int64;
    logu (C, K) float (chain-major, so that each chain reads its draws contiguously).
    """
    C = s.shape[0]
    K = sites.shape[1]
    n_acc = 0
    for c in range(C):
        th, tc = theta[c], t[c]
        for k in range(K):
            i = sites[c, k]
            si = s[c, i]
            d = _log_ratio(th, tc, lc[c], W2, ch, sh, i, si, safe)
            dlp = d - 2.0 * si * a[i]
            if logu[c, k] < 2.0 * dlp:
                _apply_flip(th, th, tc, W2, i, si, safe)
                lc[c] += d
                s[c, i] = -si
                lp[c] += dlp
                n_acc += 1
    return n_acc


@_jit
def exchange_sweeps(s, theta, t, lc, lp, W2, ch, sh, a, pairs, ks, logu, safe):  # pragma: no cover - compiled
    """Sz-conserving exchanges of the bonds ``pairs[ks[c, k]]``, in place; returns the accepted count.

    An exchange of equal spins is the identity (counted as accepted). Shapes as :func:`flip_sweeps`,
    pairs (P, 2) int64, ks (C, K) int64.
    """
    C, M = t.shape
    K = ks.shape[1]
    n_acc = 0
    th1 = np.empty(M, dtype=theta.dtype)
    t1 = np.empty(M, dtype=t.dtype)
    for c in range(C):
        th, tc = theta[c], t[c]
        for k in range(K):
            i = pairs[ks[c, k], 0]
            j = pairs[ks[c, k], 1]
            si = s[c, i]
            sj = s[c, j]
            if si == sj:
                if logu[c, k] < 0.0:
                    n_acc += 1
                continue
            d1 = _log_ratio(th, tc, lc[c], W2, ch, sh, i, si, safe)
            _apply_flip(th, th1, t1, W2, i, si, safe)
            d = d1 + _log_ratio(th1, t1, lc[c] + d1, W2, ch, sh, j, sj, safe)
            dlp = d - 2.0 * (si * a[i] + sj * a[j])
            if logu[c, k] < 2.0 * dlp:
                _apply_flip(th1, th, tc, W2, j, sj, safe)
                lc[c] += d
                s[c, i] = sj
                s[c, j] = si
                lp[c] += dlp
                n_acc += 1
    return n_acc
