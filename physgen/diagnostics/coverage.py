r"""Expected coverage of highest-posterior-density (HPD) regions (Hermans et al. 2022; Deistler et al. 2022).

Math:
    For a held-out pair (θ_i, x_i) and S draws θ_i^(s) ~ q(θ | x_i), the credibility of the smallest HPD
    region of q that contains θ_i is estimated by

        r_i = #{s : log q(θ_i^(s) | x_i) > log q(θ_i | x_i)} / S ∈ [0, 1],

    the rank of log q(θ_true) among the log q of the draws (what sbi's ``run_sbc`` computes with
    ``reduce_fns=posterior.log_prob``). θ_i lies inside the level-α HPD region iff r_i < α, so the expected
    coverage is ĉ(α) = (1/N) Σ_i 1[r_i < α]. For the true posterior r_i is uniform and ĉ(α) ≈ α; a posterior
    that is too narrow or shifted under-covers (ĉ < α), one too wide over-covers (ĉ > α).

    Band: under calibration N·ĉ(α) ~ Binomial(N, α). ``lower``/``upper`` are its α_test/(2L) and
    1 - α_test/(2L) quantiles divided by N (Bonferroni over the L levels); ``passed`` holds when every ĉ(α)
    lies in its band.

Only ranks within one observation matter, so log q need not be normalised (a physgen Posterior is called
with ``normalize=False``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from physgen.diagnostics.sampling import check_pairs, draw_log_probs, posterior_draws

# 0.05, 0.10, ..., 0.95 and 0.68 (the 1σ level physicists quote)
DEFAULT_LEVELS = (
    torch.cat([torch.linspace(0.05, 0.95, 19, dtype=torch.float64), torch.tensor([0.68], dtype=torch.float64)])
    .sort()
    .values
)

__all__ = [
    "DEFAULT_LEVELS",
    "CoverageResult",
    "expected_coverage",
    "coverage_from_log_probs",
    "coverage_from_samples",
    "hpd_levels",
]


@dataclass
class CoverageResult:
    """Expected HPD coverage against the nominal levels.

    Attributes:
        levels: ``(L,)`` nominal credibility levels α.
        coverage: ``(L,)`` empirical coverage ĉ(α).
        lower, upper: ``(L,)`` binomial band of ĉ(α) under calibration.
        hpd_levels: ``(N,)`` r_i, the HPD credibility of each true parameter.
        alpha: family-wise significance level of the band.
        passed: every ĉ(α) inside [lower, upper].
    """

    levels: Tensor
    coverage: Tensor
    lower: Tensor
    upper: Tensor
    hpd_levels: Tensor
    alpha: float
    passed: bool

    def as_dict(self) -> dict:
        """JSON-ready summary."""
        return {
            "levels": self.levels.tolist(),
            "coverage": self.coverage.tolist(),
            "lower": self.lower.tolist(),
            "upper": self.upper.tolist(),
            "num_pairs": int(self.hpd_levels.numel()),
            "max_abs_deviation": float((self.coverage - self.levels).abs().max()),
            "alpha": self.alpha,
            "passed": self.passed,
        }


def _levels(levels: Tensor | None) -> Tensor:
    lv = DEFAULT_LEVELS.clone() if levels is None else torch.as_tensor(levels, dtype=torch.float64).cpu()
    if lv.dim() != 1 or lv.numel() < 1 or bool(((lv <= 0) | (lv >= 1)).any()):
        raise ValueError(f"levels must be a 1-d list of credibility levels strictly between 0 and 1; got {lv.tolist()}")
    return lv


def hpd_levels(log_prob_samples: Tensor, log_prob_theta: Tensor) -> Tensor:
    """r_i ``(N,)``: fraction of draws with higher log q than θ_true; inputs ``(S, N)`` and ``(N,)``."""
    if log_prob_samples.dim() != 2 or log_prob_theta.shape != log_prob_samples.shape[1:]:
        raise ValueError(
            f"log_prob_samples must be (S, N) and log_prob_theta (N,); got {tuple(log_prob_samples.shape)} "
            f"and {tuple(log_prob_theta.shape)}"
        )
    return (log_prob_samples > log_prob_theta.unsqueeze(0)).double().mean(0)


def coverage_from_log_probs(
    log_prob_samples: Tensor, log_prob_theta: Tensor, *, levels: Tensor | None = None, alpha: float = 0.01
) -> CoverageResult:
    """Expected coverage from log q at the draws ``(S, N)`` and at the true parameters ``(N,)``."""
    from scipy.stats import binom

    r = hpd_levels(log_prob_samples, log_prob_theta).cpu()
    lv = _levels(levels)
    n = r.numel()
    cov = (r.unsqueeze(0) < lv.unsqueeze(1)).double().mean(1)
    q = alpha / (2 * lv.numel())
    lower = torch.as_tensor(binom.ppf(q, n, lv.numpy()) / n, dtype=torch.float64)
    upper = torch.as_tensor(binom.isf(q, n, lv.numpy()) / n, dtype=torch.float64)
    passed = bool(((cov >= lower) & (cov <= upper)).all())
    return CoverageResult(lv, cov, lower, upper, r, float(alpha), passed)


def coverage_from_samples(
    posterior: object,
    samples: Tensor,
    theta: Tensor,
    x: Tensor,
    *,
    levels: Tensor | None = None,
    alpha: float = 0.01,
    batch_size: int | None = None,
) -> CoverageResult:
    """Expected coverage from draws already made ``(S, N, D)``: evaluates log q once per chunk."""
    lq_s, lq_t = draw_log_probs(posterior, samples, theta, x, batch_size=batch_size)
    return coverage_from_log_probs(lq_s, lq_t, levels=levels, alpha=alpha)


def expected_coverage(
    posterior: object,
    theta: Tensor,
    x: Tensor,
    *,
    levels: Tensor | None = None,
    num_posterior_samples: int = 1000,
    seed: int = 0,
    batch_size: int | None = None,
    alpha: float = 0.01,
) -> CoverageResult:
    """Expected HPD coverage of an amortized posterior on held-out pairs.

    Args:
        posterior: a physgen Posterior or any object with ``sample(n, x, *, generator) -> (n, B, D)`` and a
            broadcasting ``log_prob(theta (S, N, D), x (N, *x_shape)) -> (S, N)``.
        theta: ``(N, D)`` parameters drawn from the prior.
        x: ``(N, *x_shape)`` observations simulated from them.
        levels: ``(L,)`` credibility levels in (0, 1) (default :data:`DEFAULT_LEVELS`: 0.05, 0.10, ..., 0.95 and 0.68).
        num_posterior_samples: S draws per observation.
        seed: seeds the draws.
        batch_size: observations per sample / log_prob call (None: one call).
        alpha: family-wise significance level of the band.

    Returns:
        A :class:`CoverageResult`.
    """
    theta, x = check_pairs(theta, x, "expected_coverage")
    samples = posterior_draws(posterior, x, num_posterior_samples, seed=seed, batch_size=batch_size)
    return coverage_from_samples(posterior, samples, theta, x, levels=levels, alpha=alpha, batch_size=batch_size)
