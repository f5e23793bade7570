"""All three calibration checks (SBC, expected coverage, TARP) from one set of posterior draws.

One ``sample`` call for the N held-out observations gives ``(S, N, D)`` draws; SBC ranks them, TARP
measures distances to references, expected coverage evaluates log q at them (one ``log_prob`` call), and
z-scores summarise them. This is the call a validation report makes.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from physgen.diagnostics.coverage import CoverageResult, coverage_from_samples
from physgen.diagnostics.sampling import check_pairs, posterior_draws
from physgen.diagnostics.sbc import SBCResult, sbc_from_samples
from physgen.diagnostics.tarp import TARPResult, tarp_from_samples
from physgen.diagnostics.zscores import ZScoreResult, z_scores

__all__ = ["CalibrationResult", "calibration"]


@dataclass
class CalibrationResult:
    """SBC, coverage (None if the posterior has no log_prob), TARP, z-scores (None without a prior) and
    the draws ``(S, N, D)``; passed: all of SBC, coverage and TARP passed."""

    sbc: SBCResult
    coverage: CoverageResult | None
    tarp: TARPResult
    z_scores: ZScoreResult | None
    samples: Tensor
    passed: bool

    def as_dict(self) -> dict:
        """JSON-ready summary (no samples)."""
        return {
            "sbc": self.sbc.as_dict(),
            "coverage": None if self.coverage is None else self.coverage.as_dict(),
            "tarp": self.tarp.as_dict(),
            "z_scores": None if self.z_scores is None else self.z_scores.as_dict(),
            "passed": self.passed,
        }


def calibration(
    posterior: object,
    theta: Tensor,
    x: Tensor,
    *,
    num_posterior_samples: int = 1000,
    seed: int = 0,
    batch_size: int | None = None,
    alpha: float = 0.01,
    coverage: bool = True,
) -> CalibrationResult:
    """SBC + expected coverage + TARP (+ z-scores) from one set of draws.

    Args:
        posterior: a physgen Posterior or an object with the same ``sample``/``log_prob``/``prior`` contract.
        theta: ``(N, D)`` prior draws; x: ``(N, *x_shape)`` simulated from them.
        num_posterior_samples: S draws per observation.
        seed: seeds the draws and the TARP references, as :func:`~physgen.diagnostics.tarp`.
        batch_size: observations per sample / log_prob call (None: one call).
        alpha: significance level of each check.
        coverage: False skips expected coverage (for posteriors without ``log_prob``).
    """
    theta, x = check_pairs(theta, x, "calibration")
    samples = posterior_draws(posterior, x, num_posterior_samples, seed=seed, batch_size=batch_size)
    theta = theta.to(samples.device)
    prior = getattr(posterior, "prior", None)
    s = sbc_from_samples(samples, theta, alpha=alpha)
    c = coverage_from_samples(posterior, samples, theta, x, alpha=alpha, batch_size=batch_size) if coverage else None
    t = tarp_from_samples(samples, theta, prior=prior, seed=seed, significance=alpha)
    z = z_scores(samples, theta, prior) if prior is not None and samples.shape[0] > 1 else None
    passed = s.passed and t.passed and (c is None or c.passed)
    return CalibrationResult(s, c, t, z, samples, bool(passed))
