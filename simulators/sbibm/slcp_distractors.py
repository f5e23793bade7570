r"""sbibm's slcp_distractors task: SLCP's 8 data values hidden among 92 distractors, shuffled.

θ ~ U(-3, 3)⁵ and the 8 values d = (x¹₁, x¹₂, ..., x⁴₂) as in :mod:`simulators.sbibm.slcp`. The 92 distractors
e ~ q, a uniform mixture of 20 multivariate Student-t components (ν = 2, d = 92), independent of θ. Then
x = (d, e)[π] ``(100,)`` for a fixed permutation π. sbibm draws q's parameters and π once
(``SLCP._generate_noise_dist_parameters``) and ships them as files; they are regenerated here from the
same recipe (``numpy.random.seed(42)``: locations 15·N(0, 1)^92 per component, scale factors
3·(tril(N(0, 1)^{92×92}) + diag(exp N(0, 1)^92)), then ``permutation(100)``); the test checks π against
sbibm's ``permutation_idx.torch``, which comes last in the same random stream.

Likelihood: log p(x | θ) = log p_slcp(d | θ) + log q(e), exact (q's density is known, Student-t mixture).
The scale factors have diagonal entries of either sign (normal + exp(normal)); the density depends on
L Lᵀ only, so log |det L| is used (pyro's ``log_prob`` takes log diag L, NaN for those components: sbibm never
evaluates it). The factors are very ill-conditioned (condition numbers 10¹²-10¹⁹), so log q is accurate only
as far as the triangular solves are; it does not depend on θ, so the posterior is not affected.
q does not depend on θ, so the posterior equals SLCP's given d: ``reference_posterior`` runs SLCP's exact
sampler on the 8 data values, as sbibm uses SLCP's reference samples for this task.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from simulators.sbibm._task import Task, rand, randn
from simulators.sbibm.slcp import SLCP

__all__ = ["SLCPDistractors", "student_t_mixture_log_prob"]

_NOISE_DIM, _COMPONENTS, _DF, _SEED = 92, 20, 2.0, 42


def _noise_parameters() -> tuple[Tensor, Tensor, Tensor]:
    """sbibm's recipe: locations ``(20, 92)``, scale_tril ``(20, 92, 92)`` (float64), permutation ``(100,)``."""
    rng = np.random.RandomState(_SEED)
    loc = np.array([15 * rng.normal(size=_NOISE_DIM) for _ in range(_COMPONENTS)])
    tril = [
        np.tril(rng.normal(size=(_NOISE_DIM, _NOISE_DIM))) + np.diag(np.exp(rng.normal(size=_NOISE_DIM)))
        for _ in range(_COMPONENTS)
    ]
    perm = rng.permutation(_NOISE_DIM + 8)
    return torch.from_numpy(loc), torch.from_numpy(3 * np.array(tril)), torch.from_numpy(perm)


def student_t_mixture_log_prob(e: Tensor, loc: Tensor, tril: Tensor, df: float) -> Tensor:
    """log of an equal-weight mixture of multivariate Student-t densities t_ν(loc_c, L_c L_cᵀ).

    Args:
        e: ``(*B, d)`` points.
        loc: ``(C, d)`` locations; tril: ``(C, d, d)`` lower-triangular scale factors (any diagonal signs).
        df: ν.

    Returns:
        ``(*B,)`` in e's dtype and device (computed in float64 on the CPU).
    """
    e64, loc, tril = e.to("cpu", torch.float64), loc.to(torch.float64), tril.to(torch.float64)
    C, d = loc.shape
    diff = (e64.unsqueeze(-2) - loc).unsqueeze(-1)  # (*B, C, d, 1)
    sol = torch.linalg.solve_triangular(tril.expand(*diff.shape[:-1], d), diff, upper=False)
    maha = (sol.squeeze(-1) ** 2).sum(-1)  # (*B, C)
    log_det = torch.log(torch.diagonal(tril, dim1=-2, dim2=-1).abs()).sum(-1)  # log |det L_c|
    norm = math.lgamma((df + d) / 2) - math.lgamma(df / 2) - 0.5 * d * math.log(df * math.pi)
    comp = norm - log_det - 0.5 * (df + d) * torch.log1p(maha / df)
    return (torch.logsumexp(comp, dim=-1) - math.log(C)).to(e.device, e.dtype)


