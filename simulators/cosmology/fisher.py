r"""Fisher forecast of a Gaussian field: the width a perfect (unbiased, efficient) analysis would reach.

For the exact field-level likelihood of :class:`~simulators.cosmology.GaussianField` every grid
mode k ≠ 0 is an independent real Gaussian degree of freedom of variance ∝ P(k) (the pair ±k gives
two), so

    F_ij(θ) = E[-∂_i ∂_j ln p(δ | θ)] = 1/2 Σ_{grid modes k ≠ 0} ∂_i ln P(k; θ) ∂_j ln P(k; θ),

a sum over the distinct |k| weighted by their mode counts. The derivatives of ln P are taken by
autograd through the same P the simulator and its likelihood use. σ_i = sqrt((F^{-1})_ii) is the
Cramér-Rao bound on the marginal standard deviation; it ignores the prior box, so near a prior
edge the true posterior can be narrower.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["fisher_matrix", "fisher_sigma"]


def fisher_matrix(simulator, theta: Tensor) -> Tensor:
    """Fisher information of a GaussianField's exact likelihood at θ.

    Args:
        simulator: a :class:`~simulators.cosmology.GaussianField`.
        theta: ``(*B, D)`` parameter points inside the prior.

    Returns:
        ``(*B, D, D)`` float64.
    """
    if not hasattr(simulator, "log_power_modes") or getattr(simulator, "name", "") != "gaussian_field":
        raise ValueError(
            "fisher_matrix needs a GaussianField (its likelihood is a Gaussian in Fourier modes); "
            f"got {type(simulator).__name__}"
        )
    theta = torch.as_tensor(theta, dtype=torch.float64)
    simulator.cosmo.check(theta)
    flat = theta.reshape(-1, theta.shape[-1]).detach()
    counts = simulator.modes(flat.device).counts
    D = flat.shape[-1]
    jacs = [torch.autograd.functional.jacobian(lambda t: simulator.log_power_modes(t[None])[0], row) for row in flat]
    jac = torch.stack(jacs)  # (N, K - 1, D): d ln P(k_j) / d θ_i
    F = 0.5 * torch.einsum("k,nki,nkj->nij", counts, jac, jac)
    return F.reshape(*theta.shape[:-1], D, D)


def fisher_sigma(simulator, theta: Tensor) -> Tensor:
    """Fisher-forecast marginal standard deviations sqrt(diag F^{-1}), ``(*B, D)`` float64 (module docstring)."""
    F = fisher_matrix(simulator, theta)
    return torch.diagonal(torch.linalg.inv(F), dim1=-2, dim2=-1).sqrt()
