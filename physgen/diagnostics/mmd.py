r"""Maximum mean discrepancy (Gretton et al. 2012) with a Gaussian kernel and a permutation test.

Math:
    k(a, b) = exp(-|a - b|² / (2 h²)). For x_1..x_n ~ P and y_1..y_m ~ Q the unbiased estimate

        MMD²_u = Σ_{i≠j} k(x_i, x_j) / (n(n-1)) + Σ_{i≠j} k(y_i, y_j) / (m(m-1)) - 2 Σ_{i,j} k(x_i, y_j) / (nm)

    has expectation MMD²(P, Q) ≥ 0, zero iff P = Q (the Gaussian kernel is characteristic); the estimate
    itself can be slightly negative. Bandwidth: the median heuristic, h = median of the pairwise distances of
    the pooled sample (of its first 2,000 rows, so the cost stays bounded).

    Permutation test: the pooled sample is relabelled at random ``num_permutations`` times (a seeded
    generator); p = (1 + #{MMD²_perm ≥ MMD²_obs}) / (1 + num_permutations). The kernel matrix is computed
    once, and each permutation's statistic is a pair of quadratic forms, batched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["MMDResult", "mmd", "mmd_test", "median_bandwidth"]


@dataclass
class MMDResult:
    """Attributes: mmd (MMD²_u), p_value of the permutation test, bandwidth h, num_permutations, passed
    (p_value > alpha: no evidence that the distributions differ), alpha."""

    mmd: float
    p_value: float
    bandwidth: float
    num_permutations: int
    alpha: float
    passed: bool

    def as_dict(self) -> dict:
        """JSON-ready summary."""
        return dict(self.__dict__)


def _as_2d(v: Tensor | np.ndarray, name: str) -> Tensor:
    t = torch.as_tensor(v)
    if t.dim() != 2:
        raise ValueError(f"mmd: {name} must have shape (n, D); got {tuple(t.shape)}. Reshape it with .reshape(n, -1).")
    if t.shape[0] < 2:
        raise ValueError(f"mmd: {name} needs at least 2 rows for the unbiased estimate; got {t.shape[0]}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"mmd: {name} has NaN or inf entries; drop those rows first")
    return t.to(torch.float64)


def _pair(x, y) -> tuple[Tensor, Tensor]:
    a, b = _as_2d(x, "x"), _as_2d(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"mmd: x and y must have the same number of columns D; got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return a, b.to(a.device)


def median_bandwidth(z: Tensor, max_rows: int = 2000) -> float:
    """Median pairwise Euclidean distance of the rows of ``z (n, D)`` (its first ``max_rows`` rows)."""
    s = z[:max_rows]
    d = torch.cdist(s, s)
    iu = torch.triu_indices(s.shape[0], s.shape[0], offset=1, device=s.device)
    h = float(d[iu[0], iu[1]].median())
    return h if h > 0 else 1.0


def _kernel(a: Tensor, b: Tensor, h: float) -> Tensor:
    return torch.exp(-torch.cdist(a, b).square() / (2.0 * h * h))


def _unbiased(kxx: Tensor, kyy: Tensor, kxy: Tensor) -> float:
    n, m = kxx.shape[0], kyy.shape[0]
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def mmd(x: Tensor | np.ndarray, y: Tensor | np.ndarray, *, bandwidth: float | None = None) -> float:
    """Unbiased MMD² between samples ``x (n, D)`` and ``y (m, D)`` (Gaussian kernel, float64).

    Args:
        x, y: samples of the two distributions (tensors on any one device, or arrays).
        bandwidth: kernel width h; None takes the median heuristic of the pooled sample.

    Returns:
        MMD²_u, a float (about 0 when x and y come from one distribution; can be slightly negative).
    """
    a, b = _pair(x, y)
    h = median_bandwidth(torch.cat([a, b])) if bandwidth is None else float(bandwidth)
    if h <= 0:
        raise ValueError(f"mmd: bandwidth must be > 0; got {h}")
    return _unbiased(_kernel(a, a, h), _kernel(b, b, h), _kernel(a, b, h))


def mmd_test(
    x: Tensor | np.ndarray,
    y: Tensor | np.ndarray,
    *,
    num_permutations: int = 500,
    seed: int = 0,
    bandwidth: float | None = None,
    alpha: float = 0.05,
    chunk: int = 64,
) -> MMDResult:
    """Permutation test of P = Q with the MMD² statistic.

    Args:
        x, y: samples ``(n, D)`` and ``(m, D)``; the pooled kernel matrix ``(n + m)²`` is held in memory.
        num_permutations: random relabellings.
        seed: seeds the permutations.
        bandwidth: kernel width; None: median heuristic of the pooled sample (fixed for all permutations).
        alpha: significance level behind ``passed``.
        chunk: permutations evaluated per batched matrix product.

    Returns:
        An :class:`MMDResult`.
    """
    if int(num_permutations) < 1:
        raise ValueError(f"mmd_test: num_permutations must be >= 1; got {num_permutations}")
    a, b = _pair(x, y)
    n, m = a.shape[0], b.shape[0]
    z = torch.cat([a, b])
    h = median_bandwidth(z) if bandwidth is None else float(bandwidth)
    K = _kernel(z, z, h)
    K.fill_diagonal_(0.0)
    stat = _unbiased_from_labels(K, torch.cat([torch.ones(n), torch.zeros(m)]).to(K).unsqueeze(0), n, m)[0]
    gen = torch.Generator(device=z.device).manual_seed(int(seed))
    count, done = 0, 0
    while done < num_permutations:
        p = min(chunk, num_permutations - done)
        perm = torch.argsort(torch.rand(p, n + m, generator=gen, device=z.device), dim=1)
        labels = (perm < n).to(K.dtype)  # (p, n + m): a random subset of size n gets label x
        count += int((_unbiased_from_labels(K, labels, n, m) >= stat - 1e-12).sum())
        done += p
    pv = (1 + count) / (1 + num_permutations)
    return MMDResult(float(stat), float(pv), h, int(num_permutations), float(alpha), pv > alpha)


def _unbiased_from_labels(K: Tensor, labels: Tensor, n: int, m: int) -> Tensor:
    """MMD²_u for label rows ``(p, n + m)`` (1 = x) with the zero-diagonal pooled kernel K -> ``(p,)``."""
    ky = 1.0 - labels
    Kl, Kk = labels @ K, ky @ K
    sxx = (Kl * labels).sum(1) / (n * (n - 1))
    syy = (Kk * ky).sum(1) / (m * (m - 1))
    sxy = (Kl * ky).sum(1) / (n * m)
    return sxx + syy - 2.0 * sxy
