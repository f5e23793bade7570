r"""Posterior z-scores and contraction (Schad, Betancourt & Vasishth 2021).

Math:
    For draws θ_i^(s) ~ q(θ | x_i) with mean m_id and variance v_id per component, and the true θ_id,

        z_id = (m_id - θ_id) / sqrt(v_id),        contraction_id = 1 - v_id / Var_prior(θ_d).

    A calibrated posterior has z of mean 0 and variance about 1 over the pairs; contraction near 1 means the
    data determine θ_d far better than the prior, near 0 that they add little. Large |z| with high
    contraction is overconfidence (a wrong, narrow posterior).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Distribution

from physgen.diagnostics.sampling import check_samples, prior_device

__all__ = ["ZScoreResult", "z_scores", "prior_variance"]


@dataclass
class ZScoreResult:
    """Attributes: z ``(N, D)``, contraction ``(N, D)``, prior_variance ``(D,)``."""

    z: Tensor
    contraction: Tensor
    prior_variance: Tensor

    def as_dict(self) -> dict:
        """JSON-ready summary: per-component means and the variance of z."""
        return {
            "z_mean": self.z.mean(0).tolist(),
            "z_std": self.z.std(0).tolist(),
            "contraction_mean": self.contraction.mean(0).tolist(),
            "prior_variance": self.prior_variance.tolist(),
        }


def prior_variance(prior: Distribution, *, num_samples: int = 100_000, seed: int = 0) -> Tensor:
    """Per-component prior variance ``(D,)``: the closed form where torch has one, else from seeded draws."""
    try:
        var = prior.variance
        if bool(torch.isfinite(var).all()):
            return var
    except (NotImplementedError, AttributeError):
        pass
    from physgen.priors import sample_prior

    gen = torch.Generator(device=prior_device(prior, torch.device("cpu"))).manual_seed(int(seed))
    draws = sample_prior(prior, (num_samples,), generator=gen)
    return draws.var(0)


def z_scores(posterior_samples: Tensor, theta: Tensor, prior: Distribution | Tensor) -> ZScoreResult:
    """Posterior z-scores and contraction.

    Args:
        posterior_samples: draws ``(S, N, D)`` (S >= 2).
        theta: the true parameters ``(N, D)``.
        prior: the prior (its variance is used) or the prior variance itself ``(D,)``.

    Returns:
        A :class:`ZScoreResult` on the samples' device.
    """
    check_samples(posterior_samples, theta, "z_scores")
    if posterior_samples.shape[0] < 2:
        raise ValueError("z_scores: needs at least 2 posterior samples per observation for a variance")
    var_prior = prior if isinstance(prior, Tensor) else prior_variance(prior)
    var_prior = var_prior.to(posterior_samples.device, posterior_samples.dtype)
    if var_prior.shape != posterior_samples.shape[-1:]:
        raise ValueError(
            f"z_scores: prior variance must have shape (D,) = ({posterior_samples.shape[-1]},); got "
            f"{tuple(var_prior.shape)}"
        )
    var, mean = torch.var_mean(posterior_samples, dim=0)
    z = (mean - theta.to(mean)) / var.sqrt()
    return ZScoreResult(z, 1.0 - var / var_prior, var_prior)
