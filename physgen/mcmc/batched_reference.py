r"""A reference posterior from many short chains of the batched torch sampler, checked by arviz.

``reference_posterior(..., sampler="batched")`` lands here. For a likelihood written in torch that is
cheap per θ only in batches (a field-level Gaussian likelihood: one FFT of the data, then a sum over
modes per θ), C chains advanced together cost little more than one, so C = 256 chains of a few
hundred steps give a converged reference in seconds where emcee's ensemble (a few walkers per call)
needs minutes (docs/mcmc.md).

Algorithm:

1. Start C chains inside the support: the C best of max(2000, 20·C) prior draws by log posterior,
   or draws of ``initial`` (as :func:`physgen.mcmc.reference_posterior`).
2. Run :func:`physgen.mcmc.batched_metropolis` (adaptive random-walk Metropolis; the proposal
   covariance is pooled over the C chains, the scale tuned to acceptance 0.234) for ``burn_in``
   adaptation steps, then K = max(ceil(num_samples / C), 100) kept draws per chain, thinned by
   ``thin`` (at least 100 draws per chain: split R-hat on a handful of draws per chain is noise, and
   fails a 1.01 threshold by chance).
3. Check convergence over the C chains (rank-normalised split R-hat, bulk and tail ESS). If it fails,
   continue from the last states with twice the burn-in and twice the thinning, until converged
   or the total steps per chain would pass ``max_steps``.

Chains for R-hat, as for emcee's runs (:mod:`physgen.mcmc.emcee_reference`): the C chains are dealt
into G = ``num_groups`` groups of C/G, and each group's chains are interleaved step-major into one arviz
chain (draw index = step·C/G + chain). R-hat then compares G independently started groups and, split in
halves, early against late draws (non-stationarity). Per-chain R-hat would ask every one of C short chains to be ~100 autocorrelation
times long (measured on the 32×32 field: R-hat 1.04 after 300 + 200 steps, where the grouped
R-hat is 1.00x), which would throw away the point of running many chains at once. The ESS, in
turn, is computed on the C separate chains (arviz's multi-chain ESS), so the autocorrelation
within each chain counts in full.
"""

from __future__ import annotations

import math
import time
import warnings

import torch
from torch import Tensor

from physgen.io import to_inference_data
from physgen.mcmc.convergence import Convergence, check_convergence
from physgen.mcmc.density import log_posterior, simulator_name
from physgen.mcmc.metropolis import batched_metropolis
from physgen.mcmc.start import prior_like as _prior_like, start as _start

__all__ = ["batched_reference"]

_MIN_DRAWS = 100  # kept draws per chain, at least


def _verdict(groups: Tensor, chains: Tensor, rhat_max: float, ess_min: float) -> Convergence:
    """R-hat over the G interleaved groups; bulk and tail ESS over the C separate chains (their
    autocorrelation within each chain counted: interleaving would hide it from arviz's estimate)."""
    g = check_convergence(groups, rhat_max=rhat_max, ess_min=0.0)
    c = check_convergence(chains, rhat_max=math.inf, ess_min=ess_min)
    messages = [m for m in g.messages if m.startswith("R-hat")] + [m for m in c.messages if "ESS" in m]
    return Convergence(not messages, g.rhat_max, c.ess_bulk_min, c.ess_tail_min, messages)


