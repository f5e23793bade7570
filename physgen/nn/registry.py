"""Encoders by name: the registry, building an encoder from the data's x shape, and concatenations.

``encoder_for("cnn", (32, 32), periodic=True)`` builds the encoder a workflow names, with the shape
arguments taken from the data; ``"cnn+power_spectrum"`` concatenates a learned encoder and a physics
summary (each sees x standardised its own way). ``build_encoder(name, **config)`` rebuilds a saved
encoder from its ``name`` and ``config``.

Registry entries are ``"module:Class"`` strings imported on first use, so summary encoders live next to
the physics they summarise without import costs for everyone else. A class may define
``from_x_shape(x_shape, **options)``; otherwise the shape argument is mapped here (``_SHAPE_ARGUMENTS``).
An encoder may declare ``accepts`` (a tuple of x kinds: "vector", "field", "lattice", "points"), which
:func:`check_accepts` compares with a simulator's ``x_kind`` before anything is simulated.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from physgen.core import Encoder

__all__ = ["ENCODERS", "X_KINDS", "encoder_class", "build_encoder", "encoder_for", "check_accepts", "ConcatEncoder"]

ENCODERS: dict[str, str] = {
    "mlp": "physgen.nn.mlp:MLPEncoder",
    "cnn": "physgen.nn.cnn:CNNEncoder",
    "deepsets": "physgen.nn.deepsets:DeepSetsEncoder",
    "set_transformer": "physgen.nn.set_transformer:SetTransformerEncoder",
    "power_spectrum": "physgen.nn.field_summary:PowerSpectrumEncoder",
    "pair_correlation": "physgen.nn.point_summary:PairCorrelationEncoder",
    "ising_summary": "physgen.nn.lattice_summary:IsingSummaryEncoder",
    "concat": "physgen.nn.registry:ConcatEncoder",
}
X_KINDS = ("vector", "field", "lattice", "points")

_SHAPE_ARGUMENTS: dict[str, Callable[[tuple[int, ...]], dict[str, Any]]] = {
    "mlp": lambda s: {"in_features": math.prod(s)},
    "cnn": lambda s: {"field_shape": list(s)},
    "deepsets": lambda s: {"point_dim": s[-1] - 1},
    "set_transformer": lambda s: {"point_dim": s[-1] - 1},
}
_DEFAULT_ACCEPTS = {
    "mlp": ("vector",),
    "cnn": ("field", "lattice"),
    "deepsets": ("points",),
    "set_transformer": ("points",),
}


def encoder_class(name: str) -> type[nn.Module]:
    """The class registered as ``name``. Raises ValueError naming the registered names."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {sorted(ENCODERS)} (or 'a+b' to concatenate)")
    module, cls = ENCODERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_encoder(name: str, **config) -> nn.Module:
    """Rebuild an encoder from its ``name`` and ``config`` (as stored by save)."""
    return encoder_class(name)(**config)


def accepts_of(name: str) -> tuple[str, ...]:
    """The x kinds the encoder ``name`` takes (its ``accepts`` attribute; all kinds when it declares none)."""
    cls = encoder_class(name)
    return tuple(getattr(cls, "accepts", _DEFAULT_ACCEPTS.get(name, X_KINDS)))


def check_accepts(name: str, x_kind: str | None, x_shape: Sequence[int], what: str = "the simulator") -> None:
    """Raise ValueError when an encoder spec (``"a"`` or ``"a+b"``) cannot take x of this kind.

    ``x_kind`` None (unknown) only checks that the names exist.
    """
    for part in _parts(name):
        kinds = accepts_of(part)
        if x_kind is not None and x_kind not in kinds:
            raise ValueError(
                f"encoder {part!r} takes {' or '.join(kinds)} data, but {what} gives {x_kind} data of shape "
                f"{tuple(x_shape)}; choose an encoder for {x_kind} data: "
                f"{_encoders_taking(x_kind)}"
            )


def _encoders_taking(x_kind: str) -> list[str]:
    names = []
    for n in ENCODERS:
        try:
            if n != "concat" and x_kind in accepts_of(n):
                names.append(n)
        except ImportError:  # an optional encoder whose module is unavailable
            continue
    return sorted(names)


def encoder_for(name: str, x_shape: Sequence[int], **options) -> nn.Module:
    """Build the encoder ``name`` for x of event shape ``x_shape``.

    Args:
        name: a registered name, or names joined by "+" (their outputs are concatenated).
        x_shape: the event shape of one x, e.g. ``(32, 32)`` or ``(N_max, d + 1)``.
        **options: the encoder's keyword arguments (for a concatenation: ``{name: {options}}`` per part).

    Raises:
        ValueError: an unknown name, or options the encoder does not take (named).
    """
    x_shape = tuple(int(s) for s in x_shape)
    parts = _parts(name)
    if len(parts) > 1:
        unknown = set(options) - set(parts)
        if unknown:
            raise ValueError(
                f"options of the concatenated encoder {name!r} are given per part, as {{part = {{...}}}}; "
                f"got keys {sorted(unknown)} that are none of {parts}"
            )
        return ConcatEncoder([{"name": p, "config": _one(p, x_shape, options.get(p, {})).config} for p in parts])
    return _one(parts[0], x_shape, options)


