"""Wavefunctions by name: ``build_wavefunction("rnn" | "transformer" | "rbm", n_sites, options, seed=...)``, and
the contract of a wavefunction module that the drivers (VMC, tomography) rely on (:class:`Wavefunction`)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

__all__ = ["WAVEFUNCTIONS", "build_wavefunction", "Wavefunction", "SelfSampling", "as_wavefunction"]


@runtime_checkable
class Wavefunction(Protocol):
    """What a wavefunction ``nn.Module`` has besides the module API: ``n_sites`` and ``log_psi``, which maps
    configurations ``sigma (B, N)`` of 0/1 to ``log psi (B,)``: complex, real for a positive amplitude, or a
    pair ``(log|psi|, sign)`` (the physgen wavefunctions return complex tensors; see
    :func:`physgen.quantum.hamiltonians.as_log_psi`)."""

    n_sites: int

    def log_psi(self, sigma: Tensor, /) -> Tensor | tuple[Tensor, Tensor]: ...


@runtime_checkable
class SelfSampling(Wavefunction, Protocol):
    """A wavefunction that draws exact samples from ``|psi|^2`` (the autoregressive ones): ``(n, N)``."""

    def sample(self, n: int, context: Tensor | None = None, *, generator: torch.Generator | None = None) -> Tensor: ...


def as_wavefunction(model: nn.Module) -> Wavefunction:
    """``model`` typed as the :class:`Wavefunction` it is.

    Raises:
        TypeError: ``model`` has no ``n_sites`` or no ``log_psi``.
    """
    if not isinstance(model, Wavefunction):
        raise TypeError(
            f"{type(model).__name__} is not a wavefunction module: it needs an n_sites attribute and a "
            "log_psi(sigma) method (see physgen.quantum.RBMWavefunction, RNNWavefunction)."
        )
    return model


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
