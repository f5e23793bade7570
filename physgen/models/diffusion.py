r"""Score-based diffusion with EDM preconditioning (Karras et al. 2022), conditional on a context.

Variance-exploding noising x_σ = x + σ ε (σ ∈ [σ_min, σ_max], ε ~ N(0, I)). The denoiser is
preconditioned so that the network F_φ sees unit-scale inputs and targets (σ_d: data scale, 1 for
standardised targets):

    D_φ(x; σ, c) = c_skip(σ) x + c_out(σ) F_φ(c_in(σ) x, c_noise(σ), c),
    c_skip = σ_d² / (σ² + σ_d²),  c_out = σ σ_d / √(σ² + σ_d²),  c_in = 1 / √(σ² + σ_d²),  c_noise = ln(σ) / 4.

Denoising score matching with ln σ ~ N(P_mean, P_std²) and EDM's weight λ(σ) = 1 / c_out², i.e.

    L(φ) = E ‖F_φ(c_in x_σ, c_noise, c) - (x - c_skip x_σ) / c_out‖² / D.

The score is ∇ log p_σ(x | c) = (D_φ(x; σ, c) - x) / σ².

Terminal distribution: at σ_max the noised target is close to N(m(c), (σ_max² + σ_d²) I), with m(c) the
target's conditional mean. The model estimates it as m̂(c) = D_φ(0; σ_max, c) (the denoiser's answer at
σ_max is the mean, up to O(σ_d²/σ_max²)); sampling starts from, and log_prob ends at, this Gaussian.
(With N(0, ·) instead, log q would be off by about |m| / σ_max for a posterior centred at m ≠ 0.)
With ``gaussian_base`` (default for targets of at most 64 elements) the denoiser's analytic part is the exact denoiser of a linear-Gaussian
fit N(W c + b, S) of the training set (:mod:`physgen.models._gaussian`, set before the first epoch) instead
of c_skip x, the network learns the rest, and the terminal covariance is S + σ_max² I. The unfitted baseline
N(0, I) reproduces EDM's c_skip x and (σ_max² + σ_d²) I for σ_d = 1.

Samplers (from x ~ N(m̂(c), (σ_max² + σ_d²) I) at σ_max down to σ = 0):

* ``"dpm2m"`` (default): DPM-Solver++(2M) (Lu et al. 2022), an exponential integrator of the
  probability-flow ODE that is exact for its linear part, on a log-uniform σ grid; N network calls.
  On an exact Gaussian denoiser it is more accurate per network call than Heun (docs/flow_matching_diffusion.md);
* ``"heun"``, ``"euler"`` (the probability-flow ODE dx/dσ = (x - D_φ(x; σ)) / σ; Heun: 2N - 1 network calls)
  and ``"sde"`` (the reverse SDE, exact in variance), on EDM's ρ-schedule of σ: :mod:`physgen.models._edm_samplers`.

log_prob integrates the probability-flow ODE from σ_min to σ_max in u ∈ [0, 1] with σ(u) on the same
ρ-schedule, with the change of variables

    log q(x | c) = log N(x(σ_max); m̂(c), (σ_max² + σ_d²) I) + ∫₀¹ ∇·(dx/du) du,

the divergence exact (D backward passes) or Hutchinson's estimate. It is the density of the exact
probability-flow model, so it matches samples drawn with enough solver steps.
"""

from __future__ import annotations

import math
from typing import TypedDict

import torch
from torch import Tensor, nn

from physgen.models._edm_samplers import checked, edm_sigmas, sample_edm
from physgen.models._ode import (
    METHODS,
    broadcast_target_context,
    check_steps,
    check_trace,
    integrate_with_divergence,
    dpm_solver_2m,
    flat_context,
    log_sigmas,
    standard_normal_log_prob,
)
from physgen.models._gaussian import LinearGaussian
from physgen.models._network import (
    apply_network,
    as_network,
    network_spec,
    parameter_like,
    resolve_gaussian_base,
    resolve_network,
    resolve_trace,
)
from physgen.shapes import as_event_shape, flatten_event, unflatten_event

