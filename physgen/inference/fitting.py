"""Training entry points: ``fit_posterior`` (θ | x) and ``fit_emulator`` (x | θ) on simulated pairs.

Both build the estimator (a model family by name, or a module passed in), set its standardisation from
the training data, apply the family's ``fit_defaults`` where the caller gave no value, and train it with
:func:`physgen.fit`. ``seed`` (default 0) sets the initial weights too, so the same data and seed give the
same estimator.
"""

from __future__ import annotations

import math
from typing import TypeVar, cast

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from physgen import checks
from physgen.core import Encoder
from physgen.data import SimulationSet
from physgen.inference.emulator import Emulator
from physgen.inference.estimator import Flatten
from physgen.inference.posterior import Posterior
from physgen.models import build_model, fit_defaults_of
from physgen.priors import prior_from_dict, support_of
from physgen.train import fit, resolve_device

__all__ = ["fit_posterior", "fit_emulator"]

STANDARDIZATION_ROWS = 100_000  # rows read to set the standardisation (all of a smaller set)


def _head(data: SimulationSet, rows: int) -> tuple[Tensor, Tensor]:
    """The first ``rows`` rows (θ, x) as float tensors; a lazy x is read only that far."""
    n = min(len(data), rows)
    x = data.x[:n]
    return torch.as_tensor(data.theta[:n]).float(), torch.as_tensor(x).float()


def _model(
    model: str | nn.Module, event_shape: tuple[int, ...], context_dim: int, network, options: dict, seed: int
) -> nn.Module:
    if isinstance(model, nn.Module):
        if network is not None or options:
            raise ValueError("network and model_options apply to a model given by name; this model is already built")
        return model
    # the initial weights follow ``seed`` (same seed, same estimator), without touching the caller's RNG
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(model, event_shape, context_dim, network=network, **options)


def _check_rows(data: SimulationSet) -> None:
    """NaN/inf rows of in-memory training data are an error naming them (a lazy store was checked on open)."""
    if isinstance(data.x, Tensor):
        checks.check_training_data(torch.as_tensor(data.theta), data.x)


def _encoder(encoder: str | nn.Module | None, options: dict | None, x_shape: tuple[int, ...], seed: int) -> nn.Module:
    """The context encoder: a module as given, one built by name for ``x_shape``, or Flatten."""
    if isinstance(encoder, str) and encoder:
        from physgen.nn import encoder_for

        with torch.random.fork_rng(devices=[]):  # the initial weights follow ``seed``, as the model's do
            torch.manual_seed(seed + 1)
            return encoder_for(encoder, x_shape, **(options or {}))
    if options:
        raise ValueError(
            "encoder_options apply to an encoder given by name; this encoder is "
            + ("already built" if encoder is not None else "Flatten (no encoder named)")
        )
    if encoder is None or encoder == "":
        return Flatten(x_shape)
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"encoder must be a name, an nn.Module or None; got {type(encoder).__name__}")
    return encoder


def _out_features(encoder: nn.Module) -> int:
    """E, the size of the encoder's summary (an Encoder's ``out_features``; physgen.core)."""
    return cast(Encoder, encoder).out_features  # nn.Module's attribute lookup types it Tensor | Module


_Role = TypeVar("_Role", Posterior, Emulator)


def _train(
    estimator: _Role, data: SimulationSet, name: str | None, device: str, fit_options: dict, *, standardize: bool = True
) -> _Role:
    """Train ``estimator`` on ``data`` with the family's fit defaults under ``fit_options``; ``standardize=False``
    keeps its standardization (continued training) instead of setting it from the data's first rows."""
    if standardize:
        theta, x = _head(data, STANDARDIZATION_ROWS)
        estimator.standardize_from(theta, x)
    dev = resolve_device(device)
    estimator.to(dev)
    fit_options.setdefault("progress", False)
    defaults = fit_defaults_of(name) if name is not None else dict(getattr(estimator.model, "fit_defaults", {}))
    for key, value in defaults.items():
        fit_options.setdefault(key, value)
    source = (data.theta.float(), data.x.float()) if isinstance(data.x, Tensor) else data
    estimator.fit_result = fit(estimator, source, device=dev, **fit_options)
    return estimator


