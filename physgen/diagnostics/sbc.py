r"""Simulation-based calibration (SBC; Talts et al. 2018, arXiv:1804.06788).

Math:
    For held-out pairs θ_i ~ p(θ), x_i ~ p(x | θ_i) and S draws θ_i^(s) ~ q(θ | x_i), the rank of each
    component is r_id = #{s : θ_id^(s) < θ_id} ∈ {0, ..., S}. If q is the true posterior, θ_i is one more
    draw from it, so r_id is uniform on {0, ..., S}. A posterior that is too narrow piles ranks at both
    ends (∪), one too wide in the middle (∩), a shifted one at one end.

    Uniformity test: the S + 1 rank values are grouped into ``num_bins`` bins of (almost) equal width and a
    chi-square test compares the counts with their exact expectation under uniformity (``test="chi2"``,
    default); ``test="ks"`` is the Kolmogorov-Smirnov test against Uniform(0, S) that sbi's
    ``check_sbc`` uses. ``passed`` holds when every component's p-value exceeds ``alpha / D`` (Bonferroni).

``sbc`` draws the samples (one ``sample`` call for all observations); ``sbc_from_samples`` takes draws that
were already made, so one set serves SBC, coverage and TARP.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from physgen.diagnostics.sampling import check_pairs, check_samples, posterior_draws

__all__ = ["SBCResult", "sbc", "sbc_from_samples", "sbc_ranks", "rank_uniformity_pvalues"]


@dataclass
class SBCResult:
    """SBC ranks and their uniformity test.

    Attributes:
        ranks: ``(N, D)`` long, rank of θ_true among S draws per component, in [0, S].
        num_posterior_samples: S.
        p_values: ``(D,)`` p-values of the uniformity test per component.
        alpha: family-wise significance level (Bonferroni over D).
        test: "chi2" or "ks".
        passed: every p-value > alpha / D.
    """

    ranks: Tensor
    num_posterior_samples: int
    p_values: Tensor
    alpha: float
    test: str
    passed: bool

    def as_dict(self) -> dict:
        """JSON-ready summary (no ranks: they go to the samples file)."""
        return {
            "num_pairs": int(self.ranks.shape[0]),
            "num_posterior_samples": self.num_posterior_samples,
            "p_values": [float(p) for p in self.p_values],
            "min_p_value": float(self.p_values.min()),
            "alpha": self.alpha,
            "test": self.test,
            "passed": self.passed,
        }


def sbc_ranks(samples: Tensor, theta: Tensor) -> Tensor:
    """Ranks ``(N, D)`` long: #{s : samples[s, i, d] < theta[i, d]} for draws ``(S, N, D)`` and theta ``(N, D)``."""
    check_samples(samples, theta, "sbc_ranks")
    return (samples < theta.to(samples.device).unsqueeze(0)).sum(0)


def _default_bins(n: int, num_samples: int) -> int:
    # about 20 expected counts per bin (chi-square approximation), between 2 and 20 bins, at most S + 1
    return int(max(2, min(20, n // 20, num_samples + 1)))


def rank_uniformity_pvalues(
    ranks: Tensor, num_posterior_samples: int, *, test: str = "chi2", num_bins: int | None = None
) -> Tensor:
    """p-values ``(D,)`` of uniformity of ranks ``(N, D)`` on {0, ..., S} (module docstring)."""
    from scipy import stats

    S = int(num_posterior_samples)
    r = ranks.detach().to("cpu").numpy()
    if r.ndim != 2:
        raise ValueError(f"ranks must have shape (N, D); got {tuple(r.shape)}")
    if r.min() < 0 or r.max() > S:
        raise ValueError(
            f"ranks must lie in [0, num_posterior_samples={S}]; got range [{r.min()}, {r.max()}]. "
            "Pass the S that the ranks were computed with."
        )
    if test == "ks":
        return torch.tensor(
            [stats.kstest(col, stats.uniform(loc=0, scale=S).cdf).pvalue for col in r.T], dtype=torch.float64
        )
    if test != "chi2":
        raise ValueError(f"test must be 'chi2' or 'ks'; got {test!r}")
    B = _default_bins(r.shape[0], S) if num_bins is None else int(num_bins)
    if not 2 <= B <= S + 1:
        raise ValueError(f"num_bins must be in [2, S + 1 = {S + 1}]; got {B}")
    bin_of_value = (np.arange(S + 1) * B) // (S + 1)  # rank value -> bin, bins of equal width up to one value
    expected = np.bincount(bin_of_value, minlength=B) / (S + 1) * r.shape[0]
    p = []
    for col in r.T:
        counts = np.bincount(bin_of_value[col], minlength=B)
        p.append(stats.chisquare(counts, expected).pvalue)
    return torch.tensor(p, dtype=torch.float64)


def sbc_from_samples(
    samples: Tensor, theta: Tensor, *, alpha: float = 0.01, test: str = "chi2", num_bins: int | None = None
) -> SBCResult:
    """SBC from draws already made.

    Args:
        samples: posterior draws ``(S, N, D)``, samples[:, i] from q(θ | x_i).
        theta: the true parameters ``(N, D)``.
        alpha: family-wise significance level; each of the D tests runs at alpha / D.
        test: "chi2" (binned ranks) or "ks".
        num_bins: bins of the chi-square test (default: about N / 20, between 2 and 20).
    """
    ranks = sbc_ranks(samples, theta)
    S = int(samples.shape[0])
    p = rank_uniformity_pvalues(ranks, S, test=test, num_bins=num_bins)
    return SBCResult(ranks, S, p, float(alpha), test, bool((p > alpha / p.numel()).all()))


def sbc(
    posterior: object,
    theta: Tensor,
    x: Tensor,
    *,
    num_posterior_samples: int = 1000,
    seed: int = 0,
    batch_size: int | None = None,
    alpha: float = 0.01,
    test: str = "chi2",
    num_bins: int | None = None,
) -> SBCResult:
    """Simulation-based calibration of an amortized posterior on held-out pairs.

    Args:
        posterior: a physgen Posterior or any object with ``sample(n, x, *, generator) -> (n, B, D)``.
        theta: ``(N, D)`` parameters drawn from the prior.
        x: ``(N, *x_shape)`` observations simulated from them.
        num_posterior_samples: S draws per observation.
        seed: seeds the draws (a generator on the posterior's device).
        batch_size: observations per ``sample`` call (None: one call).
        alpha, test, num_bins: see :func:`sbc_from_samples`.

    Returns:
        An :class:`SBCResult`.
    """
    theta, x = check_pairs(theta, x, "sbc")
    samples = posterior_draws(posterior, x, num_posterior_samples, seed=seed, batch_size=batch_size)
    return sbc_from_samples(samples, theta, alpha=alpha, test=test, num_bins=num_bins)
