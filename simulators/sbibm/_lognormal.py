"""A product of independent log-normals as a prior (sbibm's sir and lotka_volterra priors)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Independent, LogNormal

__all__ = ["LogNormalPrior"]


class LogNormalPrior(Independent):
    """θ_d ~ LogNormal(loc_d, scale_d) independently; event shape ``(D,)``.

    ``log_prob`` is -inf (never an error, never NaN) for θ with an entry <= 0, the prior's contract.

    Args:
        loc, scale: ``(D,)`` mean and standard deviation of log θ.
        device: device of the tensors.
    """

    def __init__(self, loc, scale, device: str | torch.device | None = None):
        loc_t = torch.as_tensor(loc, dtype=torch.get_default_dtype(), device=device)
        scale_t = torch.as_tensor(scale, dtype=torch.get_default_dtype(), device=device)
        super().__init__(LogNormal(loc_t, scale_t, validate_args=False), 1, validate_args=False)

    @property
    def loc(self) -> Tensor:
        """``(D,)`` mean of log θ."""
        return self.base_dist.loc

    @property
    def scale(self) -> Tensor:
        """``(D,)`` standard deviation of log θ."""
        return self.base_dist.scale

    def log_prob(self, value: Tensor) -> Tensor:
        """``(*B, D) -> (*B,)``; -inf where any entry is <= 0 or not finite."""
        inside = (value > 0).all(-1) & torch.isfinite(value).all(-1)
        safe = torch.where(inside.unsqueeze(-1), value, torch.ones_like(value))
        lp = super().log_prob(safe)
        return torch.where(inside, lp, torch.full_like(lp, float("-inf")))