__all__ = ["Diffusion"]

_SAMPLERS = ("dpm2m", "heun", "euler", "sde")


class _DiffusionConfig(TypedDict):
    """``Diffusion.config``: the resolved constructor arguments (``network``: the network's spec, or None)."""

    event_shape: list[int]
    context_dim: int
    network: dict | None
    sigma_min: float
    sigma_max: float
    sigma_data: float
    rho: float
    p_mean: float
    p_std: float
    sampler: str
    steps: int
    sde_steps: int
    log_prob_solver: str
    log_prob_steps: int
    atol: float
    rtol: float
    trace: str
    gaussian_base: bool


class Diffusion(nn.Module):
    """Conditional EDM-preconditioned score-based diffusion, on any event shape.

    Args:
        event_shape: the target's shape: ``(D,)`` (or an int D), a field ``(C, H, W)``, ...
        context_dim: context dimension C (0 = unconditional).
        network: F_φ (:class:`physgen.core.Network`): a module, a saved spec ``{"name", "config"}``, or None
            for the default (a residual MLP for vectors, a U-Net for fields, built by
            :func:`physgen.models.build_model` with its network options).
        sigma_min, sigma_max: noise range.
        sigma_data: data scale σ_d (1 for standardised targets).
        rho: exponent of the sampling schedule.
        p_mean, p_std: log-normal distribution of training noise levels.
        sampler: default sampler: "dpm2m" (DPM-Solver++(2M) on the probability-flow ODE), "heun" or
            "euler" (probability-flow ODE on EDM's schedule), or "sde" (reverse SDE).
        steps: default number of steps N of the ODE samplers (network calls: N for dpm2m, 2N - 1 for heun).
        sde_steps: default number of steps of the SDE sampler.
        log_prob_solver, log_prob_steps, atol, rtol: the ODE solve of :meth:`log_prob`.
        trace: "exact", "hutchinson" or "auto" (exact up to 32 target elements).
        gaussian_base: the denoiser's analytic part is a linear-Gaussian fit (module docstring); "auto" = on for
            targets of at most 64 elements (it holds a D x D eigenbasis).
    """

    # training defaults that fit_posterior / fit_emulator apply unless given (docs/flow_matching_diffusion.md)
    fit_defaults = {"ema": 0.999, "schedule": "cosine", "max_epochs": 200}
    default_transform = "unconstrained"
    sample_block = 2048

    def __init__(
        self,
        event_shape: int | tuple[int, ...],
        context_dim: int,
        *,
        network: nn.Module | dict | None = None,
        sigma_min: float = 0.002,
        sigma_max: float = 20.0,
        sigma_data: float = 1.0,
        rho: float = 7.0,
        p_mean: float = -1.2,
        p_std: float = 1.2,
        sampler: str = "dpm2m",
        steps: int = 16,
        sde_steps: int = 200,
        log_prob_solver: str = "dopri5",
        log_prob_steps: int = 10,
        atol: float = 1e-5,
        rtol: float = 1e-5,
        trace: str = "auto",
        gaussian_base: bool | str = "auto",
    ):
        super().__init__()
        event_shape = as_event_shape(event_shape)
        if context_dim < 0:
            raise ValueError(f"Diffusion needs context_dim >= 0; got {context_dim}")
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max; got {sigma_min}, {sigma_max}")
        if sigma_data <= 0 or rho <= 0 or p_std <= 0:
            raise ValueError(f"sigma_data, rho and p_std must be positive; got {sigma_data}, {rho}, {p_std}")
        if sampler not in _SAMPLERS:
            raise ValueError(f"sampler must be one of {_SAMPLERS}; got {sampler!r}")
        if log_prob_solver not in METHODS:
            raise ValueError(f"unknown ODE solver {log_prob_solver!r}; choose one of {METHODS}")
        self.name = "diffusion"
        self.event_shape, self.context_dim = event_shape, context_dim
        self.dim = math.prod(event_shape)
        trace = check_trace(resolve_trace(trace, self.dim))
        gaussian_base = resolve_gaussian_base(gaussian_base, self.dim)
        check_steps(steps)
        check_steps(sde_steps, "sde_steps")
        check_steps(log_prob_steps, "log_prob_steps")
        self.net = resolve_network(network, event_shape, context_dim, "diffusion", max_frequency=30.0)
        self.gaussian = LinearGaussian(self.dim, context_dim) if gaussian_base else None
        self.config: _DiffusionConfig = {
            "event_shape": list(event_shape),
            "context_dim": context_dim,
            "network": network_spec(self.net),
            "sigma_min": sigma_min,
            "sigma_max": sigma_max,
            "sigma_data": sigma_data,
            "rho": rho,
            "p_mean": p_mean,
            "p_std": p_std,
            "sampler": sampler,
            "steps": steps,
            "sde_steps": sde_steps,
            "log_prob_solver": log_prob_solver,
            "log_prob_steps": log_prob_steps,
            "atol": atol,
            "rtol": rtol,
            "trace": trace,
            "gaussian_base": gaussian_base,
        }

    # --- preconditioned denoiser -----------------------------------------------------------------

    def _precond(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        sd = self.config["sigma_data"]
        s2 = sigma.pow(2) + sd**2
        return sd**2 / s2, sigma * sd / s2.sqrt(), 1.0 / s2.sqrt(), sigma.log() / 4

    @torch.no_grad()
    def warm_start(self, target: Tensor, context: Tensor | None) -> None:
        """Fit the linear-Gaussian baseline (``gaussian_base``) to target ``(n, *event)``, context ``(n, C)``."""
        if self.gaussian is not None:
            self.gaussian.fit(flatten_event(target, self.event_shape, "target"), context)

    def _mean(self, c: Tensor | None, like: Tensor) -> Tensor | None:
        return self.gaussian.mean(c, like) if self.gaussian is not None else None

    def _skip(self, x: Tensor, sigma: Tensor, c_skip: Tensor, m: Tensor | None) -> Tensor:
        """The denoiser's analytic part: the baseline Gaussian's E[z | x_σ] (``gaussian_base``; m its mean)
        or EDM's c_skip x. Equal for the unfitted baseline N(0, I) with σ_d = 1."""
        if self.gaussian is not None:
            assert m is not None  # _mean gives the baseline's mean whenever there is a baseline
            return self.gaussian.denoise(x, sigma, m)
        return c_skip.unsqueeze(-1) * x

    def _denoise(self, x: Tensor, sigma: Tensor | float, emb: Tensor | None, m: Tensor | None) -> Tensor:
        """D_φ on the flat state x ``(*N, D)``; emb = the network's context embedding, m = baseline mean."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        if sigma.dim():
            sigma = sigma.expand(x.shape[:-1])
        c_skip, c_out, c_in, c_noise = self._precond(sigma)
        f = apply_network(self.net, c_in.unsqueeze(-1) * x, c_noise, emb, self.event_shape)
        return self._skip(x, sigma, c_skip, m) + c_out.unsqueeze(-1) * f

    def denoise(self, x: Tensor, sigma: Tensor | float, context: Tensor | None = None) -> Tensor:
        """D_φ(x; σ, c). x ``(*N, *event)``, σ scalar or ``(*N,)``, context ``(*N, C)`` (broadcast) -> ``(*N, *event)``."""
        flat = flatten_event(x, self.event_shape)
        emb = as_network(self.net).embed_context(context) if context is not None else None
        return unflatten_event(self._denoise(flat, sigma, emb, self._mean(context, flat)), self.event_shape)

    def score(self, x: Tensor, sigma: Tensor | float, context: Tensor | None = None) -> Tensor:
        """∇_x log p_σ(x | c) = (D_φ(x; σ, c) - x) / σ². x ``(*N, *event)`` -> ``(*N, *event)``."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        s2 = sigma.pow(2).reshape(*sigma.shape, *([1] * len(self.event_shape))) if sigma.dim() else sigma.pow(2)
        return (self.denoise(x, sigma, context) - x) / s2

    def loss(self, target: Tensor, context: Tensor | None, *, generator: torch.Generator | None = None) -> Tensor:
        """EDM denoising score-matching loss. target ``(B, *event)``, context ``(B, C)`` -> scalar."""
        target = flatten_event(target, self.event_shape, "target")
        batch, x, c = broadcast_target_context(target, context, self.dim, self.context_dim)
        if generator is None and not self.training:
            generator = torch.Generator(device=x.device).manual_seed(0)
        n = x.shape[0]
        sigma = torch.exp(
            self.config["p_mean"]
            + self.config["p_std"] * torch.randn(n, generator=generator, device=x.device, dtype=x.dtype)
        )
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        xn = x + sigma.unsqueeze(-1) * eps
        c_skip, c_out, c_in, c_noise = self._precond(sigma)
        emb = as_network(self.net).embed_context(c) if c is not None else None
        f = apply_network(self.net, c_in.unsqueeze(-1) * xn, c_noise, emb, self.event_shape)
        f_target = (x - self._skip(xn, sigma, c_skip, self._mean(c, x))) / c_out.unsqueeze(-1)
        return (f - f_target).pow(2).mean()

    # --- sampling --------------------------------------------------------------------------------

    def sigmas(
        self, steps: int, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Tensor:
        """EDM schedule σ_0 = σ_max > ... > σ_{N-1} = σ_min, σ_N = 0: ``(steps + 1,)``."""
        check_steps(steps)
        cfg = self.config
        return edm_sigmas(steps, cfg["sigma_min"], cfg["sigma_max"], cfg["rho"], device=device, dtype=dtype)

    def _terminal_mean(self, like: Tensor, emb: Tensor | None, mean: Tensor | None) -> Tensor:
        """m̂(c) = D_φ(0; σ_max, c): ``(N, D)`` for ``like (N, D)``."""
        return self._denoise(torch.zeros_like(like), self.config["sigma_max"], emb, mean)

    def _terminal_scale(self) -> float:
        return math.sqrt(self.config["sigma_max"] ** 2 + self.config["sigma_data"] ** 2)

    def _terminal_sample(self, eps: Tensor, mean: Tensor) -> Tensor:
        """Draw from the terminal Gaussian: N(m̂, S + σ_max² I) with the fitted baseline's covariance S
        (``gaussian_base``), else N(m̂, (σ_max² + σ_d²) I)."""
        if self.gaussian is not None:
            return self.gaussian.noised_sample(eps, mean, self.config["sigma_max"])
        return mean + self._terminal_scale() * eps

    def _terminal_log_prob(self, x: Tensor, mean: Tensor) -> Tensor:
        if self.gaussian is not None:
            return self.gaussian.noised_log_prob(x, mean, self.config["sigma_max"])
        return standard_normal_log_prob(x - mean, self._terminal_scale())

    def sample(
        self,
        shape: tuple[int, ...],
        context: Tensor | None,
        *,
        generator: torch.Generator | None = None,
        steps: int | None = None,
        sampler: str | None = None,
    ) -> Tensor:
        """Draw samples with the probability-flow ODE (Heun/Euler) or the reverse SDE.

        Args:
            shape: sample shape.
            context: ``(*Bc, C)`` (None if unconditional).
            generator: randomness of the initial noise (and the SDE's noise).
            steps: number of steps (default ``config["steps"]``, or ``config["sde_steps"]`` for "sde").
            sampler: "dpm2m", "heun", "euler" or "sde" (default ``config["sampler"]``).

        Returns:
            ``(*shape, *Bc, *event)``.
        """
        sampler = self.config["sampler"] if sampler is None else sampler
        if sampler not in _SAMPLERS:
            raise ValueError(f"sampler must be one of {_SAMPLERS}; got {sampler!r}")
        if steps is None:
            steps = self.config["sde_steps"] if sampler == "sde" else self.config["steps"]
        check_steps(steps)
        ref = parameter_like(self)
        dtype = context.dtype if context is not None and context.is_floating_point() else ref.dtype
        device = context.device if context is not None else ref.device
        batch, c = flat_context(context, self.context_dim, device, dtype)
        shape = tuple(shape)
        n_s, n_c = math.prod(shape), math.prod(batch)
        emb = None
        sig = self.sigmas(steps).tolist()
        with torch.no_grad():
            # state (n_s, n_c, D); σ, time and context embeddings are computed once per step for
            # (1, n_c, ·) and broadcast over the n_s samples
            if c is not None:
                emb = as_network(self.net).embed_context(c)
                assert emb is not None  # a network with a context embeds it
                emb = emb.unsqueeze(0)
            x = torch.randn((n_s, n_c, self.dim), generator=generator, device=device, dtype=dtype)
            m = self._mean(c, x[:1])
            m = m.reshape(1, -1, self.dim) if m is not None else None
            x = self._terminal_sample(x, self._terminal_mean(x, emb, m))

            den = checked(lambda y, s: self._denoise(y, s, emb, m), "denoiser (score)")

            if sampler == "dpm2m":
                levels = log_sigmas(self.config["sigma_max"], self.config["sigma_min"], steps)
                x = dpm_solver_2m(den, x, levels, name="denoiser (score)")
                return x.reshape(*shape, *batch, *self.event_shape)
            x = sample_edm(den, x, sig, sampler, generator=generator, device=device, dtype=dtype)
        return x.reshape(*shape, *batch, *self.event_shape)

    # --- density -----------------------------------------------------------------------------------

    def log_prob(
        self,
        target: Tensor,
        context: Tensor | None,
        *,
        trace: str | None = None,
        solver: str | None = None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """log q(target | context) through the probability-flow ODE.

        Args:
            target: ``(*B, *event)``.
            context: ``(*B, C)`` (broadcast against target).
            trace: "exact" or "hutchinson" (default ``config["trace"]``).
            solver, steps: ODE solver and steps (defaults ``config["log_prob_solver"]``, ``config["log_prob_steps"]``).
            generator: randomness of the Hutchinson probe vectors.

        Returns:
            ``(*B,)``.
        """
        cfg = self.config
        steps = check_steps(cfg["log_prob_steps"] if steps is None else steps)
        target = flatten_event(target, self.event_shape, "target")
        batch, x0, c = broadcast_target_context(target, context, self.dim, self.context_dim)
        emb = as_network(self.net).embed_context(c) if c is not None else None
        m = self._mean(c, x0)
        r = cfg["rho"]
        a, b = cfg["sigma_min"] ** (1 / r), cfg["sigma_max"] ** (1 / r)

        def velocity(u: float, x: Tensor) -> Tensor:
            base = a + u * (b - a)
            s = base**r
            dsdu = r * base ** (r - 1) * (b - a)
            return (x - self._denoise(x, s, emb, m)) * (dsdu / s)

        z, div = integrate_with_divergence(
            velocity,
            x0,
            0.0,
            1.0,
            trace=cfg["trace"] if trace is None else trace,
            generator=generator,
            method=cfg["log_prob_solver"] if solver is None else solver,
            steps=steps,
            atol=cfg["atol"],
            rtol=cfg["rtol"],
            name="probability-flow drift",
        )
        logp = self._terminal_log_prob(z, self._terminal_mean(x0, emb, m)) + div
        return logp.reshape(batch)
