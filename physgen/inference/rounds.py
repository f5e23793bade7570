"""Shared pieces of the sequential (single-observation) methods: simulating a round at given θ, the result.

:mod:`physgen.inference.snle` (SNLE rounds) and :mod:`physgen.inference.tsnpe` (truncated NPE) both run
rounds r = 1..R: draw θ from a proposal (the prior in round 1), simulate, append to all earlier rounds'
pairs, retrain on everything. Rows whose x holds NaN/inf are dropped and counted, as in
:func:`physgen.simulate`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from physgen.data import SimulationSet
from physgen.priors import prior_to_dict

__all__ = ["SequentialResult", "simulate_round", "check_rounds"]


@dataclass
class SequentialResult:
    """What a sequential method returns.

    Attributes:
        estimator: the estimator of the last round (a Posterior for TSNPE, a Likelihood for SNLE).
        data: every round's simulations together (θ ``(n, D)``, x ``(n, F)``).
        rounds: one dict per round: ``simulations`` kept, ``dropped`` (NaN/inf x), and the method's notes
            (TSNPE: the HPD threshold and the prior acceptance of the truncated proposal; SNLE: whether the
            MCMC that proposed the round converged).
    """

    estimator: Any
    data: SimulationSet
    rounds: list[dict] = field(default_factory=list)


def check_rounds(rounds: int, simulations_per_round: int) -> None:
    """Raise a ValueError naming the argument when rounds < 1 or simulations_per_round < 2."""
    if int(rounds) < 1:
        raise ValueError(f"rounds must be >= 1; got {rounds}")
    if int(simulations_per_round) < 2:
        raise ValueError(f"simulations_per_round must be >= 2; got {simulations_per_round}")


def simulate_round(
    simulator: Any, theta: Tensor, generator: torch.Generator, previous: SimulationSet | None
) -> tuple[SimulationSet, int]:
    """Simulate x at θ ``(n, D)``, drop NaN/inf rows (warned), append to ``previous`` -> (all pairs, dropped)."""
    x = simulator.simulate(theta, generator=generator)
    ok = torch.isfinite(x.reshape(x.shape[0], -1)).all(-1)
    dropped = int((~ok).sum())
    if dropped:
        warnings.warn(
            f"{dropped} of {theta.shape[0]} simulations of this round returned NaN/inf in x and were dropped",
            RuntimeWarning,
            stacklevel=3,
        )
    theta, x = theta[ok].float().cpu(), x[ok].float().cpu()
    if previous is not None:
        theta, x = torch.cat([previous.theta, theta]), torch.cat([previous.x, x])  # type: ignore[list-item]
    meta = {"simulator": getattr(simulator, "name", type(simulator).__name__), "prior": prior_to_dict(simulator.prior)}
    return SimulationSet(theta, x, meta), dropped
