r"""Conditional flow matching (Lipman et al. 2023; Dax et al. 2023, FMPE) on the optimal-transport path.

Time t ∈ [0, 1] runs from noise (t = 0) to data (t = 1). With x₀ ~ N(0, I), x₁ the target and
context c, the conditional optimal-transport path and its velocity are

    x_t = (1 - (1 - σ_min) t) x₀ + t x₁,        u_t = x₁ - (1 - σ_min) x₀.

A network v_φ(x, t, c) is trained by regression on u_t (conditional flow matching):

    L(φ) = E_{t, x₀, (x₁, c)} ‖v_φ(x_t, t, c) - u_t‖² / D,

t drawn uniformly (``time_sampling="uniform"``), logit-normally (``"logit_normal"``, more weight
mid-path) or with more weight near the data (``"late"``: 1 - t = (1 - u)², u uniform). Sampling integrates dx/dt = v_φ(x, t, c) from x(0) ~ N(0, I) to t = 1 with a fixed-step
solver (``"midpoint"``, ``"rk4"``, ``"euler"``, ``"heun"``; ``steps`` configurable) or the adaptive
``"dopri5"``. The density is exact up to the ODE solver (instantaneous change of variables):

    log q(x₁ | c) = log N(x₀; 0, I) - ∫₀¹ ∇·v_φ(x_t, t, c) dt,

integrated backwards from t = 1 to 0 jointly with x_t. The divergence is the exact Jacobian trace
(D backward passes: cheap for low-dimensional θ) or Hutchinson's estimate εᵀ(∂v/∂x)ε
(``trace="hutchinson"``, unbiased, one backward pass).

When the module is in eval mode and no generator is given, :meth:`FlowMatching.loss` uses a fixed
seed, so a validation loss is evaluated with the same noise every epoch (early stopping compares
like with like instead of noise).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from physgen.models._ode import (
    METHODS,
    broadcast_target_context,
    check_steps,
    divergence,
    flat_context,
    odeint,
    standard_normal_log_prob,
)
from physgen.nn.mlp import ResidualMLP

__all__ = ["FlowMatching"]

_TIME_SAMPLING = ("uniform", "logit_normal", "late")
_TRACES = ("exact", "hutchinson")


def _eval_generator(module: nn.Module, device: torch.device) -> torch.Generator | None:
    if module.training:
        return None
    return torch.Generator(device=device).manual_seed(0)


class FlowMatching(nn.Module):
    """Conditional flow matching with an OT path and ODE sampling.

    Args:
        dim: target dimension D.
        context_dim: context dimension C (0 = unconditional).
        hidden_features: width of the residual MLP vector field.
        num_blocks: residual blocks.
        time_features: size of the sinusoidal time embedding.
        sigma_min: width of the path's end at t = 1 (0 = exact OT interpolation).
        time_sampling: training times: "uniform", "logit_normal" or "late" (1 - t = (1 - u)², u uniform).
        solver: default sampling ODE solver (``"midpoint"``, ``"rk4"``, ``"euler"``, ``"heun"``, ``"dopri5"``).
        steps: default number of solver steps for sampling.
        step_power: fixed-step grid ``t_i = 1 - (1 - i/N)^step_power`` (> 1: smaller steps near the data).
        log_prob_solver: ODE solver of :meth:`log_prob`.
        log_prob_steps: steps of :meth:`log_prob` (initial step hint for dopri5).
        atol, rtol: tolerances of the adaptive solver.
        trace: "exact" or "hutchinson" divergence in :meth:`log_prob`.
    """

    def __init__(
        self,
        dim: int,
        context_dim: int,
        *,
        hidden_features: int = 128,
        num_blocks: int = 3,
        time_features: int = 32,
        sigma_min: float = 1e-4,
        time_sampling: str = "uniform",
        solver: str = "rk4",
        steps: int = 8,
        step_power: float = 2.0,
        log_prob_solver: str = "dopri5",
        log_prob_steps: int = 10,
        atol: float = 1e-5,
        rtol: float = 1e-5,
        trace: str = "exact",
    ):
        super().__init__()
        if dim < 1 or context_dim < 0:
            raise ValueError(f"FlowMatching needs dim >= 1 and context_dim >= 0; got dim={dim}, context_dim={context_dim}")
        if not 0.0 <= sigma_min < 1.0:
            raise ValueError(f"sigma_min must be in [0, 1); got {sigma_min}")
        if time_sampling not in _TIME_SAMPLING:
            raise ValueError(f"time_sampling must be one of {_TIME_SAMPLING}; got {time_sampling!r}")
        for s in (solver, log_prob_solver):
            if s not in METHODS:
                raise ValueError(f"unknown ODE solver {s!r}; choose one of {METHODS}")
        if trace not in _TRACES:
            raise ValueError(f"trace must be one of {_TRACES}; got {trace!r}")
        check_steps(steps)
        check_steps(log_prob_steps, "log_prob_steps")
        self.name = "flow_matching"
        self.dim, self.context_dim = dim, context_dim
        self.config = {
            "dim": dim,
            "context_dim": context_dim,
            "hidden_features": hidden_features,
            "num_blocks": num_blocks,
            "time_features": time_features,
            "sigma_min": sigma_min,
            "time_sampling": time_sampling,
            "solver": solver,
            "steps": steps,
            "step_power": step_power,
            "log_prob_solver": log_prob_solver,
            "log_prob_steps": log_prob_steps,
            "atol": atol,
            "rtol": rtol,
            "trace": trace,
        }
        self.net = ResidualMLP(
            dim, dim, context_dim, hidden_features=hidden_features, num_blocks=num_blocks, time_features=time_features
        )

    def _ref(self) -> Tensor:
        return self.net.output.weight

    def loss(self, target: Tensor, context: Tensor | None, *, generator: torch.Generator | None = None) -> Tensor:
        """Conditional flow-matching loss. target ``(B, D)``, context ``(B, C)`` -> scalar."""
        batch, x1, c = broadcast_target_context(target, context, self.dim, self.context_dim)
        if generator is None:
            generator = _eval_generator(self, x1.device)
        n = x1.shape[0]
        x0 = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
        if self.config["time_sampling"] == "uniform":
            t = torch.rand(n, generator=generator, device=x1.device, dtype=x1.dtype)
        elif self.config["time_sampling"] == "late":
            t = 1.0 - (1.0 - torch.rand(n, generator=generator, device=x1.device, dtype=x1.dtype)).pow(2)
        else:
            t = torch.sigmoid(torch.randn(n, generator=generator, device=x1.device, dtype=x1.dtype))
        s = 1.0 - self.config["sigma_min"]
        xt = (1.0 - s * t).unsqueeze(-1) * x0 + t.unsqueeze(-1) * x1
        u = x1 - s * x0
        return (self.net(xt, self._time_input(t), c) - u).pow(2).mean()

    def vector_field(self, x: Tensor, t: Tensor | float, context: Tensor | None) -> Tensor:
        """v(x, t, c). x ``(*B, D)``, t scalar or ``(*B,)``, context ``(*B, C)`` -> ``(*B, D)``."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[:-1])
        return self.net(x, self._time_input(t), context)

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
            ``(*shape, *Bc, D)``.
        """
        steps = check_steps(self.config["steps"] if steps is None else steps)
        solver = self.config["solver"] if solver is None else solver
        step_power = self.config["step_power"] if step_power is None else step_power
        ref = self._ref()
        dtype = context.dtype if context is not None and context.is_floating_point() else ref.dtype
        device = context.device if context is not None else ref.device
        batch, c = flat_context(context, self.context_dim, device, dtype)
        shape = tuple(shape)
        n_s, n_c = math.prod(shape), math.prod(batch)
        x = torch.randn((n_s * n_c, self.dim), generator=generator, device=device, dtype=dtype)
        emb = None
        if c is not None:
            emb = self.net.embed_context(c).expand(n_s, n_c, -1).reshape(n_s * n_c, -1)

        def f(t: float, y: Tensor) -> Tensor:
            tt = self._time_input(torch.full(y.shape[:1], t, device=device, dtype=dtype))
            return self.net(y, tt, context_embedding=emb)

        with torch.no_grad():
            x = odeint(
                f, x, 0.0, 1.0, method=solver, steps=steps, atol=self.config["atol"], rtol=self.config["rtol"], power=step_power
            )
        return x.reshape(*shape, *batch, self.dim)

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
            target: ``(*B, D)``.
            context: ``(*B, C)`` (broadcast against target).
            trace: "exact" or "hutchinson" (default ``config["trace"]``).
            solver, steps: ODE solver and steps (defaults ``config["log_prob_solver"]``, ``config["log_prob_steps"]``).
            generator: randomness of the Hutchinson probe vectors.

        Returns:
            ``(*B,)``. Differentiable with respect to the parameters when grad mode is on.
        """
        trace = self.config["trace"] if trace is None else trace
        if trace not in _TRACES:
            raise ValueError(f"trace must be one of {_TRACES}; got {trace!r}")
        solver = self.config["log_prob_solver"] if solver is None else solver
        steps = check_steps(self.config["log_prob_steps"] if steps is None else steps)
        batch, x1, c = broadcast_target_context(target, context, self.dim, self.context_dim)
        emb = self.net.embed_context(c) if c is not None else None
        noise = None
        if trace == "hutchinson":
            noise = torch.randint(0, 2, x1.shape, generator=generator, device=x1.device).to(x1.dtype) * 2 - 1
        create_graph = torch.is_grad_enabled()
        d = self.dim

        def f(t: float, y: Tensor) -> Tensor:
            tt = self._time_input(torch.full(y.shape[:1], t, device=y.device, dtype=y.dtype))
            v, div = divergence(lambda x: self.net(x, tt, context_embedding=emb), y[:, :d], noise, create_graph)
            return torch.cat([v, div.unsqueeze(-1)], dim=-1)

        y1 = torch.cat([x1, torch.zeros_like(x1[:, :1])], dim=-1)
        y0 = odeint(f, y1, 1.0, 0.0, method=solver, steps=steps, atol=self.config["atol"], rtol=self.config["rtol"])
        logp = standard_normal_log_prob(y0[:, :d]) + y0[:, d]
        return logp.reshape(batch)
