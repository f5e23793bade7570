r"""Conditional flow matching (Lipman et al. 2023; Dax et al. 2023, FMPE) on the optimal-transport path.

Time t ∈ [0, 1] runs from noise (t = 0) to data (t = 1). With x₀ ~ N(0, I), x₁ the target and
context c, the conditional optimal-transport path and its velocity are

    x_t = (1 - (1 - σ_min) t) x₀ + t x₁,        u_t = x₁ - (1 - σ_min) x₀.

A network v_φ(x, t, c) is trained by regression on u_t (conditional flow matching):

    L(φ) = E_{t, x₀, (x₁, c)} ‖v_φ(x_t, t, c) - u_t‖² / D,

t drawn uniformly (``time_sampling="uniform"``), logit-normally (``"logit_normal"``, more weight
mid-path), with more weight near the data (``"late"``: 1 - t = (1 - u)², u uniform) or with EDM's
noise levels (``"lognormal"``: σ = (1 - t)/t with ln σ ~ N(-1.2, 1.2²); in the coordinates y = x_t/t the
OT path is the diffusion y = x₁ + σ x₀, and the flow-matching loss weights errors like EDM's loss).

Sampling integrates dx/dt = v_φ(x, t, c) from x(0) ~ N(0, I) to t = 1. Default: ``"rk4"`` with 8 steps
on the grid t_i = 1 - (1 - i/N)² (32 network calls; its accuracy on exact fields is tested in
tests/test_vf_accuracy.py). Option ``"dpm2m"``: with
σ = (1 - t)/t and y = x_t / t the OT path is a variance-exploding diffusion y = x₁ + σ x₀ whose data
prediction is D = x_t + (1 - t) v; DPM-Solver++(2M) (an exponential integrator, exact for the linear
part of the flow) on a log-uniform σ grid, N network calls. Also available:
fixed-step ``"midpoint"``, ``"euler"``, ``"heun"`` (``steps``; grid t_i = 1 - (1 - i/N)^p with
``step_power`` p) and the adaptive ``"dopri5"``. The density is exact up to the ODE solver (instantaneous change of variables):

    log q(x₁ | c) = log N(x₀; 0, I) - ∫₀¹ ∇·v_φ(x_t, t, c) dt,

integrated backwards from t = 1 to 0 jointly with x_t. The divergence is the exact Jacobian trace
(D backward passes: cheap for low-dimensional θ) or Hutchinson's estimate εᵀ(∂v/∂x)ε
(``trace="hutchinson"``, unbiased, one backward pass).

With ``gaussian_base`` (default for targets of at most 64 elements) the network learns a correction to the exact field of a linear-Gaussian
fit N(W c + b, S) of the training set (:mod:`physgen.models._gaussian`, set before the first epoch); its zero
output layer makes the untrained model that Gaussian.

When the module is in eval mode and no generator is given, :meth:`FlowMatching.loss` uses a fixed
seed, so a validation loss is evaluated with the same noise every epoch (early stopping compares
like with like instead of noise).
"""

from __future__ import annotations

import math
from typing import TypedDict, cast

import torch
from torch import Tensor, nn

from physgen.models._ode import (
    FIXED_METHODS,
    METHODS,
    broadcast_target_context,
    check_steps,
    check_trace,
    integrate_with_divergence,
    flat_context,
    odeint,
    ot_dpm_solver_2m,
    standard_normal_log_prob,
    stage_times,
)
from physgen.models._gaussian import LinearGaussian
from physgen.models._network import (
    Freezable,
    apply_network,
    as_network,
    network_spec,
    parameter_like,
    resolve_gaussian_base,
    resolve_network,
    resolve_trace,
)
from physgen.models._times import check_time_sampling, training_times
from physgen.shapes import as_event_shape, flatten_event, unflatten_event

__all__ = ["FlowMatching"]

_SOLVERS = (*METHODS, "dpm2m")


def _eval_generator(module: nn.Module, device: torch.device) -> torch.Generator | None:
    if module.training:
        return None
    return torch.Generator(device=device).manual_seed(0)


class _FlowMatchingConfig(TypedDict):
    """``FlowMatching.config``: the resolved constructor arguments (``network``: the network's spec, or None)."""

    event_shape: list[int]
    context_dim: int
    network: dict | None
    sigma_min: float
    time_sampling: str
    solver: str
    steps: int
    step_power: float
    ode_sigma_max: float
    ode_sigma_min: float
    log_prob_solver: str
    log_prob_steps: int
    atol: float
    rtol: float
    trace: str
    gaussian_base: bool


