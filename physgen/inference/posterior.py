"""Amortized posteriors q(θ | x): the conditional estimator with θ as target and x as context.

Two treatments of a bounded prior (``transform``):

- ``"none"``: the model works in (standardised) θ space. Samples outside the support are rejected within a
  time budget (``max_time``; a :class:`SamplingError` says so instead of hanging) and
  ``Posterior.acceptance_rate`` reports the acceptance rate; ``log_prob`` is renormalised to the support by
  the model's mass inside it.
- ``"unconstrained"``: T maps R^D onto the support (a logit per bounded component, a log for a half-line),
  so samples always lie in the support without rejection.

``fit_posterior(..., transform="auto")`` takes the model family's ``default_transform``. Which treatment suits
which family, as measured: docs/npe.md and docs/flow_matching_diffusion.md.
"""

from __future__ import annotations

import math
import time
import warnings

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, constraints

from physgen import checks
from physgen.inference.estimator import ConditionalEstimator
from physgen.priors import is_bounded, prior_from_dict, prior_spec, support_of, to_unconstrained
from physgen.shapes import batch_shape_of

__all__ = ["Posterior", "SamplingError", "FAR_OUTSIDE"]

FAR_OUTSIDE = 10.0  # an observation this many training standard deviations from the mean is warned about
REJECTION_GIVE_UP = 100_000  # rejection sampling stops when an observation has accepted none of this many draws


class SamplingError(RuntimeError):
    """Sampling could not produce the requested samples (e.g. rejection acceptance too low)."""


