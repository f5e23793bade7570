r"""Convergence checks for MCMC draws, by arviz.

Criteria (Vehtari et al. 2021, the defaults of the physgen references):
    * rank-normalised split R-hat (``arviz.rhat(method="rank")``) <= ``rhat_max`` (1.01) for every
      parameter: the chains (each split in halves) agree in location and scale;
    * bulk ESS (``arviz.ess(method="bulk")``) >= ``ess_min`` (400) for every parameter;
    * tail ESS (``arviz.ess(method="tail")``, the 5 % and 95 % quantiles) >= ``ess_min``.

Degenerate input: a NaN R-hat or ESS (constant chains, too few draws) counts as a failure.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["Convergence", "check_convergence", "draws"]


@dataclass
class Convergence:
    """The verdict of :func:`check_convergence`.

    Attributes:
        converged: every criterion holds.
        rhat_max: the largest R-hat over parameters (NaN if arviz returned NaN).
        ess_bulk_min, ess_tail_min: the smallest bulk / tail ESS over parameters.
        messages: one sentence per failed criterion (empty when converged).
    """

    converged: bool
    rhat_max: float
    ess_bulk_min: float
    ess_tail_min: float
    messages: list[str] = field(default_factory=list)


def _posterior_dataset(obj):
    from physgen.deps import az

    if isinstance(obj, az.InferenceData):
        if "posterior" not in obj.groups():
            raise ValueError("check_convergence: the InferenceData has no posterior group")
        return obj.posterior
    arr = obj.detach().cpu().double().numpy() if torch.is_tensor(obj) else np.asarray(obj, dtype=np.float64)
    if arr.ndim != 3:
        raise ValueError(
            f"check_convergence: draws must be an InferenceData or an array (chains, draws, D); got shape {arr.shape}. "
            "A single chain (n, D) is arr[None]."
        )
    if arr.shape[1] < 4:
        raise ValueError(f"check_convergence: need at least 4 draws per chain; got {arr.shape[1]}")
    with warnings.catch_warnings():  # the layout is explicit: silence arviz's "more chains than draws" guess
        warnings.filterwarnings("ignore", message="More chains")
        return az.convert_to_dataset({f"theta_{i}": arr[..., i] for i in range(arr.shape[-1])})


def _per_parameter(ds) -> dict[str, np.ndarray]:
    """Variable name (with index for non-scalar variables) -> its values."""
    out: dict[str, np.ndarray] = {}
    for name, var in ds.data_vars.items():
        vals = np.asarray(var.values, dtype=np.float64).reshape(-1)
        if vals.size == 1:
            out[str(name)] = vals
        else:
            for i, v in enumerate(vals):
                out[f"{name}[{i}]"] = np.asarray([v])
    return out


def _worst(values: dict[str, np.ndarray], largest: bool) -> tuple[float, str]:
    items = [(float(v[0]), k) for k, v in values.items()]
    if any(math.isnan(v) for v, _ in items):
        v, k = next((v, k) for v, k in items if math.isnan(v))
        return v, k
    return max(items) if largest else min(items)


def check_convergence(idata_or_array, *, rhat_max: float = 1.01, ess_min: float = 400) -> Convergence:
    """Check R-hat, bulk ESS and tail ESS of MCMC draws.

    Args:
        idata_or_array: an ``arviz.InferenceData`` (its posterior group, dims ``(chain, draw, ...)``) or
            draws ``(chains, draws, D)`` (Tensor or array; parameters are named theta_0 ...).
        rhat_max: the largest acceptable rank-normalised split R-hat.
        ess_min: the smallest acceptable bulk and tail ESS (whole sample, all chains).

    Returns:
        A :class:`Convergence`; ``messages`` names each failed criterion and the worst parameter.

    Raises:
        ValueError: an array that is not 3-d, or fewer than 4 draws per chain.
    """
    from physgen.deps import az

    ds = _posterior_dataset(idata_or_array)
    rhat, rhat_name = _worst(_per_parameter(az.rhat(ds, method="rank")), largest=True)
    bulk, bulk_name = _worst(_per_parameter(az.ess(ds, method="bulk")), largest=False)
    tail, tail_name = _worst(_per_parameter(az.ess(ds, method="tail")), largest=False)
    n_chains = int(ds.sizes.get("chain", 1))
    messages = []
    if not rhat <= rhat_max:
        messages.append(
            f"R-hat {rhat:.4g} > {rhat_max:g} for {rhat_name}: the {n_chains} chains disagree (stuck in different "
            "modes or not yet stationary); run longer, start the chains from a better initialisation, or use more walkers"
        )
    if not bulk >= ess_min:
        messages.append(f"bulk ESS {bulk:.4g} < {ess_min:g} for {bulk_name}: too few independent draws; run longer")
    if not tail >= ess_min:
        messages.append(f"tail ESS {tail:.4g} < {ess_min:g} for {tail_name}: the tails are poorly sampled; run longer")
    return Convergence(not messages, float(rhat), float(bulk), float(tail), messages)


def draws(idata) -> torch.Tensor:
    """Posterior draws of an ``InferenceData`` flattened over chains: ``(chains · draws, D)`` float64.

    Columns follow the order of the posterior variables (theta_0, theta_1, ...); a variable with
    extra dimensions contributes one column per entry. Rows are chain-major.
    """
    post = idata.posterior
    cols = []
    for var in post.data_vars.values():
        vals = np.asarray(var.transpose("chain", "draw", ...).values, dtype=np.float64)
        cols.append(vals.reshape(vals.shape[0] * vals.shape[1], -1))
    if not cols:
        raise ValueError("draws: the posterior group has no variables")
    return torch.from_numpy(np.concatenate(cols, axis=1))
