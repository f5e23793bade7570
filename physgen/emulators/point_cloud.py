r"""Point-cloud emulator: q(x | c) = q(N | c) q(x_1..x_N | N, c) for padded point sets in a periodic box.

A point set is one padded tensor ``(n_max, d + 1)`` (:mod:`physgen.shapes`: coordinates in [0, L), the mask
last, real points first, in random order). The family models it in two factors.

**Count.** N | c is a mixture of K negative binomials, restricted to {0, ..., n_max} and renormalised there:

    q(N | c) = Σ_k w_k NB(N; m_k, r_k) / Σ_{n=0}^{n_max} Σ_k w_k NB(n; m_k, r_k),
    NB(n; m, r) = Γ(n + r) / (Γ(r) n!) (r / (r + m))^r (m / (r + m))^n,

with (w, m, r) from an MLP of the context. The log-probability is exact (the normaliser is a finite sum),
sampling draws from the same table, and a negative binomial is the natural kernel for the over-dispersed
counts of clustered processes (a Thomas process has Var N = E N (1 + μ)); the mixture covers what one
kernel does not.

**Positions.** Given (N, c) the coordinates u = x / L on the unit torus T^d follow conditional flow
matching with the uniform base and geodesic paths on the torus:

    u_0 ~ U(T^d)^N,  Δ = wrap(u_1 - u_0) (minimum image),  u_t = u_0 + t Δ (mod 1),
    loss = E_{t, u_0, u_1} Σ_i |v_θ(u_t, t | N, c)_i - Δ_i|^2 / (N d),

with v_θ the periodic, permutation- and translation-equivariant set transformer
:class:`physgen.emulators.point_cloud_net.PeriodicSetField`. Sampling integrates du/dt = v from t = 0 to 1
and wraps. The uniform base has density 1 on T^d and the flow of a periodic field maps the torus onto
itself, so by the instantaneous change of variables

    log q(u_1 | N, c) = - ∫_0^1 div v_θ(u_t, t) dt,   log q(x | c) = log q(N | c) + log q(u_1 | N, c) - N d log L,

the density of the padded tensor as stored (its N real points in the order given; the N! orderings are
equally likely). The divergence is exact (``trace="exact"``: N d backward passes) or a Hutchinson estimate
(default). Pass ``target_standardization="none"`` (the default :func:`physgen.fit_emulator` takes from
this class): coordinates enter in the box's units.
"""

from __future__ import annotations

import math
from typing import ClassVar, TypedDict

import torch
from torch import Tensor, nn

from physgen.emulators.point_cloud_net import PeriodicSetField, wrap_displacement
from physgen.models._ode import check_steps, check_trace, integrate_with_divergence, odeint
from physgen.models._times import check_time_sampling, training_times
from physgen.nn.mlp import MLP
from physgen.nn.point_pairs import trim_padding
from physgen.shapes import batch_shape_of, join_points, split_points

__all__ = ["PointCloudFlow"]

TIME_FREQUENCIES = 4  # sin/cos(π k t), k = 1..4, beside t itself
COUPLINGS = ("independent", "ot")


@torch.no_grad()
def ot_permute(u0: Tensor, u1: Tensor, mask: Tensor) -> Tensor:
    """Base points reordered to the optimal assignment onto the data points, set by set.

    u0, u1 ``(B, n, d)`` on the unit torus, mask ``(B, n)`` -> ``(B, n, d)``: within each set, the real
    base points permuted so that Σ_i |wrap(u1_i - u0_π(i))|² is least over permutations π (padding rows
    unchanged). Exact (Hungarian algorithm); O(N³) per set on the CPU.
    """
    from scipy.optimize import linear_sum_assignment

    out = u0.clone()
    for b in range(u0.shape[0]):
        idx = mask[b].nonzero().squeeze(-1)
        if idx.numel() < 2:
            continue
        cost = (wrap_displacement(u1[b, idx, None, :] - u0[b, None, idx, :]) ** 2).sum(-1)
        _, col = linear_sum_assignment(cost.cpu().numpy())
        out[b, idx] = u0[b, idx[torch.as_tensor(col, device=idx.device)]]
    return out