def fit_posterior(
    data: SimulationSet,
    *,
    model: str | nn.Module = "nsf",
    encoder: str | nn.Module | None = None,
    encoder_options: dict | None = None,
    network: nn.Module | dict | None = None,
    prior: Distribution | None = None,
    transform: str = "auto",
    model_options: dict | None = None,
    device: str = "auto",
    **fit_options,
) -> Posterior:
    """Neural posterior estimation: train q(θ | x) on simulated pairs.

    Args:
        data: a SimulationSet (θ ``(n, D)``, x ``(n, *x_shape)``; x may be read lazily from zarr).
        model: a family or preset name ("nsf" default, "maf", "flow_matching", "flow_matching_fast",
            "diffusion"; :data:`physgen.models.MODELS`, :data:`physgen.models.PRESETS`) or a built model.
        encoder: a summary network of x: a module (physgen.nn), a name built for the data's x shape by
            :func:`physgen.nn.encoder_for` ("cnn", "deepsets", "set_transformer", "power_spectrum", ...;
            "cnn+power_spectrum" concatenates two), or None to flatten x.
        encoder_options: keyword arguments of the named encoder (for "a+b": ``{"a": {...}, "b": {...}}``).
        network: the vector-field network of flow matching / diffusion (default: built by the family).
        prior: the prior (default: the one recorded in ``data.meta``).
        transform: "none" (θ space; rejection against a bounded prior's support), "unconstrained" (a space
            mapped onto the support) or "auto" (the family's ``default_transform``).
        model_options: hyperparameters of the family (and of its default network).
        device: "auto", "cpu", "cuda".
        **fit_options: :func:`physgen.fit` keywords; the family's ``fit_defaults`` fill what is not given.

    Returns:
        The trained Posterior, in eval mode; ``posterior.fit_result`` holds the training history.

    Raises:
        ValueError: training θ outside the prior's support, or a model that does not fit the shapes.
    """
    if prior is None and data.meta.get("prior"):
        prior = prior_from_dict(data.meta["prior"])
    _check_rows(data)
    theta_dim, x_shape = int(data.theta.shape[1]), tuple(data.x.shape[1:])
    enc = _encoder(encoder, encoder_options, x_shape, fit_options.get("seed", 0))
    net = _model(model, (theta_dim,), _out_features(enc), network, model_options or {}, fit_options.get("seed", 0))
    if transform == "auto":
        transform = getattr(net, "default_transform", "unconstrained")
    post = Posterior(net, enc, theta_dim, x_shape, prior, transform)
    if prior is not None:
        bad = ~support_of(prior).check(data.theta.float())
        if bool(bad.any()):
            raise ValueError(f"{int(bad.sum())} training θ lie outside the prior's support; check the prior passed in")
    return _train(post, data, model if isinstance(model, str) else None, device, fit_options)


def fit_emulator(
    data: SimulationSet,
    *,
    model: str | nn.Module = "flow_matching",
    encoder: nn.Module | None = None,
    network: nn.Module | dict | None = None,
    model_options: dict | None = None,
    target_standardization: str | None = None,
    x_transform: str = "none",
    device: str = "auto",
    **fit_options,
) -> Emulator:
    """Train an emulator q(x | θ) on simulated pairs.

    Args:
        data: a SimulationSet (θ ``(n, D)``, x ``(n, *x_shape)``; x may be read lazily from zarr).
        model: a family or preset name whose event shapes include x's ("flow_matching" default; "diffusion";
            "nsf"/"maf" for vector x only) or a built model.
        encoder: an encoder of θ (default: θ itself, standardised per component).
        network: the network of flow matching / diffusion (default: a residual MLP for vector x, a U-Net for
            fields ``(C, H, W)``).
        model_options: hyperparameters of the family (and of its default network, e.g. ``channels`` of the
            U-Net, ``periodic=True`` for periodic fields).
        target_standardization: "feature", "channel", "global" or "none" (default: the family's
            ``target_standardization`` if it has one, e.g. "none" for "point_cloud"; else per element for
            vectors, per channel for fields).
        x_transform: "none", "log" (x > 0) or "log1p" (x > -1): the family learns u = ln(x + s) elementwise
            and the emulator returns x = e^u - s (:mod:`physgen.inference.x_transforms`; "log1p" suits a
            density contrast δ, whose lognormal-like skew it removes).
        device: "auto", "cpu", "cuda".
        **fit_options: :func:`physgen.fit` keywords; the family's ``fit_defaults`` fill what is not given.

    Returns:
        The trained Emulator, in eval mode; ``emulator.fit_result`` holds the training history.

    Raises:
        ValueError: a family that does not support x's event shape (naming the shapes it supports), or x
            outside the support of ``x_transform`` (naming the rows).
    """
    _check_rows(data)
    theta_dim, x_shape = int(data.theta.shape[1]), tuple(data.x.shape[1:])
    enc = encoder if encoder is not None else Flatten((theta_dim,))
    net = _model(model, x_shape, _out_features(enc), network, model_options or {}, fit_options.get("seed", 0))
    if math.prod(x_shape) < 1:
        raise ValueError(f"x has an empty event shape {x_shape}")
    if target_standardization is None:  # a family that reads x in its own units says so (e.g. point_cloud)
        target_standardization = getattr(net, "target_standardization", None)
    emu = Emulator(net, enc, theta_dim, x_shape, target_standardization=target_standardization, x_transform=x_transform)
    return _train(emu, data, model if isinstance(model, str) else None, device, fit_options)
