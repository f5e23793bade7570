"""The networks that vector-field and denoiser families take, and the reshapes around them (private).

Flow matching and diffusion keep their state flat, ``(*N, D)`` with D = prod(event_shape), so the
solvers, the divergence and the linear-Gaussian baseline work for any event shape; the network sees
``(*N, *event_shape)`` (:func:`apply_network`). For a vector event the reshapes are no-ops.

Networks (:class:`physgen.core.Network`) are passed in, as a module or as a saved spec
``{"name": ..., "config": {...}}``; with none, :func:`default_network` builds a residual MLP for
vectors ``(D,)`` and a U-Net for fields ``(C, H, W)``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol, cast

import torch
from torch import Tensor, nn

from physgen.core import Network
from physgen.shapes import unflatten_event

__all__ = [
    "NETWORKS",
    "build_network",
    "default_network",
    "resolve_network",
    "as_network",
    "Freezable",
    "network_spec",
    "apply_network",
    "resolve_gaussian_base",
    "resolve_trace",
    "parameter_like",
]

# name -> "module:Class"
NETWORKS = {"residual_mlp": "physgen.nn.mlp:ResidualMLP", "unet": "physgen.nn.unet:UNet"}

# the linear-Gaussian baseline stores a D x D eigenbasis and applies it at every solver step: used by
# default (gaussian_base="auto") up to this target size, where it is cheap
GAUSSIAN_BASE_MAX_DIM = 64
# the exact divergence costs D backward passes per solver step: default (trace="auto") up to this size,
# Hutchinson's one-pass estimate above
EXACT_TRACE_MAX_DIM = 32


def build_network(name: str, config: dict) -> nn.Module:
    """Rebuild a network from its registry ``name`` and ``config``."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; choose one of {sorted(NETWORKS)}")
    module, _, cls = NETWORKS[name].partition(":")
    return getattr(importlib.import_module(module), cls)(**config)


def default_network(event_shape: tuple[int, ...], context_dim: int, family: str, **options) -> nn.Module:
    """A residual MLP for vectors ``(D,)``, a U-Net for fields ``(C, H, W)`` or ``(H, W)``; ``options`` go to its constructor."""
    if len(event_shape) == 1:
        return build_network(
            "residual_mlp",
            {"in_features": event_shape[0], "out_features": event_shape[0], "context_features": context_dim, **options},
        )
    if len(event_shape) in (2, 3):
        return build_network("unet", {"event_shape": list(event_shape), "context_features": context_dim, **options})
    raise ValueError(
        f"{family} has a default network for vectors (D,) (a residual MLP) and fields (C, H, W) or (H, W) (a U-Net); got event "
        f"shape {tuple(event_shape)}: pass network= (a physgen.core.Network for this shape)"
    )


def resolve_network(network, event_shape: tuple[int, ...], context_dim: int, family: str, **defaults) -> nn.Module:
    """A module, a spec ``{"name", "config"}`` or None (the default network with ``defaults``) -> a checked module."""
    if network is None:
        network = default_network(event_shape, context_dim, family, **defaults)
    elif isinstance(network, dict):
        if set(network) != {"name", "config"}:
            raise ValueError(f"a network spec is {{'name': ..., 'config': {{...}}}}; got keys {sorted(network)}")
        network = build_network(network["name"], network["config"])
    if not isinstance(network, nn.Module) or not hasattr(network, "embed_context"):
        raise TypeError(
            f"{family} needs a network with embed_context and forward (physgen.core.Network); got {type(network).__name__}"
        )
    shape = tuple(getattr(network, "event_shape", ()))
    if shape != tuple(event_shape):
        raise ValueError(f"{family}: the network maps event shape {shape}, the target has {tuple(event_shape)}")
    if int(getattr(network, "context_features", -1)) != context_dim:
        raise ValueError(
            f"{family}: the network takes {getattr(network, 'context_features', None)} context features, the model {context_dim}"
        )
    return network


def as_network(module: nn.Module) -> Network:
    """A module that :func:`resolve_network` accepted, typed as the :class:`physgen.core.Network` it is (a
    module's attributes are typed ``Tensor | Module`` otherwise)."""
    return cast(Network, module)


class Freezable(Protocol):
    """A network that can fold its conditioning into its weights (:meth:`physgen.nn.ResidualMLP.frozen`)."""

    def frozen(self, t: Tensor, context_embedding: Tensor | None = None) -> list[Callable[[Tensor], Tensor]]: ...


def network_spec(network: nn.Module) -> dict | None:
    """``{"name", "config"}`` of a registered network (what save writes); None for any other network, which
    trains and samples but cannot be saved by name."""
    name = getattr(network, "name", None)
    if name not in NETWORKS or not isinstance(getattr(network, "config", None), dict):
        return None
    return {"name": name, "config": network.config}


def apply_network(net: nn.Module, x: Tensor, t: Tensor, emb: Tensor | None, event_shape: tuple[int, ...]) -> Tensor:
    """The network on a flat state: x ``(*N, D)`` -> ``(*N, D)``."""
    out = net(unflatten_event(x, event_shape), t, emb)
    return out if len(event_shape) == 1 else out.reshape(x.shape)


def resolve_gaussian_base(value: bool | str, dim: int) -> bool:
    """``"auto"`` -> on for targets of at most :data:`GAUSSIAN_BASE_MAX_DIM` elements."""
    if value == "auto":
        return dim <= GAUSSIAN_BASE_MAX_DIM
    if not isinstance(value, bool):
        raise ValueError(f"gaussian_base must be True, False or 'auto'; got {value!r}")
    return value


def resolve_trace(value: str, dim: int) -> str:
    """``"auto"`` -> ``"exact"`` up to :data:`EXACT_TRACE_MAX_DIM` elements, ``"hutchinson"`` above."""
    if value == "auto":
        return "exact" if dim <= EXACT_TRACE_MAX_DIM else "hutchinson"
    return value


def parameter_like(module: nn.Module) -> Tensor:
    """A parameter of the module: its device and dtype."""
    try:
        return next(module.parameters())
    except StopIteration:
        return torch.empty(0)
