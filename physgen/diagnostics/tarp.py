r"""TARP: tests of accuracy with random points (Lemos, Coogan et al. 2023, arXiv:2302.03026).

Math:
    Each held-out pair (θ_i, x_i) gets a random reference point θ_r,i, and S draws θ_i^(s) ~ q(θ | x_i).
    The ball around θ_r,i through θ_i is a credible region of q of level

        f_i = #{s : d(θ_r,i, θ_i^(s)) < d(θ_r,i, θ_i)} / S,

    and the expected coverage probability is ECP(α) = (1/N) Σ_i 1[f_i < α], with ≤ at the last level of the
    grid (so ECP(1) = 1; on sbi's grid this reproduces its histogram's cumulative sum). For the true
    posterior f_i is uniform on [0, 1] for any choice of references, so ECP(α) = α; TARP is necessary and
    sufficient for a correct posterior when references are drawn from a distribution with full support.
    ``atc`` (area to curve, as sbi's ``check_tarp``) is Σ_{α ≥ 1/2} (ECP(α) - α) Δα: > 0 for a posterior
    that is too wide, < 0 for one too narrow. ``ks_pvalue`` is the Kolmogorov-Smirnov test of the f_i
    against Uniform(0, 1); ``passed`` holds when it exceeds ``alpha``.

    Distances: Euclidean, after normalising every component to [0, 1] with the min and max of θ over the N
    held-out pairs (sbi's ``run_tarp`` with ``z_score_theta=True``).
    References: drawn from the prior (default when one is known), or uniform over the box spanned by θ
    (sbi's default), or given.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Distribution

from physgen.diagnostics.sampling import check_pairs, check_samples, posterior_device, posterior_draws, prior_device

__all__ = ["TARPResult", "tarp", "tarp_from_samples", "tarp_references"]


@dataclass
class TARPResult:
    """TARP expected coverage curve.

    Attributes:
        alpha: ``(L,)`` credibility levels (grid from 0 to 1 by default).
        ecp: ``(L,)`` expected coverage probability at each level.
        atc: area between ECP and the diagonal for α ≥ 1/2 (> 0: too wide, < 0: too narrow).
        ks_pvalue: Kolmogorov-Smirnov p-value of the credibilities f against Uniform(0, 1).
        credibility: ``(N,)`` the f_i.
        significance: level of the KS test.
        passed: ks_pvalue > significance.
    """

    alpha: Tensor
    ecp: Tensor
    atc: float
    ks_pvalue: float
    credibility: Tensor
    significance: float
    passed: bool

    def as_dict(self) -> dict:
        """JSON-ready summary."""
        return {
            "alpha": self.alpha.tolist(),
            "ecp": self.ecp.tolist(),
            "atc": self.atc,
            "ks_pvalue": self.ks_pvalue,
            "num_pairs": int(self.credibility.numel()),
            "significance": self.significance,
            "passed": self.passed,
        }


# added to the seed of the references, so that they never repeat θ drawn from the same prior with the same seed
_REFERENCE_SALT = 0x7A4B5EED


def tarp_references(theta: Tensor, *, prior: Distribution | None = None, seed: int = 0) -> Tensor:
    """Reference points ``(N, D)``: prior draws if ``prior`` is given, else uniform over θ's bounding box.

    The generator is seeded with ``seed`` plus a fixed offset, so references drawn with seed s differ from
    held-out θ drawn from the same prior with seed s (identical points would make every f_i degenerate).
    """
    seed = int(seed) + _REFERENCE_SALT
    if prior is not None:
        from physgen.priors import sample_prior

        ref = sample_prior(
            prior,
            (theta.shape[0],),
            generator=torch.Generator(device=prior_device(prior, theta.device)).manual_seed(int(seed)),
        )
        if tuple(ref.shape) != tuple(theta.shape):
            raise ValueError(
                f"tarp: prior draws have shape {tuple(ref.shape)}, theta {tuple(theta.shape)}; pass the "
                "prior of these parameters or references="
            )
        return ref.to(theta.device, theta.dtype)
    gen = torch.Generator(device=theta.device).manual_seed(int(seed))
    lo, hi = theta.min(0).values, theta.max(0).values
    return lo + (hi - lo) * torch.rand(theta.shape, generator=gen, device=theta.device, dtype=theta.dtype)


def tarp_from_samples(
    samples: Tensor,
    theta: Tensor,
    *,
    references: Tensor | None = None,
    prior: Distribution | None = None,
    alpha: Tensor | None = None,
    num_alpha: int = 101,
    normalize: bool = True,
    seed: int = 0,
    significance: float = 0.01,
) -> TARPResult:
    """TARP from draws already made.

    Args:
        samples: posterior draws ``(S, N, D)``.
        theta: the true parameters ``(N, D)``.
        references: ``(N, D)`` reference points; None draws them (from ``prior`` if given, else uniform over
            θ's box) with ``seed``.
        prior: the prior, for the references.
        alpha: ``(L,)`` levels at which ECP is reported (default ``linspace(0, 1, num_alpha)``); pass the grid
            of sbi's ``run_tarp`` to compare with it point by point.
        normalize: rescale every component by the min/max of θ before distances (as sbi).
        seed: seeds the references.
        significance: level of the KS test behind ``passed``.
    """
    from scipy.stats import kstest

    check_samples(samples, theta, "tarp")
    theta = theta.to(samples.device, samples.dtype)
    ref = (
        tarp_references(theta, prior=prior, seed=seed)
        if references is None
        else references.to(theta.device, theta.dtype)
    )
    if tuple(ref.shape) != tuple(theta.shape):
        raise ValueError(f"tarp: references must have the shape of theta {tuple(theta.shape)}; got {tuple(ref.shape)}")
    if normalize:
        lo, hi = theta.min(0).values, theta.max(0).values
        scale = 1.0 / (hi - lo + 1e-10)
        samples, theta, ref = (samples - lo) * scale, (theta - lo) * scale, (ref - lo) * scale
    d_samples = (samples - ref.unsqueeze(0)).square().sum(-1)  # (S, N): squared distances keep the order
    d_theta = (theta - ref).square().sum(-1)  # (N,)
    grid = (
        torch.linspace(0.0, 1.0, int(num_alpha), dtype=torch.float64) if alpha is None else torch.as_tensor(alpha).cpu()
    )
    if not grid.is_floating_point():
        grid = grid.to(torch.float64)
    # f in the grid's dtype: a given grid (sbi's, float32) is compared with f exactly as sbi computes it
    f = (d_samples < d_theta.unsqueeze(0)).sum(0).cpu().to(grid.dtype) / samples.shape[0]
    if grid.dim() != 1 or grid.numel() < 2:
        raise ValueError(f"tarp: alpha must be a 1-d grid of at least 2 levels; got shape {tuple(grid.shape)}")
    ecp = (f.unsqueeze(0) < grid.unsqueeze(1)).double().mean(1)
    ecp[-1] = (f <= grid[-1]).double().mean()  # the last level includes its end point (1 on the default grid)
    mid = grid.numel() // 2
    atc = float(((ecp[mid:] - grid[mid:]) * (grid[1] - grid[0])).sum())
    ks = float(kstest(f.double().numpy(), "uniform").pvalue)
    return TARPResult(grid.double(), ecp, atc, ks, f.double(), float(significance), ks > significance)


def tarp(
    posterior: object,
    theta: Tensor,
    x: Tensor,
    *,
    num_posterior_samples: int = 1000,
    num_references: int | None = None,
    references: Tensor | str | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    num_alpha: int = 101,
    normalize: bool = True,
    significance: float = 0.01,
) -> TARPResult:
    """TARP of an amortized posterior on held-out pairs.

    Args:
        posterior: a physgen Posterior or any object with ``sample(n, x, *, generator) -> (n, B, D)``;
            its ``prior`` attribute (if any) provides the references.
        theta: ``(N, D)`` parameters drawn from the prior.
        x: ``(N, *x_shape)`` observations simulated from them.
        num_posterior_samples: S draws per observation.
        num_references: must be None or N (one reference per pair, as in Lemos et al.); kept for clarity.
        references: ``(N, D)`` points, ``"prior"`` (default when the posterior has a prior) or ``"box"``
            (uniform over θ's bounding box, sbi's default).
        seed: seeds the draws and the references.
        batch_size: observations per ``sample`` call (None: one call).
        num_alpha, normalize, significance: see :func:`tarp_from_samples`.

    Returns:
        A :class:`TARPResult`.
    """
    theta, x = check_pairs(theta, x, "tarp")
    if num_references is not None and int(num_references) != theta.shape[0]:
        raise ValueError(
            f"tarp: one reference per held-out pair: num_references must be None or N={theta.shape[0]}; "
            f"got {num_references}"
        )
    prior = getattr(posterior, "prior", None)
    if references is None:
        references = "prior" if prior is not None else "box"
    if isinstance(references, str):
        if references not in ("prior", "box"):
            raise ValueError(f"tarp: references must be a tensor, 'prior' or 'box'; got {references!r}")
        if references == "prior" and prior is None:
            raise ValueError(
                "tarp: references='prior' but the posterior has no prior; pass references='box' or a tensor"
            )
        ref_prior, references = (prior if references == "prior" else None), None
    else:
        ref_prior = None
    samples = posterior_draws(posterior, x, num_posterior_samples, seed=seed, batch_size=batch_size)
    theta = theta.to(posterior_device(posterior, theta.device))
    return tarp_from_samples(
        samples,
        theta,
        references=references,
        prior=ref_prior,
        num_alpha=num_alpha,
        normalize=normalize,
        seed=seed,
        significance=significance,
    )