class _Config(TypedDict):
    """``PointCloudFlow(**config)`` rebuilds the model; ``sample`` and ``log_prob`` read their defaults here."""

    event_shape: list[int]
    context_dim: int
    box_size: float
    components: int
    count_hidden: int
    hidden_features: int
    heads: int
    num_layers: int
    num_rbf: int
    cutoff: float
    num_inducing: int
    steps: int
    solver: str
    trace: str
    log_prob_steps: int
    log_prob_solver: str
    count_weight: float
    time_sampling: str
    coupling: str


class PointCloudFlow(nn.Module):
    """q(point set | c): a negative-binomial mixture for N, flow matching on the torus for the positions.

    Args:
        event_shape: ``(n_max, d + 1)``: padded sets with the mask last, d in 1..3.
        context_dim: C, the encoded θ's size (0: unconditional).
        box_size: L, the side of the periodic box (coordinates in [0, L)).
        components: K negative binomials of the count model.
        count_hidden: width of the count model's MLP.
        hidden_features, heads, num_layers, num_rbf, cutoff, num_inducing: the velocity network
            (:class:`PeriodicSetField`; ``cutoff`` in units of L).
        steps, solver: ODE steps and method of sampling (``physgen.models._ode``).
        trace, log_prob_steps, log_prob_solver: divergence estimator and ODE of ``log_prob``.
        count_weight: weight of the count NLL beside the flow-matching loss.
        time_sampling: how the training times t are drawn, as for
            :class:`physgen.models.flow_matching.FlowMatching` (:mod:`physgen.models._times`): ``"uniform"``
            (default), ``"late"`` (more weight near t -> 1, where the field resolves the smallest
            separations), ``"logit_normal"`` or ``"lognormal"``. The minimiser at each t is the same; only
            where the network's capacity goes changes.
        coupling: how training pairs base and data points within a set. ``"independent"``: in the order
            drawn. ``"ot"``: the base points permuted to the assignment that minimises the total squared
            torus distance to the data points (the Hungarian algorithm, :func:`scipy.optimize.linear_sum_assignment`,
            once per set and step): the paths become short. Both couplings have the uniform base and the
            data as marginals (the data are exchangeable, so the permuted base is still uniform on (T^d)^N),
            so sampling and ``log_prob`` are unchanged. Which trains the better field depends on the process
            (docs/emulators_point_clouds.md has the Thomas workflow's comparison).
    """

    name = "point_cloud"
    fit_defaults: ClassVar[dict] = {
        "ema": 0.999,
        "schedule": "cosine",
        "max_epochs": 200,
        "patience": 200,
        "batch_size": 32,
        "lr": 1e-3,
    }
    target_standardization: ClassVar[str] = "none"
    sample_block: ClassVar[int] = 256
    SAMPLE_GROUP: ClassVar[int] = 16  # sets integrated together (sorted by N) inside one sample call
    count_net: MLP
    net: PeriodicSetField
    support: Tensor  # buffer (n_max + 1,): the counts 0..n_max
    config: _Config

    def __init__(
        self,
        event_shape: tuple[int, ...],
        context_dim: int = 0,
        *,
        box_size: float = 1.0,
        components: int = 4,
        count_hidden: int = 64,
        hidden_features: int = 64,
        heads: int = 4,
        num_layers: int = 3,
        num_rbf: int = 16,
        cutoff: float = 0.25,
        num_inducing: int = 0,
        steps: int = 32,
        solver: str = "midpoint",
        trace: str = "hutchinson",
        log_prob_steps: int = 32,
        log_prob_solver: str = "midpoint",
        count_weight: float = 0.1,
        time_sampling: str = "uniform",
        coupling: str = "independent",
    ) -> None:
        super().__init__()
        shape = tuple(int(v) for v in event_shape)
        if len(shape) != 2 or not 2 <= shape[1] <= 4 or shape[0] < 1:
            raise ValueError(
                f"PointCloudFlow models padded point sets, event shape (n_max, d + 1) with d in 1..3 "
                f"(mask last); got {shape}"
            )
        if not (math.isfinite(box_size) and box_size > 0) or components < 1:
            raise ValueError(f"box_size must be positive and components >= 1; got {box_size}, {components}")
        check_time_sampling(time_sampling)
        if coupling not in COUPLINGS:
            raise ValueError(f"coupling must be one of {COUPLINGS}; got {coupling!r}")
        check_steps(steps)
        check_steps(log_prob_steps, "log_prob_steps")
        check_trace(trace)
        self.event_shape, self.context_dim = shape, int(context_dim)
        self.n_max, self.dim, self.box_size, self.components = shape[0], shape[1] - 1, float(box_size), int(components)
        self.count_net = MLP(max(self.context_dim, 1), 3 * components, (count_hidden, count_hidden))
        self.net = PeriodicSetField(
            self.dim,
            self.context_dim + 2 + 2 * TIME_FREQUENCIES,
            hidden_features=hidden_features,
            heads=heads,
            num_layers=num_layers,
            num_rbf=num_rbf,
            cutoff=cutoff,
            num_inducing=num_inducing,
        )
        self.register_buffer("support", torch.arange(self.n_max + 1.0), persistent=False)
        self.config = {
            "event_shape": list(shape),
            "context_dim": self.context_dim,
            "box_size": self.box_size,
            "components": components,
            "count_hidden": count_hidden,
            "hidden_features": hidden_features,
            "heads": heads,
            "num_layers": num_layers,
            "num_rbf": num_rbf,
            "cutoff": cutoff,
            "num_inducing": num_inducing,
            "steps": steps,
            "solver": solver,
            "trace": trace,
            "log_prob_steps": log_prob_steps,
            "log_prob_solver": log_prob_solver,
            "count_weight": count_weight,
            "time_sampling": time_sampling,
            "coupling": coupling,
        }

    # ------------------------------------------------------------------ pieces
    def _ctx(self, context: Tensor | None, rows: int, like: Tensor) -> Tensor:
        """The context as ``(rows, max(C, 1))`` (zeros when unconditional)."""
        if self.context_dim == 0:
            return torch.zeros(rows, 1, device=like.device, dtype=like.dtype)
        if context is None:
            raise ValueError(f"this model needs a context (*B, {self.context_dim}); got None")
        return context.to(like.dtype).reshape(rows, self.context_dim)

    def count_table(self, ctx: Tensor) -> Tensor:
        """log q(N = n | c) for n = 0..n_max: ctx ``(B, max(C, 1))`` -> ``(B, n_max + 1)`` (exactly normalised)."""
        logit_w, log_m, log_r = self.count_net(ctx).chunk(3, -1)  # (B, K) each
        m, r, n = log_m.exp()[..., None], log_r.clamp(-7, 12).exp()[..., None], self.support
        lp = (
            torch.lgamma(n + r)
            - torch.lgamma(r)
            - torch.lgamma(n + 1)
            + r * torch.log(r / (r + m))
            + n * torch.log(m / (r + m))
        )  # (B, K, n_max + 1)
        lp = torch.logsumexp(torch.log_softmax(logit_w, -1)[..., None] + lp, dim=1)
        return lp - torch.logsumexp(lp, -1, keepdim=True)

    def _cond(self, ctx: Tensor, n: Tensor, t: Tensor) -> Tensor:
        """Conditioning of the velocity network: [c, log(1 + N) / log(1 + n_max), t, sin/cos(π k t)] ``(B, ·)``."""
        k = torch.arange(1, TIME_FREQUENCIES + 1, device=t.device, dtype=t.dtype) * math.pi
        parts = [ctx] if self.context_dim else []
        logn = torch.log1p(n.to(t.dtype)) / math.log1p(self.n_max)
        return torch.cat([*parts, logn[:, None], t[:, None], torch.sin(t[:, None] * k), torch.cos(t[:, None] * k)], -1)

    def _velocity(self, u: Tensor, mask: Tensor, cond: Tensor) -> Tensor:
        if u.shape[1] == 0:
            return torch.zeros_like(u)
        return self.net(torch.remainder(u, 1.0), mask, cond)

    def _points(self, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Padded sets ``(B, n_max, d + 1)`` -> (unit-torus coordinates ``(B, n, d)`` trimmed to the largest
        count, mask ``(B, n)``, counts ``(B,)``)."""
        pts, mask = split_points(target)
        pts, mask = trim_padding(pts, mask)
        return pts / self.box_size, mask, mask.sum(-1)

    # ------------------------------------------------------------------ ConditionalModel
    @torch.no_grad()
    def warm_start(self, target: Tensor, context: Tensor | None) -> None:
        """Start every count component at the training sets' mean N (over-dispersed by a factor ~2)."""
        n = split_points(target)[1].sum(-1).to(torch.float64)
        last = self.count_net[-1]
        assert isinstance(last, nn.Linear), "an MLP ends with a Linear layer"
        bias = last.bias
        assert isinstance(bias, Tensor), "the count MLP's Linear layers have a bias"
        k = self.components
        spread = torch.linspace(-0.5, 0.5, k) if k > 1 else torch.zeros(1)
        bias[k : 2 * k] = math.log(max(float(n.mean()), 1.0)) + spread.to(bias)
        bias[2 * k :] = math.log(max(float(n.mean()), 1.0))

    def loss(self, target: Tensor, context: Tensor | None, *, generator: torch.Generator | None = None) -> Tensor:
        """count_weight · mean(-log q(N | c)) + the flow-matching loss: target ``(B, n_max, d + 1)``, context ``(B, C)``."""
        u1, mask, n = self._points(target.reshape(-1, *self.event_shape))
        b = u1.shape[0]
        ctx = self._ctx(context, b, u1)
        nll = -self.count_table(ctx).gather(-1, n[:, None]).squeeze(-1).mean()
        u0 = torch.rand(u1.shape, generator=generator, device=u1.device, dtype=u1.dtype)
        t = training_times(self.config["time_sampling"], b, generator=generator, device=u1.device, dtype=u1.dtype)
        if self.config["coupling"] == "ot":
            u0 = ot_permute(u0, u1, mask)
        delta = wrap_displacement(u1 - u0)
        v = self._velocity(u0 + t[:, None, None] * delta, mask, self._cond(ctx, n, t))
        w = mask[..., None].to(v.dtype)
        fm = ((v - delta) ** 2 * w).sum() / (w.sum() * self.dim).clamp_min(1.0)
        return self.config["count_weight"] * nll + fm

    def log_prob(
        self,
        target: Tensor,
        context: Tensor | None,
        *,
        trace: str | None = None,
        steps: int | None = None,
        solver: str | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """log q(x | c) of padded sets (module docstring): target ``(*B, n_max, d + 1)``, context ``(*B, C)``
        (broadcast) -> ``(*B,)``.

        Raises:
            ValueError: a target of another shape (naming ``(*B, n_max, d + 1)``), or coordinates outside [0, L).
        """
        batch = batch_shape_of(target, self.event_shape, "target")
        if self.context_dim and context is not None:
            batch = torch.broadcast_shapes(batch, context.shape[:-1])
            context = context.expand(*batch, self.context_dim)
        target = target.expand(*batch, *self.event_shape).reshape(-1, *self.event_shape)
        pts, mask = split_points(target)
        if bool(((pts < 0) | (pts >= self.box_size))[mask].any()):
            raise ValueError(f"point coordinates must lie in [0, box_size = {self.box_size:g}); wrap them (x mod L)")
        u1, mask, n = self._points(target)
        b, m = u1.shape[:2]
        ctx = self._ctx(context, b, u1)
        log_n = self.count_table(ctx).gather(-1, n[:, None]).squeeze(-1)
        if m == 0:
            return log_n.reshape(batch)

        def velocity(t: float, y: Tensor) -> Tensor:
            tt = torch.full((b,), t, device=y.device, dtype=y.dtype)
            return self._velocity(y.reshape(b, m, self.dim), mask, self._cond(ctx, n, tt)).reshape(b, m * self.dim)

        cfg = self.config
        _, div = integrate_with_divergence(
            velocity,
            u1.reshape(b, m * self.dim),
            1.0,
            0.0,
            trace=cfg["trace"] if trace is None else trace,
            generator=generator,
            method=cfg["log_prob_solver"] if solver is None else solver,
            steps=check_steps(cfg["log_prob_steps"] if steps is None else steps),
            atol=1e-5,
            rtol=1e-5,
            name="point-cloud velocity",
        )
        log_pos = div - n.to(div.dtype) * self.dim * math.log(self.box_size)
        return (log_n + log_pos).reshape(batch)

    @torch.no_grad()
    def sample(
        self,
        shape: tuple[int, ...],
        context: Tensor | None,
        *,
        generator: torch.Generator | None = None,
        steps: int | None = None,
        solver: str | None = None,
    ) -> Tensor:
        """Draw sets: context ``(*Bc, C)`` -> ``(*shape, *Bc, n_max, d + 1)`` (real points first, mask last)."""
        shape = tuple(shape)
        reps = math.prod(shape)
        like = self.support
        if self.context_dim:
            if context is None:
                raise ValueError(f"this model needs a context (*B, {self.context_dim}); got None")
            bc = tuple(context.shape[:-1])
            ctx = context.to(like).reshape(1, -1, self.context_dim).expand(reps, -1, -1).reshape(-1, self.context_dim)
        else:
            bc, ctx = (), None
        rows = reps * math.prod(bc)
        ctx = self._ctx(ctx, rows, like)
        n = torch.multinomial(self.count_table(ctx).exp(), 1, generator=generator).squeeze(-1)
        m = int(n.max()) if rows else 0
        u = torch.rand(rows, m, self.dim, generator=generator, device=like.device, dtype=like.dtype)
        mask = torch.arange(m, device=like.device) < n[:, None]
        method, steps = solver or self.config["solver"], check_steps(steps or self.config["steps"])
        # sets of similar N together, each group trimmed to its own largest N: cost Σ N², not rows · max N²
        for idx in torch.argsort(n).split(self.SAMPLE_GROUP):
            k = int(n[idx].max())
            if k == 0:
                continue
            ui, mi, ci, ni = u[idx, :k], mask[idx, :k], ctx[idx], n[idx]

            def f(t: float, y: Tensor, mi=mi, ci=ci, ni=ni) -> Tensor:
                tt = torch.full((len(ni),), t, device=y.device, dtype=y.dtype)
                return self._velocity(y.reshape(len(ni), -1, self.dim), mi, self._cond(ci, ni, tt)).reshape(len(ni), -1)

            ui = odeint(f, ui.reshape(len(idx), -1), 0.0, 1.0, method=method, steps=steps, name="point-cloud velocity")
            u[idx, :k] = torch.remainder(ui.reshape(len(idx), k, self.dim), 1.0)
        pos = u * self.box_size
        pos = torch.where(pos >= self.box_size, pos - self.box_size, pos)  # rounding can give exactly L
        out = torch.zeros(rows, self.n_max, self.dim + 1, device=like.device, dtype=like.dtype)
        out[:, :m] = join_points(pos, mask)
        return out.reshape(*shape, *bc, *self.event_shape)
