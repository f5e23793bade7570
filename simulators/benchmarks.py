"""The sbibm benchmark tasks (Lueckmann et al. 2021): gaussian_linear, two_moons, slcp, gaussian_mixture.

Definitions follow ``sbibm/tasks/*/task.py`` exactly (priors, simulators, noise):

* **GaussianLinear** (D = 10): θ ~ N(0, 0.1·I), x | θ ~ N(θ, 0.1·I). (sbibm's ``prior_scale`` and
  ``simulator_scale`` are *variances*: it sets ``precision_matrix = inverse(0.1·I)``.)
  Posterior (closed form, conjugate): N(x·v_p/(v_p + v_n), (1/v_p + 1/v_n)⁻¹·I) = N(x/2, 0.05·I).
* **TwoMoons**: θ ~ U(-1, 1)², a ~ U(-π/2, π/2), r ~ N(0.1, 0.01²),
  p = (r cos a + 0.25, r sin a), z = ((θ₁ + θ₂)/√2, (-θ₁ + θ₂)/√2), x = p + (-|z₁|, z₂).
  Exact density of p = (0.25 + u, v), ρ = √(u² + v²): N(sign(u)·ρ; 0.1, 0.01²) / (π ρ)
  (polar change of variables; the u < 0 half is the r < 0 tail, ~e^{-50}). Note: sbibm's
  ``_likelihood`` omits the Jacobian 1/(πρ) and sets u < 0 to -inf; ``log_likelihood`` here is the
  density of what ``simulate`` draws. z ↦ θ is a rotation and z ↦ (-|z₁|, z₂) is 2-to-1 and
  measure-preserving, so the reference sampler (sbibm's analytic inverse) is exact: draw p, set
  |z₁| = p₁ - x₁ (rejected if negative: no θ can produce it; sbibm keeps such draws), z₂ = x₂ - p₂,
  a fair random sign for z₁, rotate back, reject θ outside the prior box.
* **SLCP**: θ ~ U(-3, 3)⁵, m = (θ₁, θ₂), s₁ = θ₃², s₂ = θ₄², ρ = tanh θ₅,
  S = [[s₁², ρ s₁ s₂], [ρ s₁ s₂, s₂²]] + 1e-6·I (sbibm's ε), x = 4 iid draws of N(m, S), flattened
  to (8,) as [x¹₁, x¹₂, x²₁, ..., x⁴₂] (sbibm's ``reshape(-1, 4, 2)`` order).
  Reference: sbibm uses SIR + a flow proposal + rejection with an estimated bound. Here a
  rejection sampler with an analytic proposal. With x̄ the mean and W = Σ (xᵢ - x̄)(xᵢ - x̄)ᵀ,
  ∏ N(xᵢ; m, S) = c·|S|^{-3/2} e^{-tr(S⁻¹W)/2} · N(m; x̄, S/4), so θ₁, θ₂ given the rest are
  N(x̄, S/4) truncated to the box (drawn exactly, rejected outside), and φ = (θ₃, θ₄, θ₅) has the
  target L(φ) = |S|^{-3/2} e^{-tr(S⁻¹W)/2} on the box (times the box probability of m, which the
  m-rejection supplies). The main proposal is S ~ inverse-Wishart IW(W, ν = 5/2) mapped to φ
  (random signs; 4-to-1, Jacobian |∂S/∂φ| = 16|θ₃θ₄|⁵ sech²θ₅): the uniform prior pushed to S has
  density ∝ |S₀|^{-5/4}(1 - ρ²)^{1/4} (S₀ = S - εI), so L/q ∝ (|S|/|S₀|)^{5/4}(1 - ρ²)^{1/4}, about 1.
  It vanishes at θ₃, θ₄ -> 0 where L (because of ε) does not, so defensive components with θ₃ or θ₄
  uniform on |θ| < (100 ε)^{1/4} and a 2 % uniform component are mixed in; q is evaluated exactly.
  Exact except for the bound M ≥ sup L/q: like sbibm, M is 1.2 × the largest ratio seen in a
  200,000-draw pilot; if a later draw exceeds it, M is raised and sampling restarts, so all returned
  samples are accepted under the final M (``self.last_reference_info`` counts the raises). Checked in
  tests/test_sbibm_tasks.py against importance sampling with weights from ``log_likelihood``.
* **GaussianMixture**: θ ~ U(-10, 10)², x | θ ~ ½ N(θ, I) + ½ N(θ, 0.01·I). The mixture component is
  drawn per simulation (sbibm drew one component per *batch*, a bug fixed in sbibm PR #54).
  Reference (exact, as sbibm): ½ N(x, I) + ½ N(x, 0.01·I) truncated to the box by rejection.

All tasks follow the ``physgen.core.Simulator`` protocol; θ outside the prior box has prior
log-probability -inf. ``reference_posterior`` takes ``x_obs: (F,)`` and returns ``(n, D)`` on
``x_obs``'s device; the same seed gives the same samples.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from physgen.core import Simulator, batch_shape_of
from physgen.priors import BoxUniform, MultivariateNormal
from simulators.slcp_reference import _slcp_reference

__all__ = ["GaussianLinear", "TwoMoons", "SLCP", "GaussianMixture", "TASKS", "get_task"]

_LOG_2PI = math.log(2.0 * math.pi)


def _device(device: str | torch.device | None) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device("cpu") if device is None else torch.device(device)


def _randn(shape, like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)


def _rand(shape, like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)


class _Task:
    """Shared checks, the unnormalised log posterior and the rejection loop."""

    prior: torch.distributions.Distribution
    x_shape: tuple[int, ...]
    name: str
    dim: int

    def _check(self, theta: Tensor, x: Tensor | None = None) -> None:
        batch_shape_of(theta, (self.dim,), "theta")
        if x is not None:
            batch_shape_of(x, self.x_shape, "x")

    def _check_obs(self, x_obs: Tensor, n: int) -> Tensor:
        x_obs = torch.as_tensor(x_obs)
        if tuple(x_obs.shape) != self.x_shape:
            raise ValueError(f"{self.name}: x_obs must have shape {self.x_shape} (one observation); got {tuple(x_obs.shape)}")
        if not bool(torch.isfinite(x_obs).all()):
            raise ValueError(f"{self.name}: x_obs has NaN or inf entries: {x_obs.tolist()}")
        if int(n) < 1:
            raise ValueError(f"{self.name}: n must be a positive number of samples; got {n}")
        return x_obs if x_obs.is_floating_point() else x_obs.to(torch.get_default_dtype())

    def log_joint(self, theta: Tensor, x: Tensor) -> Tensor:
        """log p(θ) + log p(x | θ), -inf outside the prior: θ ``(*B, D)``, x ``(*B, F)`` -> ``(*B,)``."""
        lp = self.prior.log_prob(theta)
        ll = self.log_likelihood(theta, x)
        lp, ll = torch.broadcast_tensors(lp, ll)
        return torch.where(torch.isfinite(lp), lp + ll, lp)

    def _rejection(self, propose, n: int, max_proposals: int) -> Tensor:
        """Collect ``n`` accepted rows from ``propose(k) -> (samples (k, D), accept (k,))``."""
        out, have, tried, k = [], 0, 0, max(1024, 2 * n)
        while have < n:
            if tried >= max_proposals:
                raise RuntimeError(
                    f"{self.name}: reference sampler accepted {have} of {tried} proposals; x_obs is (almost) "
                    f"impossible under the prior. Check that x_obs was simulated from this task."
                )
            s, ok = propose(k)
            tried += k
            out.append(s[ok])
            have += int(ok.sum())
            rate = max(have / tried, 1e-4)
            k = int(min(max(1024, 1.2 * (n - have) / rate), 2_000_000))
        return torch.cat(out)[:n]


class GaussianLinear(_Task):
    """θ ~ N(0, prior_variance·I_D), x | θ ~ N(θ, noise_variance·I_D); sbibm: D = 10, both 0.1.

    Args:
        dim: D (parameters and data).
        prior_variance, noise_variance: variances (sbibm's ``prior_scale``/``simulator_scale``).
        device: device of the prior's tensors (``"auto"`` picks cuda if available).
    """

    name = "gaussian_linear"

    def __init__(self, dim: int = 10, prior_variance: float = 0.1, noise_variance: float = 0.1, device=None):
        dev = _device(device)
        self.dim, self.prior_variance, self.noise_variance = int(dim), float(prior_variance), float(noise_variance)
        self.x_shape = (self.dim,)
        self.config = {"dim": self.dim, "prior_variance": self.prior_variance, "noise_variance": self.noise_variance}
        self.prior = MultivariateNormal(
            torch.zeros(self.dim, device=dev), covariance_matrix=self.prior_variance * torch.eye(self.dim, device=dev)
        )

    def simulate(self, theta: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """theta ``(*B, D)`` -> x ``(*B, D)``."""
        self._check(theta)
        return theta + math.sqrt(self.noise_variance) * _randn(theta.shape, theta, generator)

    def log_likelihood(self, theta: Tensor, x: Tensor) -> Tensor:
        """log N(x; θ, v_n·I): θ ``(*B, D)``, x ``(*B, D)`` (broadcast) -> ``(*B,)``."""
        self._check(theta, x)
        v = self.noise_variance
        return -0.5 * ((x - theta) ** 2).sum(-1) / v - 0.5 * self.dim * (_LOG_2PI + math.log(v))

    def posterior(self, x_obs: Tensor) -> MultivariateNormal:
        """The closed-form posterior p(θ | x_obs), x_obs ``(D,)``."""
        x_obs = self._check_obs(x_obs, 1)
        vp, vn = self.prior_variance, self.noise_variance
        var = 1.0 / (1.0 / vp + 1.0 / vn)
        eye = torch.eye(self.dim, dtype=x_obs.dtype, device=x_obs.device)
        return MultivariateNormal(x_obs * (vp / (vp + vn)), covariance_matrix=var * eye)

    def reference_posterior(self, x_obs: Tensor, n: int, *, seed: int = 0) -> Tensor:
        """Exact samples ``(n, D)`` from the closed-form posterior."""
        post = self.posterior(x_obs)
        g = torch.Generator(device=post.loc.device).manual_seed(seed)
        eps = torch.randn((int(n), self.dim), generator=g, device=post.loc.device, dtype=post.loc.dtype)
        return post.loc + eps @ post.scale_tril.T


class TwoMoons(_Task):
    """sbibm's two moons (see the module docstring). θ ``(2,)`` in U(-1, 1)², x ``(2,)``."""

    name = "two_moons"
    _A_LOW, _A_HIGH, _OFFSET, _R_LOC, _R_SCALE = -math.pi / 2, math.pi / 2, 0.25, 0.1, 0.01

    def __init__(self, device=None):
        dev = _device(device)
        self.dim, self.x_shape = 2, (2,)
        self.config: dict = {}
        self.prior = BoxUniform(-torch.ones(2), torch.ones(2), device=dev)

    @staticmethod
    def _shift(theta: Tensor) -> Tensor:
        z1 = (theta[..., 0] + theta[..., 1]) / math.sqrt(2.0)
        z2 = (-theta[..., 0] + theta[..., 1]) / math.sqrt(2.0)
        return torch.stack([-z1.abs(), z2], dim=-1)

    def _noise(self, shape, like: Tensor, generator) -> Tensor:
        a = self._A_LOW + (self._A_HIGH - self._A_LOW) * _rand(shape, like, generator)
        r = self._R_LOC + self._R_SCALE * _randn(shape, like, generator)
        return torch.stack([r * torch.cos(a) + self._OFFSET, r * torch.sin(a)], dim=-1)

    def simulate(self, theta: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """theta ``(*B, 2)`` -> x ``(*B, 2)``."""
        self._check(theta)
        return self._noise(theta.shape[:-1], theta, generator) + self._shift(theta)

    def log_likelihood(self, theta: Tensor, x: Tensor) -> Tensor:
        """Exact log density of x | θ (with the polar Jacobian): ``(*B, 2)``, ``(*B, 2)`` -> ``(*B,)``."""
        self._check(theta, x)
        p = x - self._shift(theta)
        u, v = p[..., 0] - self._OFFSET, p[..., 1]
        rho = torch.sqrt(u * u + v * v).clamp_min(torch.finfo(p.dtype).tiny)
        r = torch.where(u < 0, -rho, rho)
        log_n = -0.5 * ((r - self._R_LOC) / self._R_SCALE) ** 2 - 0.5 * _LOG_2PI - math.log(self._R_SCALE)
        return log_n - torch.log(math.pi * rho)

    def reference_posterior(self, x_obs: Tensor, n: int, *, seed: int = 0) -> Tensor:
        """Exact samples ``(n, 2)`` by sbibm's analytic inverse with rejection (module docstring)."""
        x_obs = self._check_obs(x_obs, n)
        g = torch.Generator(device=x_obs.device).manual_seed(seed)
        c = 1.0 / math.sqrt(2.0)

        def propose(k: int):
            p = self._noise((k,), x_obs, g)
            q1 = p[:, 0] - x_obs[0]
            sign = torch.where(_rand((k,), x_obs, g) < 0.5, -1.0, 1.0).to(x_obs.dtype)
            z1, z2 = sign * q1, x_obs[1] - p[:, 1]
            theta = torch.stack([c * (z1 - z2), c * (z1 + z2)], dim=-1)
            ok = (q1 >= 0) & torch.isfinite(self.prior.log_prob(theta))
            return theta, ok

        return self._rejection(propose, int(n), max_proposals=200_000_000)


class GaussianMixture(_Task):
    """x | θ ~ ½ N(θ, I) + ½ N(θ, 0.01·I), θ ~ U(-10, 10)² (sbibm); θ ``(2,)``, x ``(2,)``."""

    name = "gaussian_mixture"
    _WEIGHTS, _SCALES = (0.5, 0.5), (1.0, 0.1)

    def __init__(self, device=None):
        dev = _device(device)
        self.dim, self.x_shape = 2, (2,)
        self.config: dict = {}
        self.prior = BoxUniform(-10.0 * torch.ones(2), 10.0 * torch.ones(2), device=dev)

    def _draw(self, loc: Tensor, generator) -> Tensor:
        wide = _rand(loc.shape[:-1], loc, generator) < self._WEIGHTS[0]
        scale = torch.where(wide, self._SCALES[0], self._SCALES[1]).to(loc.dtype).unsqueeze(-1)
        return loc + scale * _randn(loc.shape, loc, generator)

    def simulate(self, theta: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """theta ``(*B, 2)`` -> x ``(*B, 2)``; the mixture component is drawn per row."""
        self._check(theta)
        return self._draw(theta, generator)

    def log_likelihood(self, theta: Tensor, x: Tensor) -> Tensor:
        """log [½ N(x; θ, I) + ½ N(x; θ, 0.01 I)]: ``(*B, 2)``, ``(*B, 2)`` -> ``(*B,)``."""
        self._check(theta, x)
        d2 = ((x - theta) ** 2).sum(-1)
        terms = [
            math.log(w) - 0.5 * d2 / s**2 - 2 * math.log(s) - _LOG_2PI for w, s in zip(self._WEIGHTS, self._SCALES)
        ]
        return torch.logsumexp(torch.stack(terms, dim=-1), dim=-1)

    def reference_posterior(self, x_obs: Tensor, n: int, *, seed: int = 0) -> Tensor:
        """Exact samples ``(n, 2)``: the mixture around x_obs, rejected outside the prior box."""
        x_obs = self._check_obs(x_obs, n)
        g = torch.Generator(device=x_obs.device).manual_seed(seed)

        def propose(k: int):
            theta = self._draw(x_obs.expand(k, 2), g)
            return theta, torch.isfinite(self.prior.log_prob(theta))

        return self._rejection(propose, int(n), max_proposals=200_000_000)


class SLCP(_Task):
    """sbibm's simple likelihood, complex posterior (module docstring). θ ``(5,)``, x ``(8,)``."""

    name = "slcp"
    EPS = 1e-6  # sbibm adds 1e-6 to the covariance diagonal "to ensure PSD"
    N_POINTS = 4

    def __init__(self, device=None):
        dev = _device(device)
        self.dim, self.x_shape = 5, (2 * self.N_POINTS,)
        self.config: dict = {}
        self.prior = BoxUniform(-3.0 * torch.ones(5), 3.0 * torch.ones(5), device=dev)
        self.last_reference_info: dict = {}

    def _cov(self, theta: Tensor):
        """(S11, S12, S22, 1/det... pieces) computed without cancellation."""
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
        e = _randn((*theta.shape[:-1], self.N_POINTS, 2), theta, generator)
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
        return -0.5 * quad - 0.5 * self.N_POINTS * torch.log(det) - self.N_POINTS * _LOG_2PI

    def reference_posterior(self, x_obs: Tensor, n: int, *, seed: int = 0) -> Tensor:
        """Samples ``(n, 5)`` by the inverse-Wishart rejection scheme of the module docstring.

        Runs in float64 numpy (``np.random.default_rng(seed)``); 10,000 samples take about 1-5 s
        on one CPU core, up to ~20 s when θ₃ or θ₄ is near 0 (docs/sbibm_tasks.md). Afterwards ``self.last_reference_info`` holds the
        acceptance rate, the bound M and how often M had to be raised after the pilot.
        """
        x_obs = self._check_obs(x_obs, n)
        pts = x_obs.detach().to("cpu", torch.float64).numpy().reshape(self.N_POINTS, 2)
        theta, info = _slcp_reference(pts, int(n), seed, self.EPS)
        self.last_reference_info = info
        return torch.from_numpy(theta).to(device=x_obs.device, dtype=x_obs.dtype)


TASKS: dict[str, type] = {
    "gaussian_linear": GaussianLinear,
    "two_moons": TwoMoons,
    "slcp": SLCP,
    "gaussian_mixture": GaussianMixture,
}


def get_task(name: str, **kwargs) -> Simulator:
    """Build a benchmark task by name (``TASKS`` keys); kwargs go to its constructor."""
    if name not in TASKS:
        raise ValueError(f"unknown sbibm task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name](**kwargs)
