r"""sbibm's slcp task: a simple likelihood (four Gaussian points) with a complex posterior.

θ ~ U(-3, 3)⁵, m = (θ₁, θ₂), s₁ = θ₃², s₂ = θ₄², ρ = tanh θ₅,
S = [[s₁², ρ s₁ s₂], [ρ s₁ s₂, s₂²]] + ε·I with ε = 1e-6 (sbibm's jitter), x = 4 iid draws of
N(m, S), flattened to (8,) as [x¹₁, x¹₂, x²₁, ..., x⁴₂] (sbibm's ``reshape(-1, 4, 2)`` order).

Reference posterior. sbibm uses SIR + a flow proposal + rejection with an estimated bound; here a
rejection sampler with an analytic proposal (:func:`simulators.sbibm.slcp_reference.slcp_reference`).
With x̄ the mean and W = Σ (xᵢ - x̄)(xᵢ - x̄)ᵀ, ∏ N(xᵢ; m, S) = c·|S|^{-3/2} e^{-tr(S⁻¹W)/2} · N(m; x̄, S/4),
so θ₁, θ₂ given the rest are N(x̄, S/4) truncated to the box (drawn exactly, rejected outside), and
φ = (θ₃, θ₄, θ₅) has the target L(φ) = |S|^{-3/2} e^{-tr(S⁻¹W)/2} on the box (times the box probability
of m, which the m-rejection supplies). The main proposal is S ~ inverse-Wishart IW(W, ν = 5/2) mapped
to φ (random signs; 4-to-1, Jacobian |∂S/∂φ| = 16|θ₃θ₄|⁵ sech²θ₅): the uniform prior pushed to S has
density ∝ |S₀|^{-5/4}(1 - ρ²)^{1/4} (S₀ = S - εI), so L/q ∝ (|S|/|S₀|)^{5/4}(1 - ρ²)^{1/4}, about 1.
It vanishes at θ₃, θ₄ -> 0 where L (because of ε) does not, so defensive components with θ₃ or θ₄
uniform on |θ| < (100 ε)^{1/4} and a 2 % uniform component are mixed in; q is evaluated exactly.
Exact except for the bound M ≥ sup L/q: like sbibm, M is 1.2 × the largest ratio seen in a
200,000-draw pilot; if a later draw exceeds it, M is raised and sampling restarts, so all returned
samples are accepted under the final M (``SLCP.last_reference_info`` counts the raises).
"""

from __future__ import annotations

import torch
from torch import Tensor

from physgen.priors import BoxUniform
from simulators.sbibm._task import LOG_2PI, Task, randn, resolve_device
from simulators.sbibm.slcp_reference import slcp_reference

__all__ = ["SLCP"]


class SLCP(Task):
    """sbibm's simple likelihood, complex posterior (module docstring). θ ``(5,)``, x ``(8,)``.

    Args:
        device: device of the prior's tensors (``"auto"`` picks cuda if available).
    """

    name = "slcp"
    EPS = 1e-6  # sbibm adds 1e-6 to the covariance diagonal "to ensure PSD"
    N_POINTS = 4

    def __init__(self, device=None):
        dev = resolve_device(device)
        self.dim, self.x_shape = 5, (2 * self.N_POINTS,)
        self.config: dict = {}
        self.prior = BoxUniform(-3.0 * torch.ones(5), 3.0 * torch.ones(5), device=dev)
        self.last_reference_info: dict = {}

    def _cov(self, theta: Tensor):
        """S = [[a, c], [c, b]] and det S, each ``(*B,)``, computed without cancellation."""
        s1, s2 = theta[..., 2] ** 2, theta[..., 3] ** 2
        rho = torch.tanh(theta[..., 4])
        sech2 = 1.0 / torch.cosh(theta[..., 4]) ** 2  # 1 - rho², exactly
        a, b, c = s1**2 + self.EPS, s2**2 + self.EPS, rho * s1 * s2
        det = s1**2 * s2**2 * sech2 + self.EPS * (s1**2 + s2**2) + self.EPS**2
        return a, b, c, det

    def simulate(self, theta: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """theta ``(*B, 5)`` -> x ``(*B, 8)`` (four 2-d points, flattened point by point)."""
        self._check(theta)
        a, b, c, det = self._cov(theta)
        l11 = torch.sqrt(a)
        l21, l22 = c / l11, torch.sqrt(det / a)  # Cholesky of [[a, c], [c, b]]
        e = randn((*theta.shape[:-1], self.N_POINTS, 2), theta, generator)
        x1 = theta[..., 0:1] + l11.unsqueeze(-1) * e[..., 0]
        x2 = theta[..., 1:2] + l21.unsqueeze(-1) * e[..., 0] + l22.unsqueeze(-1) * e[..., 1]
        return torch.stack([x1, x2], dim=-1).flatten(-2)

    def log_likelihood(self, theta: Tensor, x: Tensor) -> Tensor:
        """Σᵢ log N(xᵢ; m, S): θ ``(*B, 5)``, x ``(*B, 8)`` (broadcast) -> ``(*B,)``."""
        self._check(theta, x)
        a, b, c, det = self._cov(theta)
        pts = x.unflatten(-1, (self.N_POINTS, 2))
        d1 = pts[..., 0] - theta[..., 0:1]
        d2 = pts[..., 1] - theta[..., 1:2]
        quad = (b.unsqueeze(-1) * d1**2 - 2 * c.unsqueeze(-1) * d1 * d2 + a.unsqueeze(-1) * d2**2).sum(-1) / det
        return -0.5 * quad - 0.5 * self.N_POINTS * torch.log(det) - self.N_POINTS * LOG_2PI

    def reference_posterior(self, x_obs: Tensor, n: int, *, seed: int = 0) -> Tensor:
        """Samples ``(n, 5)`` by the inverse-Wishart rejection scheme of the module docstring.

        Runs in float64 numpy (``np.random.default_rng(seed)``) on the CPU and returns on x_obs's
        device; its cost grows when θ₃ or θ₄ is near 0 (docs/sbibm_tasks.md). Afterwards
        ``self.last_reference_info`` holds the acceptance rate, the log bound M and how often M had
        to be raised after the pilot.

        Raises:
            ValueError: the four observed points are (nearly) collinear.
        """
        x_obs = self._check_obs(x_obs, n)
        pts = x_obs.detach().to("cpu", torch.float64).numpy().reshape(self.N_POINTS, 2)
        theta, info = slcp_reference(pts, int(n), seed, self.EPS)
        self.last_reference_info = info
        return torch.from_numpy(theta).to(device=x_obs.device, dtype=x_obs.dtype)