class SLCPDistractors(Task):
    """sbibm's SLCP with 92 distractors (module docstring). θ ``(5,)``, x ``(100,)``.

    Attributes:
        permutation: π ``(100,)``: x[i] = (d, e)[π[i]].
        data_index: ``(8,)`` positions in x of the 8 SLCP values, in SLCP's order.

    Args:
        device: device of the prior's tensors (``"auto"`` picks cuda if available).
    """

    name = "slcp_distractors"
    definition_version = "sbibm-1.1.0/1"

    def __init__(self, device=None):
        self.slcp = SLCP(device=device)
        self.prior = self.slcp.prior
        self.dim, self.x_shape = 5, (100,)
        self.config: dict = {}
        self._loc, self._tril, self.permutation = _noise_parameters()
        self.data_index = torch.argsort(self.permutation)[:8]
        self.noise_index = torch.argsort(self.permutation)[8:]

    @property
    def last_reference_info(self) -> dict:
        """SLCP's sampler report of the last ``reference_posterior`` call."""
        return self.slcp.last_reference_info

    def data_part(self, x: Tensor) -> Tensor:
        """The 8 SLCP values of x: ``(*B, 100) -> (*B, 8)``."""
        return x[..., self.data_index.to(x.device)]

    def sample_distractors(self, shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
        """``(*shape, 92)`` draws of q: a component uniformly, then loc + L z / sqrt(χ²_ν / ν) (pyro's recipe)."""
        n = math.prod(shape)
        comp = (rand((n,), like, generator) * _COMPONENTS).long().clamp_max(_COMPONENTS - 1).cpu()
        z = randn((n, _NOISE_DIM), like, generator).to("cpu", torch.float64)
        u = rand((n,), like, generator).to("cpu", torch.float64)
        chi2 = -2.0 * torch.log(u.clamp_min(1e-300))  # χ² with ν = 2 is 2·Exp(1); u < 1, so chi2 > 0
        e = self._loc[comp] + (self._tril[comp] @ z.unsqueeze(-1)).squeeze(-1) / torch.sqrt(chi2 / _DF).unsqueeze(-1)
        return e.reshape(*shape, _NOISE_DIM).to(like.device, like.dtype)

    def distractor_log_prob(self, e: Tensor) -> Tensor:
        """log q(e): ``(*B, 92) -> (*B,)`` (computed in float64 on the CPU)."""
        return student_t_mixture_log_prob(e, self._loc, self._tril, _DF)

    def simulate(self, theta: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """theta ``(*B, 5)`` -> x ``(*B, 100)``."""
        self._check(theta)
        d = self.slcp.simulate(theta, generator=generator)
        e = self.sample_distractors(tuple(theta.shape[:-1]), theta, generator)
        return torch.cat([d, e], dim=-1)[..., self.permutation.to(theta.device)]

    def log_likelihood(self, theta: Tensor, x: Tensor) -> Tensor:
        """log p_slcp(d | θ) + log q(e): θ ``(*B, 5)``, x ``(*B, 100)`` (broadcast) -> ``(*B,)``."""
        self._check(theta, x)
        ll = self.slcp.log_likelihood(theta, self.data_part(x))
        return ll + self.distractor_log_prob(x[..., self.noise_index.to(x.device)])

    def reference_posterior(self, x_obs: Tensor, n: int, *, seed: int = 0) -> Tensor:
        """Exact samples ``(n, 5)``: SLCP's reference at the 8 data values of x_obs ``(100,)``."""
        x_obs = self._check_obs(x_obs, n)
        return self.slcp.reference_posterior(self.data_part(x_obs), n, seed=seed)
