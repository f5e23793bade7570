r"""Truncated sequential NPE (TSNPE; Deistler, Gonçalves & Macke 2022) for one observation.

Round 1 simulates θ ~ π(θ) and trains q(θ | x) by the plain NPE loss. Round r > 1 simulates θ from the
prior truncated to the highest-probability-density region of the current posterior at x_o:

    π̃_r(θ) ∝ π(θ) · 1[ q_{r-1}(θ | x_o) >= τ ],   τ = the ε-quantile of log q_{r-1}(θ | x_o), θ ~ q_{r-1}(· | x_o),

so the region holds 1 - ε of the posterior's mass (ε = 1e-4 by default, as in the paper). Because π̃ is
the prior restricted to a set that contains (almost) all of the posterior, the posterior under π̃ equals
the true posterior inside it, and training on every round's pairs with the *plain* NPE loss needs no
importance weights or atomic correction. π̃ is sampled by rejection from the prior; the acceptance rate
(the prior mass of the region) is recorded per round.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Independent, MultivariateNormal, Uniform

from physgen.inference.fitting import fit_posterior
from physgen.inference.posterior import Posterior, SamplingError
from physgen.inference.rounds import SequentialResult, check_rounds, simulate_round
from physgen.priors import Joint, LogNormal, LogUniform, sample_prior

__all__ = ["fit_posterior_truncated", "truncated_prior_sample"]

HPD_SAMPLES = 10_000  # posterior draws that set the HPD threshold τ


MIN_ACCEPTANCE = 1e-3  # below this prior acceptance, propose from the prior restricted to the region's bounding box
BOX_MARGIN = 0.5  # the box: the HPD draws' range, widened by this fraction of it on each side


def _marginal_cdfs(prior: Any) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]] | None:
    """Per-component CDF and inverse CDF ``(..., D) -> (..., D)`` of a prior with independent components
    (float64), or None for a prior without them (e.g. a correlated MultivariateNormal)."""
    ndtr, ndtri = torch.special.ndtr, torch.special.ndtri
    if isinstance(prior, LogUniform):
        lo, hi = prior._log_low.double(), prior._log_high.double()
        return (lambda t: ((torch.log(t) - lo) / (hi - lo)).clamp(0, 1)), (lambda u: torch.exp(lo + u * (hi - lo)))
    if isinstance(prior, Independent) and isinstance(prior.base_dist, Uniform):  # BoxUniform too
        a, b = prior.base_dist.low.double(), prior.base_dist.high.double()
        return (lambda t: ((t - a) / (b - a)).clamp(0, 1)), (lambda u: a + u * (b - a))
    if isinstance(prior, LogNormal):
        m, s = prior.loc.double(), prior.scale.double()
        return (lambda t: ndtr((torch.log(t) - m) / s)), (lambda u: torch.exp(m + s * ndtri(u)))
    if isinstance(prior, Independent) and isinstance(prior.base_dist, torch.distributions.Normal):
        m, s = prior.base_dist.loc.double(), prior.base_dist.scale.double()
        return (lambda t: ndtr((t - m) / s)), (lambda u: m + s * ndtri(u))
    if isinstance(prior, MultivariateNormal):
        tril = prior.scale_tril.double()
        if not bool(torch.equal(tril, torch.diag_embed(torch.diagonal(tril)))):
            return None
        m, s = prior.loc.double(), torch.diagonal(tril)
        return (lambda t: ndtr((t - m) / s)), (lambda u: m + s * ndtri(u))
    if isinstance(prior, Joint):
        found = [_marginal_cdfs(p) for p in prior.parts]
        parts = [p for p in found if p is not None]
        if len(parts) < len(found):
            return None
        cuts = list(itertools.accumulate(prior.sizes))[:-1]

        def joined(i: int) -> Callable[[Tensor], Tensor]:
            return lambda t: torch.cat([p[i](c) for p, c in zip(parts, torch.tensor_split(t, cuts, -1))], -1)

        return joined(0), joined(1)
    return None


def _box_proposal(prior: Any, ref: Tensor) -> tuple[Callable[[int, torch.Generator], Tensor], float] | None:
    """The prior restricted to the bounding box of the HPD draws ``ref`` ``(m, D)`` (widened by BOX_MARGIN):
    a sampler ``(n, generator) -> (n, D)`` by inverse CDF per component, and the box's prior mass; None for a
    prior without independent components."""
    cdfs = _marginal_cdfs(prior)
    if cdfs is None:
        return None
    cdf, icdf = cdfs
    r = ref.double()
    lo, hi = r.min(0).values, r.max(0).values
    lo, hi = lo - BOX_MARGIN * (hi - lo), hi + BOX_MARGIN * (hi - lo)
    u_lo = torch.nan_to_num(cdf(lo), nan=0.0)  # below a positive support (log of a negative bound): 0
    u_hi = torch.nan_to_num(cdf(hi), nan=1.0)
    mass = float(torch.prod(u_hi - u_lo))

    def sample(n: int, generator: torch.Generator) -> Tensor:
        u = torch.rand((n, r.shape[1]), generator=generator, dtype=torch.float64)
        return icdf(u_lo + u * (u_hi - u_lo)).to(ref.dtype)

    return sample, mass


def _prior_draws(prior: Any, n: int, generator: torch.Generator) -> Tensor:
    return sample_prior(prior, (n,), generator=generator)


@torch.no_grad()
def truncated_prior_sample(
    posterior: Posterior,
    prior: Any,
    x_o: Tensor,
    n: int,
    *,
    epsilon: float = 1e-4,
    generator: torch.Generator,
    max_draws: int = 10_000_000,
) -> tuple[Tensor, float, float]:
    """n draws of the prior truncated to the (1 - ε) HPD region of q(θ | x_o) -> (θ ``(n, D)``, τ, acceptance).

    Draws come from the prior by rejection; when fewer than MIN_ACCEPTANCE of the first block land in the
    region and the prior's components are independent (BoxUniform, LogUniform, LogNormal, Normal, diagonal
    MultivariateNormal, Joint of those), the proposal becomes the prior restricted to the bounding box of the
    HPD draws (widened by BOX_MARGIN of their range per side), sampled by inverse CDF, and the acceptance is
    the box's prior mass times the fraction accepted.

    Raises:
        SamplingError: fewer than n proposals fell in the region within ``max_draws`` (the region's prior
            mass is below about n / max_draws, or its share of the box; raise max_draws or epsilon).
    """
    seed = int(torch.randint(2**62, (1,), generator=generator))
    ref = posterior.sample(HPD_SAMPLES, x_o, seed=seed)
    tau = float(torch.quantile(posterior.log_prob(ref, x_o, normalize=False).double(), float(epsilon)))
    block = max(4 * n, 10_000)

    propose: Callable[[int, torch.Generator], Tensor] = functools.partial(_prior_draws, prior)

    kept, tried, count, box_mass, boxed = [], 0, 0, 1.0, False
    while count < n:
        if tried >= max_draws:
            raise SamplingError(
                f"truncated prior: only {count} of {tried} proposals lie in the posterior's HPD region (prior mass "
                f"~{box_mass * count / max(tried, 1):.1e}); raise max_draws or epsilon"
            )
        cand = propose(block, generator)
        ok = posterior.log_prob(cand, x_o, normalize=False) >= tau
        kept.append(cand[ok])
        count += int(ok.sum())
        tried += block
        if not boxed and tried == block and count < MIN_ACCEPTANCE * block:
            box = _box_proposal(prior, ref)  # a region too small for plain rejection: propose inside its box
            if box is not None:
                (propose, box_mass), boxed = box, True
                kept, tried, count = [], 0, 0
    return torch.cat(kept)[:n], tau, box_mass * count / tried


def fit_posterior_truncated(
    simulator: Any,
    x_o: Tensor,
    *,
    rounds: int = 2,
    simulations_per_round: int = 1000,
    epsilon: float = 1e-4,
    seed: int = 0,
    **fit_options: Any,
) -> SequentialResult:
    """TSNPE: ``rounds`` rounds, each after the first simulated from the prior truncated to the current
    posterior's (1 - ε) HPD region at ``x_o``; the posterior is retrained on all rounds with the plain loss.

    Args:
        simulator: a :class:`physgen.core.Simulator` (prior, batched ``simulate``).
        x_o: the observation ``x_shape``.
        rounds: R >= 1 (1 is plain NPE).
        simulations_per_round: simulations per round (NaN/inf rows are dropped and counted).
        epsilon: the posterior mass left outside the truncation region, in (0, 1).
        seed: seeds the simulations and the training.
        **fit_options: :func:`physgen.fit_posterior` keywords.

    Returns:
        A :class:`physgen.inference.rounds.SequentialResult`; ``estimator`` is the last round's Posterior,
        each round notes τ and the acceptance (the prior mass of the truncated region).
    """
    check_rounds(rounds, simulations_per_round)
    if not 0.0 < float(epsilon) < 1.0:
        raise ValueError(f"epsilon must lie in (0, 1); got {epsilon}")
    n, gen = int(simulations_per_round), torch.Generator().manual_seed(int(seed))
    data, dropped = simulate_round(simulator, sample_prior(simulator.prior, (n,), generator=gen), gen, None)
    history: list[dict] = [{"round": 1, "proposal": "prior", "simulations": len(data), "dropped": dropped}]
    post = fit_posterior(data, prior=simulator.prior, seed=int(seed), **fit_options)
    for r in range(2, int(rounds) + 1):
        theta, tau, acceptance = truncated_prior_sample(post, simulator.prior, x_o, n, epsilon=epsilon, generator=gen)
        before = len(data)
        data, dropped = simulate_round(simulator, theta, gen, data)
        history.append(
            {
                "round": r,
                "proposal": "truncated prior",
                "simulations": len(data) - before,
                "dropped": dropped,
                "log_density_threshold": tau,
                "prior_mass": acceptance,
                "log10_prior_mass": math.log10(max(acceptance, 1e-300)),
            }
        )
        post = fit_posterior(data, prior=simulator.prior, seed=int(seed) + r, **fit_options)
    return SequentialResult(post, data, history)
