r"""Sequential neural likelihood estimation (SNLE; Papamakarios, Sterratt & Murray 2019) for one observation.

Round 1 simulates θ ~ π(θ). Round r > 1 simulates θ from the current posterior at x_o, drawn by MCMC on
π(θ) q_{r-1}(x_o | θ) (:meth:`physgen.inference.Likelihood.sample_posterior`), then retrains q(x | θ) on
every round's pairs. The likelihood loss needs no correction for the proposal: q(x | θ) is fitted
conditionally on θ, whatever distribution θ came from; the posterior is still prior × likelihood. The
likelihood of the last round is accurate where the posterior at x_o lives, and amortized over nearby
observations only.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from physgen.inference.likelihood import fit_likelihood
from physgen.inference.rounds import SequentialResult, check_rounds, simulate_round
from physgen.priors import sample_prior

__all__ = ["fit_likelihood_sequential"]


def fit_likelihood_sequential(
    simulator: Any,
    x_o: Tensor,
    *,
    rounds: int = 2,
    simulations_per_round: int = 1000,
    seed: int = 0,
    mcmc: dict | None = None,
    warm_start: bool = False,
    **fit_options: Any,
) -> SequentialResult:
    """SNLE: ``rounds`` rounds of ``simulations_per_round`` simulations, each after the first drawn from the
    MCMC posterior at ``x_o`` of the previous round's likelihood (module docstring).

    Args:
        simulator: a :class:`physgen.core.Simulator` (prior, batched ``simulate``).
        x_o: the observation ``(F,)``.
        rounds: R >= 1 (1 is plain NLE on prior simulations).
        simulations_per_round: simulations per round (NaN/inf rows are dropped and counted).
        seed: seeds the simulations, the training and the MCMC.
        mcmc: :meth:`Likelihood.sample_posterior` settings for the proposals.
        warm_start: rounds after the first continue training the previous round's network (and keep round 1's
            standardization), as sbi's SNLE does, instead of training a new one on all rounds' pairs. The
            rounds then hold out rows by ``validation_split="stable"`` with one seed, so no round validates
            on pairs an earlier round trained on (with a fresh random split, early stopping would keep the
            previous round's weights).
        **fit_options: :func:`physgen.fit_likelihood` keywords (model, model_options, max_epochs, ...).

    Returns:
        A :class:`physgen.inference.rounds.SequentialResult` whose ``estimator`` is the last round's
        Likelihood; each round notes whether the MCMC that proposed it converged (a proposal that did not
        is still used, with a RuntimeWarning: it only shapes where the next round simulates).
    """
    check_rounds(rounds, simulations_per_round)
    n = int(simulations_per_round)
    gen = torch.Generator().manual_seed(int(seed))
    theta = sample_prior(simulator.prior, (n,), generator=gen)
    data, dropped = simulate_round(simulator, theta, gen, None)
    history = [{"round": 1, "proposal": "prior", "simulations": len(data), "dropped": dropped}]
    if warm_start:  # every round scores the network on the same held-out rows plus the new round's share
        fit_options = {**fit_options, "validation_split": "stable"}
    lik = fit_likelihood(data, prior=simulator.prior, seed=int(seed), **fit_options)
    for r in range(2, int(rounds) + 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # reported once below, naming the round
            draw = lik.sample_posterior(x_o, n, seed=int(seed) + r, **(mcmc or {}))
        if not draw.converged:
            warnings.warn(
                f"SNLE round {r}: the proposal's MCMC did not converge ({draw.messages}); simulating from it anyway",
                RuntimeWarning,
                stacklevel=2,
            )
        before = len(data)
        data, dropped = simulate_round(simulator, draw.samples.to(theta.dtype), gen, data)
        history.append(
            {
                "round": r,
                "proposal": "posterior MCMC",
                "simulations": len(data) - before,
                "dropped": dropped,
                "proposal_converged": draw.converged,
            }
        )
        if warm_start:  # the network is round 1's: its model choice is not passed again
            rest = {k: v for k, v in fit_options.items() if k not in ("model", "model_options")}
            lik = fit_likelihood(data, prior=simulator.prior, seed=int(seed), init=lik, **rest)
        else:
            lik = fit_likelihood(data, prior=simulator.prior, seed=int(seed) + r, **fit_options)
    return SequentialResult(lik, data, history)