def batched_reference(
    simulator,
    x_obs: Tensor,
    *,
    num_samples: int = 10_000,
    seed: int = 0,
    num_chains: int = 256,
    num_groups: int = 4,
    burn_in: int = 300,
    thin: int = 2,
    initial=None,
    max_steps: int = 10_000,
    rhat_max: float = 1.01,
    ess_min: float = 400,
):
    """Sample p(θ | x_obs) with C batched Metropolis chains and check convergence (module docstring).

    Args:
        simulator: a simulator with ``prior`` and a torch ``log_likelihood(theta (*B, D), x) -> (*B,)``.
        x_obs: one observation, shape ``simulator.x_shape``.
        num_samples: at least this many draws in total (C chains × max(ceil(num_samples / C), 100) draws).
        seed: seeds the starts and the chains.
        num_chains: C (rounded up to a multiple of ``num_groups``).
        num_groups: G, the arviz chains (groups of C/G interleaved Metropolis chains), >= 2.
        burn_in: adaptation steps of the first attempt (discarded).
        thin: keep one step in ``thin`` (first attempt).
        initial: None, a physgen ``Posterior`` or points ``(n, D)`` (as :func:`reference_posterior`).
        max_steps: the most steps per chain over all attempts.
        rhat_max, ess_min: the convergence criteria.

    Returns:
        ``arviz.InferenceData`` (chains = G groups), attrs as :func:`reference_posterior` with ``sampler`` =
        "batched_metropolis", ``num_chains``, and ``burn_in`` / ``thin`` of the last attempt.
    """

    t0 = time.perf_counter()
    G = int(num_groups)
    C = G * math.ceil(int(num_chains) / max(G, 1))
    if G < 2 or C < 2 * G or int(num_samples) < 1 or int(burn_in) < 0 or int(thin) < 1:
        raise ValueError(
            f"batched reference: need num_groups >= 2, num_chains >= 2 * num_groups, num_samples >= 1, "
            f"burn_in >= 0 and thin >= 1; got {num_groups}, {num_chains}, {num_samples}, {burn_in}, {thin}"
        )
    logp = log_posterior(simulator, x_obs)
    like = _prior_like(simulator.prior)
    D = int(like.shape[-1])
    x_obs = torch.as_tensor(x_obs).to(like.device)
    gen = torch.Generator(device=like.device).manual_seed(int(seed))
    with torch.no_grad():
        state = _start(simulator, x_obs, logp, C, D, initial, torch.Generator().manual_seed(int(seed)), like)
    state = state.to(torch.float64)[:, None, :]  # (C, 1, D)
    K = max(math.ceil(int(num_samples) / C), _MIN_DRAWS)  # kept draws per Metropolis chain
    b, t, spent = int(burn_in), int(thin), 0
    while True:
        samples, acc = batched_metropolis(logp, state, num_steps=K * t, burn_in=b, thin=t, generator=gen)
        spent += b + K * t
        state = samples[-1]
        per = samples[:, :, 0].reshape(K, G, C // G, D)  # (K, G, C/G, D)
        chains = per.permute(1, 0, 2, 3).reshape(G, K * (C // G), D)  # step-major within a group
        verdict = _verdict(chains, samples[:, :, 0].permute(1, 0, 2), rhat_max, ess_min)
        if verdict.converged or spent + 2 * b + 2 * K * t > int(max_steps):
            break
        b, t = 2 * b, 2 * t
    messages = list(verdict.messages)
    if not verdict.converged:
        messages.append(f"stopped at {spent} steps per chain (max_steps={max_steps}); raise max_steps or num_chains")
    attrs = {
        "converged": int(verdict.converged),
        "rhat_max": verdict.rhat_max,
        "ess_bulk_min": verdict.ess_bulk_min,
        "ess_tail_min": verdict.ess_tail_min,
        "burn_in": b,
        "thin": t,
        "steps_per_chain": spent,
        "num_chains": C,
        "num_groups": G,
        "acceptance": float(acc.mean()),
        "sampler": "batched_metropolis",
        "seconds": time.perf_counter() - t0,
        "messages": "; ".join(messages),
    }
    if messages:
        warnings.warn(
            f"reference_posterior for {simulator_name(simulator)}: " + "; ".join(messages), RuntimeWarning, stacklevel=3
        )
    idata = to_inference_data(chains.to(like.dtype), observation=x_obs, attrs=attrs)
    idata.posterior.attrs.update(attrs)
    return idata