class FlowMatching(nn.Module):
    """Conditional flow matching with an OT path and ODE sampling, on any event shape.

    Args:
        event_shape: the target's shape: ``(D,)`` (or an int D), a field ``(C, H, W)``, ...
        context_dim: context dimension C (0 = unconditional).
        network: the vector field v(x, t, c) (:class:`physgen.core.Network`): a module, a saved spec
            ``{"name", "config"}``, or None for the default (a residual MLP for vectors, a U-Net for fields,
            built by :func:`physgen.models.build_model` with its network options).
        sigma_min: width of the path's end at t = 1 (0 = exact OT interpolation).
        time_sampling: training times: "uniform", "logit_normal", "late" (1 - t = (1 - u)², u uniform) or
            "lognormal" (ln((1 - t)/t) ~ N(-1.2, 1.2²)).
        solver: default sampling solver: ``"rk4"``, ``"midpoint"``, ``"euler"``, ``"heun"``, ``"dopri5"`` or
            ``"dpm2m"`` (DPM-Solver++(2M) in the path's VE coordinates).
        steps: default number of solver steps for sampling (network calls: N for dpm2m, 2N midpoint/heun, 4N rk4).
        step_power: fixed-step grid ``t_i = 1 - (1 - i/N)^step_power`` (> 1: smaller steps near the data).
        ode_sigma_max, ode_sigma_min: the σ = (1 - t)/t range of the dpm2m grid.
        log_prob_solver: ODE solver of :meth:`log_prob`.
        log_prob_steps: steps of :meth:`log_prob` (initial step hint for dopri5).
        atol, rtol: tolerances of the adaptive solver.
        trace: "exact", "hutchinson" or "auto" (exact up to 32 target elements) divergence in :meth:`log_prob`.
        gaussian_base: learn a correction to the field of a linear-Gaussian fit (module docstring); "auto" =
            on for targets of at most 64 elements (it holds a D x D eigenbasis).

    Raises:
        ValueError: bad hyperparameters, or a network whose event shape or context size differs.
    """

    # training defaults that fit_posterior / fit_emulator apply unless given (docs/flow_matching_diffusion.md)
    fit_defaults = {"ema": 0.999, "schedule": "cosine", "max_epochs": 350, "patience": 350}
    default_transform = "unconstrained"
    sample_block = 1024

    def __init__(
        self,
        event_shape: int | tuple[int, ...],
        context_dim: int,
        *,
        network: nn.Module | dict | None = None,
        sigma_min: float = 1e-4,
        time_sampling: str = "late",
        solver: str = "rk4",
        steps: int = 8,
        step_power: float = 2.0,
        ode_sigma_max: float = 20.0,
        ode_sigma_min: float = 2e-3,
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
            raise ValueError(f"FlowMatching needs context_dim >= 0; got {context_dim}")
        if not 0.0 <= sigma_min < 1.0:
            raise ValueError(f"sigma_min must be in [0, 1); got {sigma_min}")
        check_time_sampling(time_sampling)
        if solver not in _SOLVERS:
            raise ValueError(f"unknown sampling solver {solver!r}; choose one of {_SOLVERS}")
        if log_prob_solver not in METHODS:
            raise ValueError(f"unknown ODE solver {log_prob_solver!r}; choose one of {METHODS}")
        self.name = "flow_matching"
        self.event_shape, self.context_dim = event_shape, context_dim
        self.dim = math.prod(event_shape)
        trace = check_trace(resolve_trace(trace, self.dim))
        gaussian_base = resolve_gaussian_base(gaussian_base, self.dim)
        check_steps(steps)
        check_steps(log_prob_steps, "log_prob_steps")
        self.net = resolve_network(network, event_shape, context_dim, "flow_matching")
        self.gaussian = LinearGaussian(self.dim, context_dim) if gaussian_base else None
        self.config: _FlowMatchingConfig = {
            "event_shape": list(event_shape),
            "context_dim": context_dim,
            "network": network_spec(self.net),
            "sigma_min": sigma_min,
            "time_sampling": time_sampling,
            "solver": solver,
            "steps": steps,
            "step_power": step_power,
            "ode_sigma_max": ode_sigma_max,
            "ode_sigma_min": ode_sigma_min,
            "log_prob_solver": log_prob_solver,
            "log_prob_steps": log_prob_steps,
            "atol": atol,
            "rtol": rtol,
            "trace": trace,
            "gaussian_base": gaussian_base,
        }

    @torch.no_grad()
    def warm_start(self, target: Tensor, context: Tensor | None) -> None:
        """Fit the linear-Gaussian baseline (``gaussian_base``) to target ``(n, *event)``, context ``(n, C)``."""
        if self.gaussian is not None:
            self.gaussian.fit(flatten_event(target, self.event_shape, "target"), context)

    def _embed(self, c: Tensor | None) -> Tensor | None:
        return as_network(self.net).embed_context(c) if c is not None else None

    def _mean(self, c: Tensor | None, like: Tensor) -> Tensor | None:
        return self.gaussian.mean(c, like) if self.gaussian is not None else None

    def _field(self, x: Tensor, t: Tensor, m: Tensor | None, emb: Tensor | None = None) -> Tensor:
        """Network output plus (``gaussian_base``) the baseline's exact field on the flat state x ``(*N, D)``;
        m = baseline mean, emb = the network's context embedding."""
        v = apply_network(self.net, x, self._time_input(t), emb, self.event_shape)
        if self.gaussian is not None:
            assert m is not None  # _mean gives the baseline's mean whenever there is a baseline
            v = v + self.gaussian.velocity(x, t, m, 1.0 - self.config["sigma_min"])
        return v

    def loss(self, target: Tensor, context: Tensor | None, *, generator: torch.Generator | None = None) -> Tensor:
        """Conditional flow-matching loss. target ``(B, *event)``, context ``(B, C)`` -> scalar."""
        target = flatten_event(target, self.event_shape, "target")
        batch, x1, c = broadcast_target_context(target, context, self.dim, self.context_dim)
        if generator is None:
            generator = _eval_generator(self, x1.device)
        n = x1.shape[0]
        x0 = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
        t = training_times(self.config["time_sampling"], n, generator=generator, device=x1.device, dtype=x1.dtype)
        s = 1.0 - self.config["sigma_min"]
        xt = (1.0 - s * t).unsqueeze(-1) * x0 + t.unsqueeze(-1) * x1
        u = x1 - s * x0
        return (self._field(xt, t, self._mean(c, x1), self._embed(c)) - u).pow(2).mean()

    def vector_field(self, x: Tensor, t: Tensor | float, context: Tensor | None) -> Tensor:
        """v(x, t, c). x ``(*B, *event)``, t scalar or ``(*B,)``, context ``(*B, C)`` -> ``(*B, *event)``."""
        x = flatten_event(x, self.event_shape)
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[:-1])
        return unflatten_event(self._field(x, t, self._mean(context, x), self._embed(context)), self.event_shape)

    @staticmethod
    def _time_input(t: Tensor) -> Tensor:
        # the network sees τ = ln(1 - t + 1e-3) / 4, which resolves the end of the path (t -> 1), where
        # the field of a sharp target varies fastest
        return torch.log1p(1e-3 - t) / 4

    def sample(
        self,
        shape: tuple[int, ...],
        context: Tensor | None,
        *,
        generator: torch.Generator | None = None,
        steps: int | None = None,
        solver: str | None = None,
        step_power: float | None = None,
    ) -> Tensor:
        """Draw samples by integrating the ODE from noise (t = 0) to data (t = 1).

        Args:
            shape: sample shape.
            context: ``(*Bc, C)`` (None if unconditional).
            generator: randomness of the initial noise.
            steps: solver steps (default ``config["steps"]``).
            solver: ODE solver (default ``config["solver"]``).
            step_power: fixed-step time grid (default ``config["step_power"]``; 1 = uniform).

        Returns:
            ``(*shape, *Bc, *event)``.
        """
        steps = check_steps(self.config["steps"] if steps is None else steps)
        solver = self.config["solver"] if solver is None else solver
        step_power = self.config["step_power"] if step_power is None else step_power
        ref = parameter_like(self)
        dtype = context.dtype if context is not None and context.is_floating_point() else ref.dtype
        device = context.device if context is not None else ref.device
        batch, c = flat_context(context, self.context_dim, device, dtype)
        shape = tuple(shape)
        n_s, n_c = math.prod(shape), math.prod(batch)
        # state (n_s, n_c, D); the time and context embeddings (and each block's conditioning) are
        # computed once per step for (1, n_c, ·) and broadcast over the n_s samples (for one observation
        # on a fixed grid: once per call for all the solver's times, below)
        x = torch.randn((n_s, n_c, self.dim), generator=generator, device=device, dtype=dtype)
        emb = None
        if c is not None:
            emb = as_network(self.net).embed_context(c)
            assert emb is not None  # a network with a context embeds it
            emb = emb.unsqueeze(0)
        m = self._mean(c, x[:1])
        m = m.reshape(1, -1, self.dim) if m is not None else None

        def f(t: float, y: Tensor) -> Tensor:
            return self._field(y, torch.tensor(t, device=device, dtype=dtype), m, emb=emb)

        if n_c == 1 and solver in FIXED_METHODS and hasattr(self.net, "frozen"):
            # one observation on a fixed grid: the network at each solver time with its conditioning folded
            # into the weights (physgen.nn.ResidualMLP.frozen), built once for all times
            # (benchmarks/fm_sampling_path.py prints the speed-up)
            f = self._frozen_field(stage_times(solver, 0.0, 1.0, steps, step_power), emb, m, n_s, f, x)

        with torch.no_grad():
            if solver == "dpm2m":
                x = ot_dpm_solver_2m(f, x, steps, self.config["ode_sigma_max"], self.config["ode_sigma_min"])
            else:
                if solver not in METHODS:
                    raise ValueError(f"unknown sampling solver {solver!r}; choose one of {_SOLVERS}")
                x = odeint(
                    f,
                    x,
                    0.0,
                    1.0,
                    method=solver,
                    steps=steps,
                    atol=self.config["atol"],
                    rtol=self.config["rtol"],
                    power=step_power,
                )
        return x.reshape(*shape, *batch, *self.event_shape)

    @torch.no_grad()
    def _frozen_field(self, times: list[float], emb: Tensor | None, m: Tensor | None, n_s: int, fallback, like: Tensor):
        """f(t, y) for y ``(n_s, 1, D)`` at the given times (``fallback`` elsewhere); ``like``: device and dtype."""
        t = torch.tensor(times, device=like.device, dtype=like.dtype)
        # called only when the network has frozen() (sample checks it)
        nets = cast(Freezable, self.net).frozen(self._time_input(t), None if emb is None else emb.reshape(-1))
        affine = None
        if self.gaussian is not None:
            assert m is not None  # _mean gives the baseline's mean whenever there is a baseline
            affine = self.gaussian.velocity_affine(t, m.reshape(-1), 1.0 - self.config["sigma_min"])
        index = {tk: k for k, tk in enumerate(times)}

        def f(tk: float, y: Tensor) -> Tensor:
            k = index.get(tk)
            if k is None:
                return fallback(tk, y)
            y2 = y.reshape(n_s, self.dim)
            v = nets[k](y2)
            if affine is not None:
                v = torch.addmm(v, y2, affine[0][k]).add_(affine[1][k])
            return v.reshape(y.shape)

        return f

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
        """log q(target | context) by the instantaneous change of variables.

        Args:
            target: ``(*B, *event)``.
            context: ``(*B, C)`` (broadcast against target).
            trace: "exact" or "hutchinson" (default ``config["trace"]``).
            solver, steps: ODE solver and steps (defaults ``config["log_prob_solver"]``, ``config["log_prob_steps"]``).
            generator: randomness of the Hutchinson probe vectors.

        Returns:
            ``(*B,)``. Differentiable with respect to the parameters when grad mode is on.
        """
        cfg = self.config
        steps = check_steps(cfg["log_prob_steps"] if steps is None else steps)
        target = flatten_event(target, self.event_shape, "target")
        batch, x1, c = broadcast_target_context(target, context, self.dim, self.context_dim)
        emb = self._embed(c)
        m = self._mean(c, x1)

        def velocity(t: float, x: Tensor) -> Tensor:
            return self._field(x, torch.full(x.shape[:1], t, device=x.device, dtype=x.dtype), m, emb=emb)

        z, div = integrate_with_divergence(
            velocity,
            x1,
            1.0,
            0.0,
            trace=cfg["trace"] if trace is None else trace,
            generator=generator,
            method=cfg["log_prob_solver"] if solver is None else solver,
            steps=steps,
            atol=cfg["atol"],
            rtol=cfg["rtol"],
        )
        logp = standard_normal_log_prob(z) + div
        return logp.reshape(batch)
