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

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from physgen.inference.fitting import fit_posterior
from physgen.inference.posterior import Posterior, SamplingError
from physgen.inference.rounds import SequentialResult, check_rounds, simulate_round
from physgen.prior_cdfs import marginal_cdfs
from physgen.priors import sample_prior

__all__ = ["fit_posterior_truncated", "truncated_prior_sample"]

HPD_SAMPLES = 10_000  # posterior draws that set the HPD threshold τ
MIN_ACCEPTANCE = 1e-3  # below this prior acceptance, propose from the prior restricted to the region's bounding box
BOX_MARGIN = 0.5  # the box: the HPD draws' range, widened by this fraction of it on each side


def _box_proposal(prior: Any, ref: Tensor) -> tuple[Callable[[int, torch.Generator], Tensor], float] | None:
    """The prior restricted to the bounding box of the HPD draws ``ref`` ``(m, D)`` (widened by BOX_MARGIN):
    a sampler ``(n, generator) -> (n, D)`` by inverse CDF per component, and the box's prior mass; None for a
    prior without independent components."""
    cdfs = marginal_cdfs(prior)
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
    kept, tried, count = [], 0, 0
    box_sample, box_mass = None, 1.0  # the box proposal and its prior mass, once the region proves too small
    while count < n:
        if tried >= max_draws:
            raise SamplingError(
                f"truncated prior: only {count} of {tried} proposals lie in the posterior's HPD region (prior mass "
                f"~{box_mass * count / max(tried, 1):.1e}); raise max_draws or epsilon"
            )
        cand = box_sample(block, generator) if box_sample else sample_prior(prior, (block,), generator=generator)
        ok = posterior.log_prob(cand, x_o, normalize=False) >= tau
        kept.append(cand[ok])
        count += int(ok.sum())
        tried += block
        if box_sample is None and tried == block and count < MIN_ACCEPTANCE * block:
            box = _box_proposal(prior, ref)  # a region too small for plain rejection: propose inside its box
            if box is not None:
                (box_sample, box_mass), kept, tried, count = box, [], 0, 0
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
