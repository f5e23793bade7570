"""Conditional generative families (one per file), each a :class:`physgen.core.ConditionalModel`.

``build_model(name, event_shape, context_dim, network=None, **options)`` builds a family by name:

* ``"nsf"``, ``"maf"``: normalizing flows on zuko (:mod:`physgen.models.flow`), vector targets only;
* ``"flow_matching"``: conditional flow matching (:mod:`physgen.models.flow_matching`);
* ``"diffusion"``: score-based diffusion (:mod:`physgen.models.diffusion`);
* ``"gan"``: a conditional DCGAN for fields, no density (:mod:`physgen.models.gan`);
* ``"vae"``: a conditional VAE for fields, an ELBO instead of a density (:mod:`physgen.models.vae`);
* ``"point_cloud"``: padded point sets in a periodic box (:mod:`physgen.emulators.point_cloud`);
* presets (:mod:`physgen.models.presets`): a family with other defaults, e.g. ``"flow_matching_fast"``.

Flow matching and diffusion take their network (:class:`physgen.core.Network`); without one,
``build_model`` builds the default (a residual MLP for vectors, a U-Net for fields) and passes it the
options the family itself does not take (``hidden_features``, ``num_blocks``, ``channels``, ...).
Each instance carries ``name`` and ``config`` such that ``build_model(name, **config)`` rebuilds it.
"""

from __future__ import annotations

import importlib
import inspect

from torch import nn

from physgen.models._network import NETWORKS, default_network
from physgen.models.presets import PRESETS
from physgen.shapes import as_event_shape

__all__ = ["MODELS", "NETWORKS", "PRESETS", "build_model", "model_class", "fit_defaults_of"]

# name -> (module, class, fixed keyword arguments)
MODELS: dict[str, tuple[str, str, dict]] = {
    "nsf": ("physgen.models.flow", "Flow", {"kind": "nsf"}),
    "maf": ("physgen.models.flow", "Flow", {"kind": "maf", "coupling": False}),
    "flow_matching": ("physgen.models.flow_matching", "FlowMatching", {}),
    "diffusion": ("physgen.models.diffusion", "Diffusion", {}),
    "gan": ("physgen.models.gan", "GAN", {}),
    "vae": ("physgen.models.vae", "VAE", {}),
    "autoregressive_lattice": ("physgen.emulators.lattice_family", "AutoregressiveLattice", {}),
    "point_cloud": ("physgen.emulators.point_cloud", "PointCloudFlow", {}),
}


def model_class(name: str) -> type[nn.Module]:
    """The class of a family or preset name."""
    family = PRESETS[name]["family"] if name in PRESETS else name
    if family not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted([*MODELS, *PRESETS])}")
    module, cls, _ = MODELS[family]
    return getattr(importlib.import_module(module), cls)


def fit_defaults_of(name: str) -> dict:
    """Training defaults of a family or preset (the preset's override the family's)."""
    defaults = dict(getattr(model_class(name), "fit_defaults", {}))
    if name in PRESETS:
        defaults.update(PRESETS[name].get("fit_defaults", {}))
    return defaults


def build_model(
    name: str, event_shape: int | tuple[int, ...], context_dim: int, network: nn.Module | dict | None = None, **options
) -> nn.Module:
    """Build a conditional model by family or preset name.

    Args:
        name: one of ``MODELS`` or ``PRESETS``.
        event_shape: the target's shape ``(D,)`` (or an int D), ``(C, H, W)``, ...
        context_dim: context dimension C (0 for unconditional).
        network: for flow matching and diffusion: a network module or spec (default: built here).
        **options: the family's hyperparameters; for flow matching and diffusion without ``network``, the
            options the family does not take go to the default network (e.g. ``hidden_features``).

    Raises:
        ValueError: an unknown name or option (naming the allowed ones), or an event shape the family
            does not support.
    """
    cls = model_class(name)
    family = PRESETS[name]["family"] if name in PRESETS else name
    event_shape = as_event_shape(event_shape)
    preset = PRESETS.get(name, {})
    options = {**preset.get("options", {}), **options}
    own = set(inspect.signature(cls.__init__).parameters) - {"self", "event_shape", "context_dim", "network"}
    fixed = MODELS[family][2]
    rest = {k: v for k, v in options.items() if k not in own}
    kwargs = {k: v for k, v in options.items() if k in own and k not in fixed}
    if "network" in inspect.signature(cls.__init__).parameters:
        if network is None:
            net_options = {**preset.get("network_options", {}), **rest}
            network = _default_network(event_shape, context_dim, family, net_options)
        elif rest:
            raise ValueError(
                f"options {sorted(rest)} are not options of {family!r} ({sorted(own)}), and a network was given"
            )
        kwargs["network"] = network
    elif rest or network is not None:
        bad = sorted(rest) + (["network"] if network is not None else [])
        raise ValueError(f"unknown options {bad} for model {name!r}; allowed: {sorted(own - set(fixed))}")
    return cls(event_shape=event_shape, context_dim=context_dim, **kwargs, **fixed)


def _default_network(event_shape, context_dim, family, options) -> nn.Module:
    base = {"max_frequency": 30.0} if family == "diffusion" and len(event_shape) == 1 else {}
    try:
        return default_network(event_shape, context_dim, family, **{**base, **options})
    except TypeError as err:
        raise ValueError(f"bad option for {family!r} or its default network: {err}") from None
