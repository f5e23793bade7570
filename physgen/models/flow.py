"""Conditional normalizing flows on zuko: neural spline flows (NSF) and masked autoregressive flows (MAF).

A flow is a bijection f_c: R^D -> R^D (conditioned on a context c) pushing the target z
to a standard normal: ``log q(z | c) = log N(f_c(z); 0, I) + log |det ∂f_c/∂z|``. Training
minimises the negative log-likelihood ``-E[log q(z | c)]`` (maximum likelihood / forward KL).
Sampling draws ε ~ N(0, I) and returns ``f_c^{-1}(ε)``.

Default ("nsf"): a linear-Gaussian layer z = L⁻¹(θ - W c - b), then coupling spline transforms (each
transforms one half of the coordinates given the other half and c, one network pass in either
direction, as in Durkan et al.'s coupling NSF and sbi's default), with learned LU-linear mixing
between them. Before training, :meth:`Flow.warm_start` sets the linear layer to the least-squares
(maximum-likelihood) linear-Gaussian fit and the coupling networks' last layers are zero, so training
starts from that Gaussian: a Gaussian posterior with a linear mean is exact from the first step and,
with the initial state competing in early stopping (:func:`physgen.train.fit`), flows on small data sets
no longer overfit away from it. "maf": zuko's masked autoregressive transforms (D network passes per
transform to sample).

The model sees standardised, unconstrained targets (see :mod:`physgen.inference`), so no
sample can leave a bounded prior and sampling never needs rejection.

References: Durkan et al. 2019 (NSF), Papamakarios et al. 2017 (MAF), zuko (Rozet et al.).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import cast

import torch
import zuko
from torch import Tensor, nn
from zuko.distributions import DiagNormal
from zuko.flows.coupling import GeneralCouplingTransform
from zuko.lazy import LazyTransform, UnconditionalDistribution, UnconditionalTransform
from zuko.transforms import LULinearTransform, MonotonicRQSTransform

from physgen.models._coupling import SplineCoupling, spline_tables
from physgen.models._gaussian import least_squares
from physgen.shapes import as_event_shape

__all__ = ["Flow"]


class _RQS(MonotonicRQSTransform):
    """zuko's monotonic rational-quadratic spline with a faster bin normalisation (the knots of
    :func:`physgen.models._coupling.spline_tables`, used by the MAF and one-dimensional flows).

    Identical maths: zuko first squashes the unconstrained widths/heights into
    ``|w| < |log slope| / 2`` (≈ 3.5), so ``exp(w) / Σ exp(w)`` needs no max-subtraction and is written
    out instead of ``torch.softmax`` over the short last axis (what it buys: benchmarks/numerics_vs_zuko.py).
    """

    def __init__(
        self, widths: Tensor, heights: Tensor, derivatives: Tensor, bound: float = 5.0, slope: float = 1e-3, **kwargs
    ) -> None:
        torch.distributions.Transform.__init__(self, **kwargs)
        table = spline_tables(torch.cat([widths, heights, derivatives], -1), widths.shape[-1], bound, slope)
        self.horizontal, self.vertical, self.derivatives = table.unbind(-1)


class _AffineTransform(torch.distributions.Transform):
    """z = L⁻¹ (θ - μ) with L lower triangular (positive diagonal); inverse θ = L z + μ."""

    domain = torch.distributions.constraints.real_vector
    codomain = torch.distributions.constraints.real_vector
    bijective = True

    def __init__(self, loc: Tensor, tril: Tensor, log_diag: Tensor):
        super().__init__()
        self.loc, self.tril, self.log_diag = loc, tril, log_diag

    def _call(self, theta: Tensor) -> Tensor:
        eye = torch.eye(self.tril.shape[-1], dtype=self.tril.dtype, device=self.tril.device)
        inv = torch.linalg.solve_triangular(self.tril, eye, upper=False)
        return (theta - self.loc) @ inv.T

    def _inverse(self, z: Tensor) -> Tensor:
        return z @ self.tril.T + self.loc

    def log_abs_det_jacobian(self, theta: Tensor, z: Tensor) -> Tensor:
        return (-self.log_diag.sum()).expand(theta.shape[:-1])


class _ContextAffine(LazyTransform):
    """First transform on the data side: z = L⁻¹ (θ - (W c + b)), a linear-Gaussian preconditioner.

    The posterior's location moves linearly with the context before the splines see it, so a
    Gaussian posterior with a linear mean (e.g. gaussian_linear) is exact with identity splines and the
    splines only model what is left. :meth:`warm_start` sets W, b and L to the least-squares fit of the
    training targets on the context (the maximum-likelihood linear-Gaussian model).
    """

    def __init__(self, dim: int, context_dim: int):
        super().__init__()
        # W c + b (b alone without a context)
        self.loc = nn.Linear(context_dim, dim) if context_dim > 0 else None
        self.shift = nn.Parameter(torch.zeros(dim)) if context_dim == 0 else None
        if self.loc is not None:
            nn.init.zeros_(self.loc.weight)
            nn.init.zeros_(self.loc.bias)
        self.log_diag = nn.Parameter(torch.zeros(dim))
        self.off_diag = nn.Parameter(torch.zeros(dim, dim))
        self.register_buffer("lower", torch.tril(torch.ones(dim, dim), -1))

    def _tril(self) -> Tensor:
        return self.off_diag * self.lower + torch.diag(self.log_diag.exp())

    def forward(self, c: Tensor | None = None) -> torch.distributions.Transform:
        loc = self.loc(c) if self.loc is not None else self.shift
        assert loc is not None  # shift exists exactly when loc does not (no context)
        return _AffineTransform(loc, self._tril(), self.log_diag)

    @torch.no_grad()
    def warm_start(self, target: Tensor, context: Tensor | None) -> None:
        """Least squares of target ``(n, D)`` on context ``(n, C)``; L = Cholesky of the residual covariance."""
        weight, bias, cov = least_squares(target, context if self.loc is not None else None)
        if self.loc is not None:
            self.loc.weight.copy_(weight)
            self.loc.bias.copy_(bias)
        else:
            assert self.shift is not None  # shift exists exactly when loc does not (no context)
            self.shift.copy_(bias)
        chol = torch.linalg.cholesky(cov + 1e-6 * torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device))
        self.log_diag.copy_(chol.diagonal().log())
        self.off_diag.copy_(torch.tril(chol, -1))


def _identity_init(layer: nn.Module) -> nn.Module:
    """Zero the conditioner's last layer: zero spline / affine parameters, so the transform starts as the
    identity map (an untrained flow with ``affine=True`` is then exactly its linear-Gaussian layer)."""
    weighted = [m for m in layer.modules() if isinstance(getattr(m, "weight", None), nn.Parameter)]
    last = cast(nn.Linear, weighted[-1])  # the conditioner MLP's output layer
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return layer


def _build(
    dim: int,
    context_dim: int,
    kind: str,
    transforms: int,
    hidden: tuple[int, ...],
    bins: int,
    coupling: bool,
    affine: bool,
) -> zuko.flows.Flow:
    """[linear-Gaussian layer] + transforms (coupling: alternating halves with LU mixing between; or
    zuko's masked autoregressive transforms), listed from the data side to the base N(0, I)."""
    uni = dict(univariate=partial(_RQS, slope=1e-3), shapes=[(bins,), (bins,), (bins - 1,)]) if kind == "nsf" else {}
    layers: list = [_ContextAffine(dim, context_dim)] if affine else []
    if coupling:
        for i in range(transforms):
            mask = torch.arange(dim) % 2 == i % 2
            act = partial(nn.ReLU, inplace=True)
            if kind == "nsf" and dim > 1:  # zuko's coupling RQS maths in fewer tensor operations
                layer = SplineCoupling(
                    dim, context_dim, mask, bins=bins, slope=1e-3, hidden_features=hidden, activation=act
                )
            else:
                layer = GeneralCouplingTransform(
                    dim, context_dim, mask=mask, hidden_features=hidden, activation=act, **uni
                )
            layers.append(_identity_init(layer))
            if dim > 1 and i < transforms - 1:
                layers.append(UnconditionalTransform(LULinearTransform, torch.eye(dim), buffer=False))
    else:
        # zuko's NSF is MAF with a spline univariate transform (same module tree and state dict)
        made = zuko.flows.MAF(dim, context=context_dim, transforms=transforms, hidden_features=hidden, **uni)
        layers.extend(_identity_init(t) for t in made.transform.transforms)
    base = UnconditionalDistribution(DiagNormal, torch.zeros(dim), torch.ones(dim), buffer=True)
    return zuko.flows.Flow(layers, base)


class Flow(nn.Module):
    """Conditional NSF or MAF on vector targets ``(D,)`` (zuko flows are vector-only).

    Args:
        event_shape: ``(D,)`` or an int D; any other shape is a ValueError that names the families for fields.
        context_dim: context dimension C (0 = unconditional).
        kind: "nsf" (rational-quadratic splines) or "maf" (affine).
        transforms: number of coupling / autoregressive transforms.
        hidden_features: hidden layer widths of each transform's conditioner network.
        bins: spline bins (NSF only).
        coupling: coupling transforms (alternating halves, LU mixing between; one network pass per
            transform both ways) instead of masked autoregressive ones (D network passes to sample).
        affine: a linear-Gaussian first layer z = L⁻¹(θ - W c - b), set by least squares before
            training (:meth:`warm_start`); the other transforms start at the identity.

    Defaults ("nsf"): 5 coupling spline transforms of [128, 128] with 10 bins after the linear-Gaussian
    layer; "maf" is registered with ``coupling=False`` (masked autoregressive, as its name says).
    How the defaults were chosen: docs/flows.md.
    """

    # hooks declared in physgen.core.ConditionalModel; the measurements behind them: docs/flows.md, docs/npe.md
    fit_defaults = {"batch_size": 512, "ema": 0.999}
    default_transform = "none"
    sample_block = 4096

    def __init__(
        self,
        event_shape: int | tuple[int, ...],
        context_dim: int,
        *,
        kind: str = "nsf",
        transforms: int = 5,
        hidden_features: Sequence[int] = (128, 128),
        bins: int = 10,
        coupling: bool = True,
        affine: bool = True,
    ):
        super().__init__()
        if kind not in ("nsf", "maf"):
            raise ValueError(f"Flow kind must be 'nsf' or 'maf'; got {kind!r}")
        event_shape = as_event_shape(event_shape)
        if len(event_shape) != 1:
            raise ValueError(
                f"the {kind!r} family (a zuko normalizing flow) supports vector targets (D,) only; got event shape "
                f"{event_shape}: for fields use 'flow_matching' or 'diffusion' (with a U-Net), or flatten the target"
            )
        if context_dim < 0:
            raise ValueError(f"Flow needs context_dim >= 0; got context_dim={context_dim}")
        dim = event_shape[0]
        self.name = kind
        self.event_shape = event_shape
        self.dim, self.context_dim = dim, context_dim
        self.config = {
            "event_shape": [dim],
            "context_dim": context_dim,
            "transforms": transforms,
            "hidden_features": list(hidden_features),
            "bins": bins,
            "coupling": bool(coupling),
            "affine": bool(affine),
        }
        self.flow = _build(dim, context_dim, kind, transforms, tuple(hidden_features), bins, coupling, affine)

    def _dist(self, context: Tensor):
        return self.flow(context if self.context_dim > 0 else None)

    @torch.no_grad()
    def warm_start(self, target: Tensor, context: Tensor) -> None:
        """Set the linear-Gaussian layer (``affine=True``) to the least-squares fit of target ``(n, D)``
        on context ``(n, C)``; with zero-initialised splines the flow then starts as that Gaussian."""
        first = self.flow.transform.transforms[0]
        if isinstance(first, _ContextAffine):
            first.warm_start(target, context if self.context_dim > 0 else None)

    def loss(self, target: Tensor, context: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Mean negative log-likelihood. target ``(B, D)``, context ``(B, C)`` -> scalar (deterministic:
        ``generator`` is accepted for the ConditionalModel contract and not used)."""
        return -self._dist(context).log_prob(target).mean()

    def log_prob(self, target: Tensor, context: Tensor) -> Tensor:
        """target ``(*B, D)``, context ``(*B, C)`` (broadcastable) -> ``(*B,)``."""
        if self.context_dim > 0:
            batch = torch.broadcast_shapes(target.shape[:-1], context.shape[:-1])
            target = target.expand(*batch, self.dim)
            context = context.expand(*batch, self.context_dim)
        return self._dist(context).log_prob(target)

    def sample(self, shape: tuple[int, ...], context: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """context ``(*Bc, C)`` -> samples ``(*shape, *Bc, D)``."""
        batch = tuple(context.shape[:-1]) if self.context_dim > 0 else ()
        dist = self._dist(context)
        eps = torch.randn((*shape, *batch, self.dim), generator=generator, device=context.device, dtype=context.dtype)
        base = dist.base.base_dist  # zuko DiagNormal (standard normal for NSF/MAF)
        return dist.transform.inv(eps * base.scale + base.loc)
