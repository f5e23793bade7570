"""Amortized posteriors q(θ | x): an encoder, a conditional model and the maps around them.

Pipeline for a parameter θ ``(*B, D)`` and an observation x ``(*B, *x_shape)``:

    u = T⁻¹(θ)               T: R^D -> support(prior) (physgen.priors.to_unconstrained)
    z = (u - μ_u) / σ_u      per-component standardisation of the training u
    c = encoder((x - μ_x) / σ_x)

and ``log q(θ | x) = log q_model(z | c) - Σ log σ_u - log |det ∂T/∂u|``.

Two treatments of a bounded prior (``transform``):

- ``"none"`` (the flows' default in :func:`fit_posterior`): T is the identity, the model works in (standardised)
  θ space. Samples outside the support are rejected within a time budget (``max_time``; a
  :class:`SamplingError` says so instead of hanging) and ``Posterior.acceptance_rate`` reports the
  acceptance rate; ``log_prob`` is renormalised to the support by the model's mass inside it.
- ``"unconstrained"``: T maps R^D onto the support (a logit per bounded component, a log for a half-line),
  so samples always lie in the support without rejection (flow matching's and diffusion's default: in θ
  space they reach only C2ST 0.77-0.79 on two moons, not investigated further). For a flow on two moons
  (a box prior) this trains slower and less accurately: C2ST 0.549-0.554 in 54-57 s against 0.538-0.542
  in 30-36 s with ``"none"`` (docs/benchmarks.md); the logit stretches the box's interior unevenly and
  gives the standardised training θ logistic tails.

x standardisation follows the encoder's ``x_standardization`` attribute: "feature"
(per-element mean/std; the default without an encoder), "global" (one scalar, for fields)
or "none" (point sets with a mask column).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from physgen.core import batch_shape_of
from physgen.data import SimulationSet
from physgen.io import load_file, save_file
from physgen.models import build_model
from physgen.priors import is_bounded, prior_from_dict, prior_to_dict, to_unconstrained
from physgen.train import fit, resolve_device

__all__ = ["Posterior", "fit_posterior", "load", "SamplingError"]


_SAMPLE_BLOCK = 16_384  # rows per model.sample call on CPU, for a model without its own ``sample_block``

# model options added after files were first written, with the behaviour those files had
_ADDED_OPTIONS = {
    "nsf": {"coupling": False, "affine": False},
    "maf": {"coupling": False, "affine": False},
    "flow_matching": {"gaussian_base": False},
    "diffusion": {"gaussian_base": False},
}


class SamplingError(RuntimeError):
    """Sampling could not produce the requested samples (e.g. rejection acceptance too low)."""


class _Flatten(nn.Module):
    """Identity encoder for vector (or small) observations: ``(*B, *x_shape) -> (*B, prod(x_shape))``."""

    name = "flatten"
    x_standardization = "feature"

    def __init__(self, x_shape: tuple[int, ...]):
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.out_features = math.prod(self.x_shape)
        self.config = {"x_shape": list(self.x_shape)}

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return x.reshape(*x.shape[: x.dim() - len(self.x_shape)], self.out_features)


def _build_encoder(name: str, config: dict) -> nn.Module:
    if name == "flatten":
        return _Flatten(tuple(config["x_shape"]))
    from physgen.nn import build_encoder

    return build_encoder(name, **config)


class Posterior(nn.Module):
    """q(θ | x) = encoder + conditional model + standardisation + prior bijection.

    Build it with :func:`fit_posterior`; load it with :func:`physgen.load`.
    """

    def __init__(
        self,
        model: nn.Module,
        encoder: nn.Module,
        theta_dim: int,
        x_shape: tuple[int, ...],
        prior: Distribution | None = None,
        transform: str = "unconstrained",
    ):
        super().__init__()
        if transform not in ("unconstrained", "none"):
            raise ValueError(f"transform must be 'unconstrained' or 'none'; got {transform!r}")
        self.model, self.encoder = model, encoder
        self.theta_dim, self.x_shape = int(theta_dim), tuple(x_shape)
        self.transform = transform
        self._prior_spec = prior_to_dict(prior) if prior is not None else None
        if prior is not None and self._prior_spec is None:
            raise ValueError(f"unsupported prior {prior!r}: use BoxUniform, LogUniform, MultivariateNormal or Joint")
        self._priors: dict[str, tuple[Distribution, object]] = {}
        xs = self.x_shape if getattr(encoder, "x_standardization", "feature") == "feature" else ()
        self.register_buffer("u_shift", torch.zeros(self.theta_dim))
        self.register_buffer("u_scale", torch.ones(self.theta_dim))
        self.register_buffer("x_shift", torch.zeros(xs))
        self.register_buffer("x_scale", torch.ones(xs))
        self.acceptance_rate: float | None = None
        self._mass_cache: tuple | None = None  # (key, mass) of the last support-mass estimate (log_prob)

    # ------------------------------------------------------------------ maps
    @property
    def prior(self) -> Distribution | None:
        """The prior, with its tensors on the module's device."""
        return self._prior_and_T()[0]

    @property
    def _T(self):
        return self._prior_and_T()[1]

    def _prior_and_T(self):
        if self._prior_spec is None:
            return None, None
        dev = self.u_shift.device
        if str(dev) not in self._priors:
            prior = prior_from_dict(self._prior_spec, dev)
            self._priors[str(dev)] = (prior, to_unconstrained(prior) if self.transform == "unconstrained" else None)
        return self._priors[str(dev)]

    def _to_u(self, theta: Tensor) -> Tensor:
        return self._T.inv(theta) if self._T is not None else theta

    def _standardize(self, u: Tensor) -> Tensor:
        """Unconstrained θ ``(*B, D)`` -> the model's standardised target ``(*B, D)``."""
        return (u - self.u_shift) / self.u_scale

    def standardize(self, theta: Tensor, x: Tensor) -> None:
        """Set the standardisation from training data θ ``(n, D)``, x ``(n, *x_shape)``."""
        with torch.no_grad():
            u = self._to_u(theta.to(self.u_shift))
            self.u_shift.copy_(u.mean(0))
            self.u_scale.copy_(u.std(0).clamp_min(1e-6))
            mode = getattr(self.encoder, "x_standardization", "feature")
            x = x.to(self.u_shift)
            if mode == "feature":
                sd = x.std(0)
                self.x_shift.copy_(x.mean(0))
                self.x_scale.copy_(torch.where(sd > 1e-8, sd, torch.ones_like(sd)))
            elif mode == "global":
                self.x_shift.fill_(float(x.mean()))
                self.x_scale.fill_(max(float(x.std()), 1e-8))

    def context(self, x: Tensor) -> Tensor:
        """Encode observations ``(*B, *x_shape) -> (*B, E)``."""
        batch_shape_of(x, self.x_shape, "x")
        if getattr(self.encoder, "x_standardization", "feature") != "none":
            x = (x - self.x_shift) / self.x_scale
        return self.encoder(x)

    # ------------------------------------------------------------------ training
    def loss(self, theta: Tensor, x: Tensor) -> Tensor:
        """Training loss of the model on standardised targets: theta ``(B, D)``, x ``(B, *x_shape)``."""
        return self.model.loss(self._standardize(self._to_u(theta)), self.context(x))

    @torch.no_grad()
    def warm_start(self, theta: Tensor, x: Tensor) -> None:
        """Called by :func:`physgen.train.fit` with the training split before the first epoch: lets the
        model set data-dependent initial values (e.g. a flow's linear-Gaussian layer)."""
        if hasattr(self.model, "warm_start"):
            self.model.warm_start(self._standardize(self._to_u(theta)), self.context(x))

    # ------------------------------------------------------------------ inference
    def _check_theta(self, theta: Tensor) -> None:
        batch_shape_of(theta, (self.theta_dim,), "theta")

    def log_prob(self, theta: Tensor, x: Tensor, *, normalize: bool = True, mass_samples: int = 10_000) -> Tensor:
        """log q(θ | x). theta ``(*B, D)``, x ``(*B, *x_shape)`` (broadcast) -> ``(*B,)``.

        θ outside the prior's support gets ``-inf``. With ``transform="none"`` and a bounded prior, the
        model's density is renormalised to the support: ``normalize=True`` subtracts log P_q(θ ∈ support | x),
        estimated per distinct observation from ``mass_samples`` model samples (fixed seed: deterministic;
        the estimate's relative error is about sqrt((1 - P) / (P n))). ``normalize=False`` skips it.
        """
        self._check_theta(theta)
        dev = self.u_shift.device
        theta, x = theta.to(dev, self.u_shift.dtype), x.to(dev, self.u_shift.dtype)
        c = self.context(x)
        inside = self.prior.support.check(theta) if self.prior is not None else torch.ones(theta.shape[:-1], dtype=torch.bool, device=dev)
        safe = torch.where(inside.unsqueeze(-1), theta, self._safe_point(theta))
        u = self._to_u(safe)
        z = self._standardize(u)
        lp = self.model.log_prob(z, c) - self.u_scale.log().sum()
        if self._T is not None:
            lp = lp - self._T.log_abs_det_jacobian(u, safe)
        if normalize and self._T is None and self.prior is not None and is_bounded(self.prior):
            lp = lp - self._log_mass_inside(c.detach(), mass_samples)
        return torch.where(inside, lp, torch.full_like(lp, -math.inf))

    @torch.no_grad()
    def _log_mass_inside(self, c: Tensor, n: int) -> Tensor:
        """log P_q(θ ∈ support | x) for contexts ``(*Bc, E)`` -> ``(*Bc,)``: Monte Carlo over n model samples for
        each distinct context row (at least one inside sample is assumed: the estimate is >= log(1/n))."""
        if n < 1:
            raise ValueError(f"mass_samples must be >= 1; got {n}")
        flat = c.reshape(-1, c.shape[-1])
        unique, inverse = torch.unique(flat, dim=0, return_inverse=True)
        # the last estimate is reused while the weights are unchanged (parameter version counters move with
        # every in-place update), so repeated calls for one observation (MCMC, grids) sample once
        key = (n, str(c.device), unique.cpu().numpy().tobytes(), tuple(p._version for p in self.parameters()))
        if self._mass_cache is not None and self._mass_cache[0] == key:
            mass = self._mass_cache[1]
        else:
            generator = torch.Generator(device=c.device).manual_seed(0)
            rows = max(1, _SAMPLE_BLOCK * 4 // n)
            mass = torch.cat([
                self.prior.support.check(self._draw(n, unique[i : i + rows], generator, {})).double().mean(0)
                for i in range(0, unique.shape[0], rows)
            ])
            self._mass_cache = (key, mass)
        return mass.clamp_min(1.0 / n).log().to(c.dtype)[inverse].reshape(c.shape[:-1])

    def _safe_point(self, theta: Tensor) -> Tensor:
        return self._T(self.u_shift).expand_as(theta) if self._T is not None else self.u_shift.expand_as(theta)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        x: Tensor,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        max_time: float = 60.0,
        **sample_options,
    ) -> Tensor:
        """Draw n posterior samples per observation.

        Args:
            n: samples per observation.
            x: one observation ``x_shape`` -> returns ``(n, D)``; a batch ``(B, *x_shape)`` -> ``(n, B, D)``.
            seed / generator: randomness (a seed makes a generator on the model's device).
            max_time: time budget in seconds for rejection sampling (transform="none" only).
            **sample_options: passed to the model's sample (e.g. ``steps`` for ODE-based families).
        """
        x = torch.as_tensor(x)
        bshape = batch_shape_of(x, self.x_shape, "x")
        if len(bshape) > 1:
            raise ValueError(f"x must be one observation {self.x_shape} or a batch (B, *{self.x_shape}); got {tuple(x.shape)}")
        dev = self.u_shift.device
        if generator is None and seed is not None:
            generator = torch.Generator(device=dev).manual_seed(seed)
        c = self.context(x.to(dev, self.u_shift.dtype))
        if self.transform == "unconstrained" or self.prior is None:
            theta = self._draw(n, c, generator, sample_options)
            self.acceptance_rate = 1.0
            return theta
        return self._rejection(n, c, generator, max_time, sample_options)

    def _draw(self, n: int, c: Tensor, generator, options) -> Tensor:
        # blocks of a few thousand rows keep the networks' activations in cache: on one CPU core 1.1x (NSF,
        # 4096 rows) to 1.6x (flow matching, diffusion: 1024-2048 rows) faster than 16k-row blocks, and those
        # 1.2-1.5x faster than one 100k-row pass (docs/benchmarks.md)
        rows = max(1, math.prod(c.shape[:-1]))
        block = getattr(self.model, "sample_block", _SAMPLE_BLOCK)
        step = max(1, block // rows) if c.device.type == "cpu" else n
        parts = [self.model.sample((min(step, n - i),), c, generator=generator, **options) for i in range(0, max(n, 1), step)]
        z = torch.cat(parts) if len(parts) > 1 else parts[0]
        u = z * self.u_scale + self.u_shift
        return self._T(u) if self._T is not None else u

    def _rejection(self, n: int, c: Tensor, generator, max_time: float, options) -> Tensor:
        t0, accepted, tried = time.perf_counter(), [], 0
        count = torch.zeros(c.shape[:-1], dtype=torch.long, device=c.device)
        m = n
        while True:
            th = self._draw(m, c, generator, options)
            ok = self.prior.support.check(th)
            tried += m
            accepted.append((th, ok))
            count += ok.sum(0)
            if bool((count >= n).all()):
                break
            # next round: what the worst observation still lacks at its acceptance rate so far (+10%), not n again
            low = int(count.min())
            m = n if low == 0 else min(16 * n, math.ceil(1.1 * (n - low) * tried / low) + 16)
            if time.perf_counter() - t0 > max_time:
                rate = float(count.min()) / tried
                self.acceptance_rate = rate
                raise SamplingError(
                    f"rejection sampling accepted only {rate:.2e} of proposals within max_time={max_time}s; the "
                    "posterior puts most mass outside the prior: retrain with transform='unconstrained' or raise max_time"
                )
        th = torch.cat([a for a, _ in accepted]).movedim(0, -2)  # (*Bc, T, D)
        ok = torch.cat([o for _, o in accepted]).movedim(0, -1)  # (*Bc, T)
        order = torch.argsort((~ok).to(torch.int8), dim=-1, stable=True)[..., :n]
        out = torch.gather(th, -2, order.unsqueeze(-1).expand(*order.shape, th.shape[-1]))
        self.acceptance_rate = float(ok.float().mean())
        return out.movedim(-2, 0)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Save to one safetensors file (weights) with a JSON header (architecture, prior); never pickled."""
        config = {
            "theta_dim": self.theta_dim,
            "x_shape": list(self.x_shape),
            "transform": self.transform,
            "prior": self._prior_spec,
            "model": {"name": self.model.name, "config": self.model.config},
            "encoder": {"name": self.encoder.name, "config": self.encoder.config},
        }
        return save_file(path, self.state_dict(), kind="posterior", config=config)

    @classmethod
    def _from_file(cls, tensors: dict[str, Tensor], config: dict) -> Posterior:
        model_config = dict(config["model"]["config"])
        for key, before in _ADDED_OPTIONS.get(config["model"]["name"], {}).items():
            model_config.setdefault(key, before)  # files written before the option existed
        model = build_model(config["model"]["name"], **model_config)
        encoder = _build_encoder(config["encoder"]["name"], config["encoder"]["config"])
        prior = prior_from_dict(config["prior"]) if config.get("prior") else None
        post = cls(model, encoder, config["theta_dim"], tuple(config["x_shape"]), prior, config["transform"])
        missing, unexpected = post.load_state_dict(tensors, strict=False)
        if missing or unexpected:
            from physgen.io import CheckpointError

            raise CheckpointError(f"checkpoint does not match its architecture (missing {missing}, unexpected {unexpected})")
        post.eval()
        return post


def fit_posterior(
    data: SimulationSet,
    *,
    model: str = "nsf",
    encoder: nn.Module | None = None,
    prior: Distribution | None = None,
    transform: str = "auto",
    model_options: dict | None = None,
    device: str = "auto",
    **fit_options,
) -> Posterior:
    """Neural posterior estimation: train q(θ | x) on simulated pairs.

    Args:
        data: a SimulationSet (θ ``(n, D)``, x ``(n, *x_shape)``).
        model: "nsf" (default), "maf", "flow_matching", "flow_matching_fast" or "diffusion".
        encoder: a summary network (physgen.nn); None flattens x.
        prior: the prior (default: the one recorded in ``data.meta``).
        transform: "none" (the model works in θ space; rejection against a bounded prior's support with a
            time budget), "unconstrained" (the model works in a space mapped onto the support) or "auto"
            (default: the family's ``default_transform``: "none" for flows, "unconstrained" for flow matching
            and diffusion, as measured on two moons, docs/benchmarks.md).
        model_options: hyperparameters of the model family.
        device: "auto", "cpu", "cuda".
        **fit_options: passed to :func:`physgen.train.fit` (batch_size, lr, max_epochs, patience, seed, ...); a
            model family's ``fit_defaults`` (flows: batch_size 512) apply where not given. ``seed`` (default 0)
            also sets the model's initial weights, so the same data and seed give the same posterior.

    Returns:
        The trained Posterior, in eval mode; ``posterior.fit_result`` holds the training history.
    """
    if prior is None and data.meta.get("prior"):
        prior = prior_from_dict(data.meta["prior"])
    theta, x = data.theta.float(), data.x.float()
    x_shape = tuple(x.shape[1:])
    enc = encoder if encoder is not None else _Flatten(x_shape)
    # the initial weights follow ``seed`` too (same seed, same posterior), without touching the caller's RNG
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(fit_options.get("seed", 0))
        net = build_model(model, theta.shape[1], enc.out_features, **(model_options or {}))
    if transform == "auto":
        transform = getattr(net, "default_transform", "unconstrained")
    post = Posterior(net, enc, theta.shape[1], x_shape, prior, transform)
    if prior is not None:
        bad = ~prior.support.check(theta)
        if bool(bad.any()):
            raise ValueError(f"{int(bad.sum())} training θ lie outside the prior's support; check the prior passed in")
    post.standardize(theta, x)
    dev = resolve_device(device)
    post.to(dev)
    fit_options.setdefault("progress", False)
    for key, value in getattr(net, "fit_defaults", {}).items():
        fit_options.setdefault(key, value)
    post.fit_result = fit(post, (theta, x), device=dev, **fit_options)
    return post


def load(path: str | Path) -> Posterior:
    """Load a saved Posterior (or later: Emulator). Nothing is unpickled."""
    tensors, meta = load_file(path)
    if meta.get("kind") == "posterior":
        return Posterior._from_file(tensors, meta["config"])
    from physgen.io import CheckpointError

    raise CheckpointError(f"{path} holds a {meta.get('kind')!r}; physgen.load reads 'posterior' files")