def _parts(name: str) -> list[str]:
    parts = [p.strip() for p in str(name).split("+")]
    if not all(parts):
        raise ValueError(f"encoder name {name!r} has an empty part; write e.g. 'cnn' or 'cnn+power_spectrum'")
    for p in parts:
        encoder_class(p)
    return parts


def _one(name: str, x_shape: tuple[int, ...], options: dict) -> nn.Module:
    cls = encoder_class(name)
    try:
        if hasattr(cls, "from_x_shape"):
            return cls.from_x_shape(x_shape, **options)
        shape_args = _SHAPE_ARGUMENTS[name](x_shape)
        clash = set(shape_args) & set(options)
        if clash:
            raise ValueError(f"encoder {name!r} takes {sorted(clash)} from the data's x shape {x_shape}; leave it out")
        return cls(**shape_args, **options)
    except TypeError as e:  # an option the constructor does not take
        raise ValueError(f"encoder {name!r}: {e}; see help(physgen.nn.{cls.__name__}) for its options") from None


class ConcatEncoder(nn.Module):
    """Several encoders side by side: ``(*B, *x_shape) -> (*B, ΣE_i)``.

    Each part sees x standardised as it asks (its ``x_standardization``: "feature", "global" or "none"),
    with statistics set by :meth:`standardize_from` (buffers, saved with the estimator); parts with their
    own ``standardize_from`` get the raw rows too.

    Args:
        encoders: ``[{"name", "config"}, ...]`` of the parts (what :func:`encoder_for` gives).
    """

    name = "concat"
    x_standardization = "none"

    def __init__(self, encoders: list[dict]):
        super().__init__()
        if len(encoders) < 2:
            raise ValueError("ConcatEncoder needs at least two encoders")
        self.parts = nn.ModuleList([build_encoder(e["name"], **e["config"]) for e in encoders])
        self.config = {"encoders": [{"name": p.name, "config": p.config} for p in self.parts]}
        # every registered encoder follows the physgen.core.Encoder protocol (an int out_features)
        self.out_features = sum(int(cast(Encoder, p).out_features) for p in self.parts)
        kinds = [set(getattr(p, "accepts", X_KINDS)) for p in self.parts]
        self.accepts = tuple(k for k in X_KINDS if all(k in s for s in kinds))
        self._modes = [getattr(p, "x_standardization", "feature") for p in self.parts]
        for i, mode in enumerate(self._modes):
            if mode not in ("feature", "global", "none"):
                raise ValueError(
                    f"encoder {self.parts[i].name!r} asks for x_standardization {mode!r}; a part of a "
                    "concatenation may ask for 'feature', 'global' or 'none'"
                )
            # feature statistics take their shape when first set (standardize_from); global ones are scalars
            self.register_buffer(f"shift{i}", torch.zeros(()))
            self.register_buffer(f"scale{i}", torch.ones(()))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # feature buffers: shape from the file
        for i in range(len(self.parts)):
            for b in (f"shift{i}", f"scale{i}"):
                if prefix + b in state_dict:
                    setattr(self, b, torch.empty_like(state_dict[prefix + b]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def standardize_from(self, x: Tensor) -> None:
        """Set each part's standardisation from raw training rows ``x (n, *x_shape)``."""
        x = x.float()
        for i, (part, mode) in enumerate(zip(self.parts, self._modes)):
            if mode == "feature":
                sd = x.std(0)
                setattr(self, f"shift{i}", x.mean(0).to(getattr(self, f"shift{i}")))
                setattr(self, f"scale{i}", torch.where(sd > 1e-8, sd, torch.ones_like(sd)))
            elif mode == "global":
                getattr(self, f"shift{i}").fill_(float(x.mean()))
                getattr(self, f"scale{i}").fill_(max(float(x.std()), 1e-8))
            hook = getattr(part, "standardize_from", None)
            if hook is not None:
                hook(x)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x ``(*B, *x_shape)`` -> ``(*B, ΣE_i)``."""
        outs = []
        for i, (part, mode) in enumerate(zip(self.parts, self._modes)):
            xi = x if mode == "none" else (x - getattr(self, f"shift{i}")) / getattr(self, f"scale{i}")
            outs.append(part(xi))
        return torch.cat(outs, dim=-1)
