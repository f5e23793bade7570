"""Wavefunctions by name: ``build_wavefunction("rnn" | "transformer" | "rbm", n_sites, options, seed=...)``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["WAVEFUNCTIONS", "build_wavefunction"]

# kind -> the wavefunction class exported by physgen.quantum
WAVEFUNCTIONS = {"rnn": "RNNWavefunction", "transformer": "TransformerWavefunction", "rbm": "RBMWavefunction"}
_DTYPES = ("float32", "float64")


def build_wavefunction(kind: str, n_sites: int, options: dict[str, Any], *, seed: int = 0) -> nn.Module:
    """The wavefunction ``kind`` on ``n_sites`` with ``options`` (``dtype`` may be given by name), initialised
    from ``seed``; the global RNG is left as it was.

    Raises:
        ValueError: an unknown kind or dtype (naming the allowed ones).
        TypeError: options the class does not accept.
    """
    import physgen.quantum

    if kind not in WAVEFUNCTIONS:
        raise ValueError(f"unknown wavefunction kind {kind!r}; allowed: {', '.join(map(repr, WAVEFUNCTIONS))}")
    cls = getattr(physgen.quantum, WAVEFUNCTIONS[kind])
    opts = dict(options)
    if isinstance(opts.get("dtype"), str):
        if opts["dtype"] not in _DTYPES:
            raise ValueError(f"dtype = {opts['dtype']!r} is not allowed; allowed: {', '.join(map(repr, _DTYPES))}")
        opts["dtype"] = getattr(torch, opts["dtype"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return cls(n_sites, **opts)
        except TypeError as err:
            raise TypeError(f"not accepted by {cls.__name__}: {err}") from None