class Posterior(ConditionalEstimator):
    """q(θ | x): a conditional estimator whose target is θ ``(D,)`` and whose context is x ``x_shape``.

    Build it with :func:`physgen.fit_posterior`; load it with :func:`physgen.load`.

    Args:
        model: a conditional model with event shape ``(D,)`` and context size ``encoder.out_features``.
        encoder: the summary network of x.
        theta_dim: D.
        x_shape: the event shape of one observation.
        prior: the prior (BoxUniform, LogUniform, LogNormal, MultivariateNormal or Joint), or None.
        transform: "unconstrained" or "none" (module docstring).
    """

    kind = "posterior"
    _context_name = "x"

    def __init__(
        self,
        model: nn.Module,
        encoder: nn.Module,
        theta_dim: int,
        x_shape: tuple[int, ...],
        prior: Distribution | None = None,
        transform: str = "unconstrained",
    ):
        if transform not in ("unconstrained", "none"):
            raise ValueError(f"transform must be 'unconstrained' or 'none'; got {transform!r}")
        super().__init__(model, encoder, (int(theta_dim),), tuple(x_shape), target_standardization="feature")
        self.theta_dim, self.x_shape = int(theta_dim), tuple(x_shape)
        self.transform = transform
        self._prior_spec = prior_spec(prior)
        self._priors: dict[str, tuple[Distribution, object]] = {}
        self.acceptance_rate: float | None = None
        self._mass_cache: tuple | None = None  # (key, mass) of the last support-mass estimate (log_prob)
        self._far_z = 0.0  # how far (training standard deviations) the last observation lay from the training mean

    # ------------------------------------------------------------------ maps
    @property
    def prior(self) -> Distribution | None:
        """The prior, with its tensors on the module's device."""
        return self._prior_and_T()[0]

    @property
    def target_transform(self):
        return self._prior_and_T()[1]

    def _prior_and_T(self):
        if self._prior_spec is None:
            return None, None
        dev = self.target_shift.device
        if str(dev) not in self._priors:
            prior = prior_from_dict(self._prior_spec, dev)
            self._priors[str(dev)] = (prior, to_unconstrained(prior) if self.transform == "unconstrained" else None)
        return self._priors[str(dev)]

    # ------------------------------------------------------------------ training
    def loss(self, theta: Tensor, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Training loss on a batch: theta ``(B, D)``, x ``(B, *x_shape)`` -> scalar."""
        return self._model_loss(theta, x, generator)

    def warm_start(self, theta: Tensor, x: Tensor) -> None:
        """Called by :func:`physgen.fit` before the first epoch: the model's data-dependent initial values."""
        self._model_warm_start(theta, x)

    def standardize_from(self, theta: Tensor, x: Tensor) -> None:
        """Set the standardisation from training rows theta ``(n, D)``, x ``(n, *x_shape)``."""
        self.standardize(theta, x)

    # ------------------------------------------------------------------ inference
    def log_prob(self, theta: Tensor, x: Tensor, *, normalize: bool = True, mass_samples: int = 10_000) -> Tensor:
        """log q(θ | x). theta ``(*B, D)``, x ``(*B, *x_shape)`` (broadcast) -> ``(*B,)``.

        θ outside the prior's support gets ``-inf``. With ``transform="none"`` and a bounded prior, the
        model's density is renormalised to the support: ``normalize=True`` subtracts log P_q(θ ∈ support | x),
        estimated per distinct observation from ``mass_samples`` model samples (fixed seed: deterministic;
        the estimate's relative error is about sqrt((1 - P) / (P n))). ``normalize=False`` skips it.

        Raises:
            ValueError: θ or x holds NaN/inf (the positions named).
            SamplingError: the density is NaN (e.g. NaN weights); it is never returned silently.
        """
        batch_shape_of(theta, (self.theta_dim,), "theta")
        checks.check_finite(theta, "theta")
        checks.check_finite(torch.as_tensor(x), "x")
        ref = self.target_shift
        theta, x = theta.to(ref.device, ref.dtype), torch.as_tensor(x).to(ref.device, ref.dtype)
        self._warn_far(x)
        c = self.encode(x)
        prior, T = self._prior_and_T()
        inside = (
            prior.support.check(theta)
            if prior is not None
            else torch.ones(theta.shape[:-1], dtype=torch.bool, device=ref.device)
        )
        safe = torch.where(inside.unsqueeze(-1), theta, self._safe_point(theta))
        u = self._to_u(safe)
        lp = self._model_log_prob(u, c)
        if T is not None:
            lp = lp - T.log_abs_det_jacobian(u, safe)
        if normalize and T is None and prior is not None and is_bounded(prior):
            lp = lp - self._log_mass_inside(c.detach(), mass_samples, support_of(prior))
        lp = torch.where(inside, lp, torch.full_like(lp, -math.inf))
        if bool(torch.isnan(lp).any()):
            raise SamplingError(
                f"log_prob is NaN for {int(torch.isnan(lp).sum())} of {lp.numel()} (θ, x) pairs: {self._nan_cause()}"
            )
        return lp

    def _nan_cause(self) -> str:
        if any(
            not bool(torch.isfinite(t).all()) for t in (*self.parameters(), *self.buffers()) if t.is_floating_point()
        ):
            return (
                "the posterior's weights or standardisation hold NaN/inf (a diverged training run or a damaged "
                "file): train it again"
            )
        return "the model is numerically unstable for these inputs (x far outside the training data?)"

    def _warn_far(self, x: Tensor) -> None:
        """Warn when an observation lies more than FAR_OUTSIDE training standard deviations from the training mean.

        Per feature ("feature" standardisation, vectors): the largest |z| of any element. One shift and scale for
        every element ("global", fields and lattices): the root-mean-square z over the elements of each
        observation, since a single pixel of a heavy-tailed field (an N-body map, a lognormal field) lies more
        than 10 σ out in ordinary training data, while a field scaled or shifted out of the training range
        moves the whole map.
        """
        self._far_z = 0.0
        if self.context_standardization not in ("feature", "global") or x.numel() == 0:
            return
        z = (x - self.context_shift) / self.context_scale
        if self.context_standardization == "global" and self.x_shape:
            rms = z.reshape(*z.shape[: z.dim() - len(self.x_shape)], -1).square().mean(-1).sqrt()
            self._far_z = float(rms.max())
            what = "a root-mean-square"
        else:
            self._far_z = float(z.abs().max())
            what = "a value"
        if self._far_z > FAR_OUTSIDE:
            warnings.warn(
                f"x lies far outside the training data ({what} {self._far_z:.3g} training standard deviations "
                "from the training mean): the posterior there is an extrapolation, not an inference",
                stacklevel=3,
            )

    @torch.no_grad()
    def _log_mass_inside(self, c: Tensor, n: int, support: constraints.Constraint) -> Tensor:
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
            rows = max(1, 16_384 * 4 // n)
            mass = torch.cat(
                [
                    support.check(self._draw(n, unique[i : i + rows], generator, {})).double().mean(0)
                    for i in range(0, unique.shape[0], rows)
                ]
            )
            self._mass_cache = (key, mass)
        return mass.clamp_min(1.0 / n).log().to(c.dtype)[inverse].reshape(c.shape[:-1])

    def _safe_point(self, theta: Tensor) -> Tensor:
        T = self.target_transform
        return T(self.target_shift).expand_as(theta) if T is not None else self.target_shift.expand_as(theta)

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

        Returns:
            ``(n, D)`` or ``(n, B, D)``; n = 0 gives an empty tensor of that shape.

        Raises:
            TypeError, ValueError: n is not an int >= 0; x holds NaN/inf (the positions named); the result
                would exceed :data:`physgen.checks.MAX_SAMPLE_BYTES`.
            SamplingError: rejection sampling accepted too few samples within ``max_time``, or the model drew
                NaN/inf (e.g. NaN weights).

        An x more than :data:`FAR_OUTSIDE` training standard deviations from the training mean is warned about.
        """
        n = checks.check_count(n, "n")
        x = torch.as_tensor(x)
        checks.check_finite(x, "x")
        c, bshape = self._encoded_observations(x, "x")
        checks.check_sample_size(n, math.prod(bshape), self.theta_dim)
        self._warn_far(x.to(c.device, c.dtype))
        if n == 0:
            return torch.empty(0, *bshape, self.theta_dim, device=c.device, dtype=c.dtype)
        if generator is None and seed is not None:
            generator = torch.Generator(device=c.device).manual_seed(seed)
        if self.transform == "unconstrained" or self.prior is None:
            theta = self._draw(n, c, generator, sample_options)
            self._check_draws(theta)
            self.acceptance_rate = 1.0
            return theta
        return self._rejection(n, c, generator, max_time, sample_options)

    def _check_draws(self, theta: Tensor) -> None:
        if not bool(torch.isfinite(theta).all()):
            raise SamplingError(f"the model drew NaN/inf θ: {self._nan_cause()}")

    # sbi's keywords that have no meaning here (sbi.diagnostics passes show_progress_bars)
    _SBI_IGNORED = ("show_progress_bars", "max_sampling_batch_size", "reject_outside_prior")

    @torch.no_grad()
    def sample_batched(
        self, sample_shape, x: Tensor, *, seed: int | None = None, generator: torch.Generator | None = None, **kwargs
    ) -> Tensor:
        """sbi's batched sampling signature, so ``sbi.diagnostics.run_sbc``/``run_tarp`` accept this posterior.

        Args:
            sample_shape: an int or a tuple ``(S1, ...)`` of draws per observation.
            x: observations ``(B, *x_shape)`` (one observation ``x_shape`` counts as B = 1).
            seed / generator: as :meth:`sample` (neither: torch's global RNG, as sbi).
            **kwargs: ``max_sampling_time`` (-> ``max_time``); sbi's ``show_progress_bars``,
                ``max_sampling_batch_size`` and ``reject_outside_prior`` are ignored; the rest go to :meth:`sample`.

        Returns:
            ``(*sample_shape, B, D)``.
        """
        shape = (int(sample_shape),) if isinstance(sample_shape, int) else tuple(int(s) for s in sample_shape)
        for k in self._SBI_IGNORED:
            kwargs.pop(k, None)
        if kwargs.get("max_sampling_time") is not None:
            kwargs["max_time"] = kwargs.pop("max_sampling_time")
        kwargs.pop("max_sampling_time", None)
        if tuple(x.shape) == self.x_shape:
            x = x.unsqueeze(0)
        if tuple(x.shape[1:]) != self.x_shape or x.dim() != len(self.x_shape) + 1:
            raise ValueError(
                f"sample_batched: x must have shape (B, *x_shape) = (B, {', '.join(map(str, self.x_shape))}); "
                f"got {tuple(x.shape)}"
            )
        n = math.prod(shape)
        theta = self.sample(n, x, seed=seed, generator=generator, **kwargs)  # (n, B, D)
        return theta.reshape(*shape, *theta.shape[1:])

    def log_prob_batched(self, theta: Tensor, x: Tensor, **kwargs) -> Tensor:
        """sbi's batched log-density signature: theta ``(S, B, D)``, x ``(B, *x_shape)`` -> ``(S, B)``.

        ``kwargs`` go to :meth:`log_prob` (``normalize``, ``mass_samples``); sbi's ``norm_posterior`` maps to
        ``normalize`` and ``track_gradients`` is ignored (no_grad unless it is True).
        """
        if "norm_posterior" in kwargs:
            kwargs["normalize"] = kwargs.pop("norm_posterior")
        track = bool(kwargs.pop("track_gradients", False))
        if theta.dim() != 3 or x.dim() != len(self.x_shape) + 1 or theta.shape[1] != x.shape[0]:
            raise ValueError(
                f"log_prob_batched: theta must be (S, B, D) and x (B, *x_shape) with the same B; got "
                f"theta {tuple(theta.shape)} and x {tuple(x.shape)}"
            )
        with torch.set_grad_enabled(track):
            return self.log_prob(theta, x, **kwargs)

    def _rejection(self, n: int, c: Tensor, generator, max_time: float, options) -> Tensor:
        """n accepted draws per encoded observation ``c (*Bc, E)`` -> ``(n, *Bc, D)``: the first n inside the
        support, in draw order. Each later round draws only for the observations still short of n, as many as
        the worst of them lacks at its acceptance rate so far (+10%)."""
        t0 = time.perf_counter()
        prior = self.prior
        assert prior is not None, "sample rejects draws only against a prior"
        support = support_of(prior)
        flat = c.reshape(-1, c.shape[-1])
        B, dev = flat.shape[0], c.device
        out = torch.empty(n, B, self.theta_dim, device=dev, dtype=c.dtype)
        filled = torch.zeros(B, dtype=torch.long, device=dev)
        tried = torch.zeros(B, dtype=torch.long, device=dev)
        active, m = torch.arange(B, device=dev), n
        while True:
            th = self._draw(m, flat[active], generator, options)  # (m, A, D)
            self._check_draws(th)
            ok = support.check(th)
            tried[active] += m
            rank = ok.long().cumsum(0) - 1 + filled[active]  # where each accepted draw goes
            keep = ok & (rank < n)
            out[rank[keep], active.expand(m, -1)[keep]] = th[keep]
            filled[active] += ok.sum(0)
            active = active[filled[active] < n]
            if active.numel() == 0:
                break
            low = filled[active].clamp_max(n)
            rate = low.double() / tried[active].double()
            hopeless = bool(((low == 0) & (tried[active] >= REJECTION_GIVE_UP)).any())
            if hopeless or time.perf_counter() - t0 > max_time:
                self.acceptance_rate = float(rate.min())
                within = (
                    f"none of {int(tried[active].max())} proposals"
                    if hopeless
                    else f"only {float(rate.min()):.2e} of proposals within max_time={max_time}s"
                )
                far = (
                    f"; x lies {self._far_z:.3g} training standard deviations from the training mean, so the model "
                    "extrapolates: check the observation"
                    if self._far_z > FAR_OUTSIDE
                    else ""
                )
                raise SamplingError(
                    f"rejection sampling accepted {within}: the posterior puts most mass outside the prior{far}; "
                    "otherwise retrain with transform='unconstrained' or raise max_time"
                )
            if bool((low == 0).any()):  # nothing accepted yet for some observation: double the round, up to a cap
                m = min(2 * m, max(16 * n, 1 << 16))
            else:
                m = min(16 * n, math.ceil(1.1 * float(((n - low) / rate).max())) + 16)
        self.acceptance_rate = float(filled.sum()) / float(tried.sum())
        return out.reshape(n, *c.shape[:-1], self.theta_dim)

    def extra_repr(self) -> str:
        prior = self._prior_spec["type"] if self._prior_spec else None
        return f"theta_dim={self.theta_dim}, x_shape={self.x_shape}, transform={self.transform!r}, prior={prior!r}"

    # ------------------------------------------------------------------ persistence
    def save_config(self) -> dict:
        """The JSON part of a saved posterior (:mod:`physgen.inference.persist`)."""
        return {**self._core_config(), "transform": self.transform, "prior": self._prior_spec}

    @classmethod
    def from_config(cls, model: nn.Module, encoder: nn.Module, config: dict) -> Posterior:
        prior = prior_from_dict(config["prior"]) if config.get("prior") else None
        return cls(
            model, encoder, config["target_shape"][0], tuple(config["context_shape"]), prior, config["transform"]
        )
