"""Conditional generative families (one per file), each a :class:`physgen.core.ConditionalModel`.

``build_model(name, dim, context_dim, **hyperparameters)`` builds a family by name:

* ``"nsf"``, ``"maf"``: normalizing flows on zuko (:mod:`physgen.models.flow`);
* ``"flow_matching"``: conditional flow matching (:mod:`physgen.models.flow_matching`); ``"flow_matching_fast"``:
  the same with defaults set for sampling speed (a 64-wide network, 10 network calls per sample);
* ``"diffusion"``: score-based diffusion (:mod:`physgen.models.diffusion`).

Each instance carries ``name`` and ``config`` such that ``build_model(name, **config)`` rebuilds it.
"""

from __future__ import annotations

import importlib

from torch import nn

__all__ = ["MODELS", "build_model"]

# name -> (module, class, fixed keyword arguments)
MODELS: dict[str, tuple[str, str, dict]] = {
    "nsf": ("physgen.models.flow", "Flow", {"kind": "nsf"}),
    "maf": ("physgen.models.flow", "Flow", {"kind": "maf", "coupling": False}),
    "flow_matching": ("physgen.models.flow_matching", "FlowMatching", {}),
    "flow_matching_fast": ("physgen.models.flow_matching", "FastFlowMatching", {}),
    "diffusion": ("physgen.models.diffusion", "Diffusion", {}),
}


def build_model(name: str, dim: int, context_dim: int, **hyperparameters) -> nn.Module:
    """Build a conditional model by family name.

    Args:
        name: one of ``MODELS``.
        dim: target dimension D.
        context_dim: context dimension C (0 for unconditional).
        **hyperparameters: passed to the family's constructor.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    module, cls, fixed = MODELS[name]
    kwargs = {**hyperparameters, **fixed}
    return getattr(importlib.import_module(module), cls)(dim=dim, context_dim=context_dim, **kwargs)
