r"""Neural likelihood estimation (NLE): a learned likelihood q(x | θ) sampled by MCMC.

Papamakarios, Sterratt & Murray (2019). A conditional flow is trained on simulated pairs to maximise
log q(x | θ) (the emulator's loss, :class:`physgen.inference.Emulator`: the same estimator, target x,
context θ). For any observation x_o the posterior is then known up to a constant,

    log p(θ | x_o) = log π(θ) + log q(x_o | θ) + const,   -inf outside the prior's support,

and is sampled by MCMC (:func:`physgen.mcmc.batched_reference`: many batched Metropolis chains, checked by
arviz's R-hat and ESS). One trained network serves every observation (amortized over x_o); only the MCMC is
run per observation.

:class:`Likelihood` follows the :class:`physgen.core.Simulator` likelihood contract (``prior``,
``log_likelihood(theta, x)``, ``x_shape``, ``name``), so every physgen sampler takes it as it takes a
simulator with an exact likelihood: ``physgen.mcmc.log_posterior(lik, x_o)``,
``physgen.mcmc.batched_reference(lik, x_o)``.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from physgen.core import LogDensity
from physgen.data import SimulationSet
from physgen.inference.emulator import Emulator
from physgen.inference.estimator import Flatten
from physgen.inference.fitting import _check_rows, _model, _train
from physgen.inference.tempered_start import tempered_start
from physgen.priors import prior_from_dict, prior_spec

__all__ = ["Likelihood", "LikelihoodSamples", "fit_likelihood", "MCMC_DEFAULTS"]

# batched-Metropolis settings of Likelihood.sample_posterior (physgen.mcmc.batched_reference's arguments)
MCMC_DEFAULTS: dict[str, Any] = {"num_chains": 512, "burn_in": 300, "thin": 5, "max_steps": 6000}


@dataclass
class LikelihoodSamples:
    """Posterior draws for one observation from MCMC on a learned likelihood.

    Attributes:
        samples: ``(n, D)`` draws (taken at evenly spaced positions of a seeded shuffle of all chains' draws).
        converged: R-hat and ESS passed (:func:`physgen.mcmc.check_convergence`); when False the draws are
            not to be trusted and ``messages`` says why.
        messages: one sentence per failed criterion (empty when converged).
        diagnostics: R-hat, bulk/tail ESS, acceptance, steps per chain, seconds.
        idata: all kept draws as ``arviz.InferenceData``.
    """

    samples: Tensor
    converged: bool
    messages: str
    diagnostics: dict = field(default_factory=dict)
    idata: Any = None


class _Target:
    """A prior and a learned likelihood in the Simulator likelihood contract (what physgen.mcmc samples)."""

    def __init__(self, likelihood: Likelihood, prior: Distribution):
        self.prior, self.x_shape, self.name = prior, likelihood.x_shape, "learned_likelihood"
        self._likelihood = likelihood

    def log_likelihood(self, theta: Tensor, x: Tensor) -> Tensor:
        return self._likelihood.log_likelihood(theta, x)


class Likelihood(Emulator):
    """q(x | θ) used as a likelihood: an :class:`Emulator` with a density, plus the prior it was trained under.

    Build it with :func:`fit_likelihood`; load it with :func:`physgen.load`.

    Args:
        model: a conditional model with a ``log_prob`` (a flow), event shape ``x_shape``.
        encoder: the encoder of θ (default :class:`Flatten`).
        theta_dim: D.
        x_shape: the event shape of one simulation (a vector ``(F,)`` for flows).
        prior: the prior (BoxUniform, LogUniform, LogNormal, MultivariateNormal or Joint), or None (then pass one to
            :meth:`posterior` / :meth:`sample_posterior`).
    """

    kind = "likelihood"
    name = "learned_likelihood"

    def __init__(
        self,
        model: nn.Module,
        encoder: nn.Module,
        theta_dim: int,
        x_shape: tuple[int, ...],
        prior: Distribution | None = None,
        *,
        target_standardization: str | None = None,
        x_transform: str = "none",
    ):
        super().__init__(
            model, encoder, theta_dim, x_shape, target_standardization=target_standardization, x_transform=x_transform
        )
        if not hasattr(model, "log_prob"):
            raise ValueError(
                f"a likelihood needs a model with log_prob; the {getattr(model, 'name', type(model).__name__)!r} "
                "family has none: use model='nsf' or 'maf'"
            )
        self._prior_spec = prior_spec(prior)

    @property
    def prior(self) -> Distribution | None:
        """The prior recorded at training (None if none was given)."""
        return prior_from_dict(self._prior_spec) if self._prior_spec is not None else None

    def _prior_or(self, prior: Distribution | None) -> Distribution:
        chosen = prior if prior is not None else self.prior
        if chosen is None:
            raise ValueError("this likelihood was trained without a prior: pass prior= (a torch Distribution over θ)")
        return chosen

    @torch.no_grad()
    def log_likelihood(self, theta: Tensor, x: Tensor) -> Tensor:
        """log q(x | θ) in the simulator argument order: theta ``(*B, D)``, x ``(*B, *x_shape)`` (broadcast) ->
        ``(*B,)`` float32 on the model's device (no gradient)."""
        theta, x = torch.as_tensor(theta), torch.as_tensor(x)
        bshape = torch.broadcast_shapes(theta.shape[:-1], x.shape[: x.dim() - len(self.x_shape)])
        theta = theta.expand(*bshape, self.theta_dim)
        x = x.expand(*bshape, *self.x_shape)
        with warnings.catch_warnings():  # MCMC proposals near the prior's edge: the box check is not the point
            warnings.simplefilter("ignore", UserWarning)
            return self.log_prob(x, theta)

    def posterior(self, x_o: Tensor, prior: Distribution | None = None) -> LogDensity:
        """The unnormalised log posterior at one observation: ``θ (*B, D) -> (*B,)``, -inf outside the prior's
        support (the network is not evaluated there). Any physgen sampler takes it.

        Args:
            x_o: one observation ``x_shape``.
            prior: the prior (default: the one recorded at training).
        """
        from physgen.mcmc import log_posterior

        return cast(LogDensity, log_posterior(_Target(self, self._prior_or(prior)), self._observation(x_o)))

    def _observation(self, x_o: Tensor) -> Tensor:
        x_o = torch.as_tensor(x_o)
        if tuple(x_o.shape) != self.x_shape:
            raise ValueError(
                f"x_o must be one observation of shape {self.x_shape}; got {tuple(x_o.shape)} "
                "(for several observations, call once per observation: the network is shared)"
            )
        return x_o.to(self.target_shift.device, self.target_shift.dtype)

    def sample_posterior(
        self,
        x_o: Tensor,
        n: int,
        prior: Distribution | None = None,
        *,
        seed: int = 0,
        start: str = "tempered",
        **mcmc_options: Any,
    ) -> LikelihoodSamples:
        """n posterior draws at one observation by batched Metropolis MCMC, with its convergence verdict.

        Args:
            x_o: one observation ``x_shape``.
            n: draws returned.
            prior: the prior (default: the one recorded at training).
            seed: seeds the chains' starts and steps (same seed, same draws).
            start: where the chains start: "tempered" (default; particles of likelihood tempering,
                :func:`physgen.inference.tempered_start.tempered_start`, so each mode of a multimodal posterior
                gets its share of chains) or "best" (the best prior draws, :mod:`physgen.mcmc.start`).
            **mcmc_options: :func:`physgen.mcmc.batched_reference` settings (``num_chains``, ``burn_in``,
                ``thin``, ``max_steps``, ``rhat_max``, ``ess_min``, ``initial``); defaults :data:`MCMC_DEFAULTS`,
                ``ess_min=400``.

        Returns:
            A :class:`LikelihoodSamples`; when the chains fail R-hat or ESS, ``converged`` is False,
            ``messages`` says what failed and how to fix it, and a RuntimeWarning is raised with it.
        """
        from physgen.mcmc import batched_reference, draws

        if int(n) < 1:
            raise ValueError(f"sample_posterior: n must be >= 1; got {n}")
        if start not in ("tempered", "best"):
            raise ValueError(f"start must be 'tempered' or 'best'; got {start!r}")
        target = _Target(self, self._prior_or(prior))
        options = {**MCMC_DEFAULTS, **mcmc_options}
        x_o = self._observation(x_o)
        if start == "tempered" and options.get("initial") is None:
            options["initial"] = tempered_start(
                target.prior,
                lambda t: self.log_likelihood(t, x_o),
                2 * int(options["num_chains"]),
                generator=torch.Generator().manual_seed(int(seed)),
            ).to(x_o.dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the verdict is reported below, once
            idata = batched_reference(target, x_o, num_samples=int(n), seed=int(seed), **options)
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in dict(idata.posterior.attrs).items()}
        converged, messages = bool(attrs.get("converged", 0)), str(attrs.get("messages", ""))
        if not converged:
            warnings.warn(
                f"MCMC on the learned likelihood did not converge: {messages}. The draws are not a posterior "
                "to trust; raise max_steps / num_chains, or check that x_o lies within the training data",
                RuntimeWarning,
                stacklevel=2,
            )
        every = draws(idata)
        order = torch.randperm(every.shape[0], generator=torch.Generator().manual_seed(int(seed)))
        pick = order[torch.linspace(0, every.shape[0] - 1, int(n)).round().long()]
        return LikelihoodSamples(every[pick], converged, messages, attrs, idata)

    def extra_repr(self) -> str:
        prior = self._prior_spec["type"] if self._prior_spec else None
        return f"theta_dim={self.theta_dim}, x_shape={self.x_shape}, prior={prior!r}"

    # ------------------------------------------------------------------ persistence
    def save_config(self) -> dict:
        """The JSON part of a saved likelihood: the emulator's keys and the prior."""
        return {**super().save_config(), "prior": self._prior_spec}

    @classmethod
    def from_config(cls, model: nn.Module, encoder: nn.Module, config: dict) -> Likelihood:
        prior = prior_from_dict(config["prior"]) if config.get("prior") else None
        lik = cls(
            model,
            encoder,
            config["context_shape"][0],
            tuple(config["target_shape"]),
            prior,
            target_standardization=config["target_standardization"],
            x_transform=config.get("x_transform", "none"),
        )
        rng = config.get("theta_range")
        lik.theta_range = (list(rng[0]), list(rng[1])) if rng else None
        return lik


def fit_likelihood(
    data: SimulationSet,
    *,
    model: str | nn.Module = "nsf",
    prior: Distribution | None = None,
    model_options: dict | None = None,
    device: str = "auto",
    init: Likelihood | None = None,
    x_transform: str = "none",
    **fit_options: Any,
) -> Likelihood:
    """Neural likelihood estimation: train q(x | θ) on simulated pairs (the emulator's training, roles swapped).

    Args:
        data: a SimulationSet (θ ``(n, D)``, x ``(n, F)``; x may be read lazily from zarr).
        model: a family with a density ("nsf" default, "maf") or a built model.
        prior: the prior (default: the one recorded in ``data.meta``); kept for :meth:`Likelihood.posterior`.
        model_options: hyperparameters of the family (e.g. ``{"transforms": 5, "hidden_features": [64, 64]}``).
        device: "auto", "cpu", "cuda".
        init: continue training a copy of this trained Likelihood (its network, weights and standardization;
            ``model`` and ``model_options`` must be left at their defaults) instead of building a new one:
            the warm start of sequential rounds. ``init`` itself is not changed.
        x_transform: "none", "log" (x > 0) or "log1p" (x > -1): the flow models u = ln(x + s) elementwise
            (:mod:`physgen.inference.x_transforms`); with ``init``, that likelihood's map is kept.
        **fit_options: :func:`physgen.fit` keywords; the family's ``fit_defaults`` fill what is not given.

    Returns:
        The trained :class:`Likelihood`, in eval mode; ``fit_result`` holds the training history.

    Raises:
        ValueError: x is not a vector (a flow's event is ``(F,)``), NaN/inf rows in memory, a family
            without ``log_prob``, ``init`` with other shapes than the data's or beside a model choice, or x
            outside the support of ``x_transform``.
    """
    if prior is None and data.meta.get("prior"):
        prior = prior_from_dict(data.meta["prior"])
    _check_rows(data)
    theta_dim, x_shape = int(data.theta.shape[1]), tuple(data.x.shape[1:])
    if len(x_shape) != 1 or math.prod(x_shape) < 1:
        raise ValueError(
            f"fit_likelihood takes vector observations (n, F); got x of shape {tuple(data.x.shape)}: "
            "summarise fields or point sets into a vector first"
        )
    if init is not None:
        if not isinstance(init, Likelihood):
            raise TypeError(f"init must be a trained Likelihood; got {type(init).__name__}")
        if model != "nsf" or model_options:
            raise ValueError("init continues training an existing Likelihood: leave model and model_options unset")
        if (init.theta_dim, tuple(init.x_shape)) != (theta_dim, x_shape):
            raise ValueError(
                f"init is a likelihood of x {tuple(init.x_shape)} given θ ({init.theta_dim},); the data have "
                f"x {x_shape} and θ ({theta_dim},)"
            )
        lik = copy.deepcopy(init)
        if prior is not None:
            lik._prior_spec = prior_spec(prior)
        if lik.theta_range is not None:  # the extrapolation warning's box grows to the new data's θ
            lik.include_theta(data.theta)
        return cast(Likelihood, _train(lik, data, None, device, fit_options, standardize=False))
    enc = Flatten((theta_dim,))
    net = _model(model, x_shape, enc.out_features, None, model_options or {}, fit_options.get("seed", 0))
    lik = Likelihood(net, enc, theta_dim, x_shape, prior, x_transform=x_transform)
    return cast(Likelihood, _train(lik, data, model if isinstance(model, str) else None, device, fit_options))
