r"""Training times of flow matching: where on the path t ∈ [0, 1] (noise at 0, data at 1) the loss is taken.

The minimiser of the flow-matching loss at each t does not depend on how t is drawn; the distribution only
decides where the network's capacity and the gradient noise go. Shared by
:class:`physgen.models.flow_matching.FlowMatching` and
:class:`physgen.emulators.point_cloud.PointCloudFlow`, so both read ``time_sampling`` the same way:

* ``"uniform"``: t ~ U(0, 1).
* ``"logit_normal"``: logit t ~ N(0, 1) (more weight mid-path).
* ``"late"``: 1 - t = (1 - u)², u ~ U(0, 1): density 1 / (2 √(1 - t)), more weight near the data.
* ``"lognormal"``: σ = (1 - t) / t with ln σ ~ N(-1.2, 1.2²), EDM's training noise levels in the OT
  path's time.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["TIME_SAMPLING", "check_time_sampling", "training_times"]

TIME_SAMPLING = ("uniform", "logit_normal", "late", "lognormal")


def check_time_sampling(kind: str) -> None:
    """Raise a ValueError naming the choices when ``kind`` is not one of :data:`TIME_SAMPLING`."""
    if kind not in TIME_SAMPLING:
        raise ValueError(f"time_sampling must be one of {TIME_SAMPLING}; got {kind!r}")


def training_times(
    kind: str, n: int, *, generator: torch.Generator | None, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """n training times ``(n,)`` in [0, 1] drawn as ``kind`` says (module docstring), from ``generator``."""
    if kind == "uniform":
        return torch.rand(n, generator=generator, device=device, dtype=dtype)
    if kind == "lognormal":
        return torch.sigmoid(1.2 - 1.2 * torch.randn(n, generator=generator, device=device, dtype=dtype))
    if kind == "late":
        return 1.0 - (1.0 - torch.rand(n, generator=generator, device=device, dtype=dtype)).pow(2)
    if kind == "logit_normal":
        return torch.sigmoid(torch.randn(n, generator=generator, device=device, dtype=dtype))
    check_time_sampling(kind)
    raise AssertionError("unreachable")
