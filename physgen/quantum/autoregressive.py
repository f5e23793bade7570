r"""Shared machinery of autoregressive wavefunctions (RNN, transformer).

An autoregressive wavefunction visits the sites in an ordering ``order`` (a permutation of
``0..N-1``) and factorises

    |psi(sigma)|^2 = prod_t p(x_t | x_<t),      x_t = sigma[order[t]],
    arg psi(sigma) = sum_t phi_t(x_t | x_<t) + pi * sum_i m_i sigma_i   (Marshall term),

with each conditional ``p(. | x_<t)`` a softmax over {0, 1}, so the state is exactly
normalised and can be sampled exactly by ancestral sampling. ``log psi = (1/2) sum_t log p
+ i * phase``.

U(1) masking (zero magnetisation, even N): at step t, with ``u`` zeros and ``d`` ones
already placed, the value 0 is forbidden once ``u = N/2`` and 1 once ``d = N/2``; the masked
softmax stays normalised over the ``Sz = 0`` sector, and configurations outside it get
``log |psi| ~ -1e9`` (psi = 0 to double precision).

Marshall sign rule: on a bipartite lattice with sublattice indicator ``m`` the
antiferromagnetic Heisenberg ground state has sign ``(-1)^{sum_i m_i sigma_i}``; with
``marshall=True`` this sign is built in and the network learns a positive amplitude.

Orderings: ``"chain"`` visits sites ``0..N-1``; ``"snake"`` (2D) visits the rows of an
``Lx x Ly`` lattice alternately left-to-right and right-to-left so that consecutive sites
are neighbours.

Subclasses implement ``_logits(x)`` (teacher forcing: ``x`` ``(B, N)`` ordered inputs ->
``(B, N, 2)`` logits and optional ``(B, N, 2)`` phases, output t depending on ``x_<t``
only) and ``_sample_step(x, t, state) -> (logits_t (B, 2), phases_t or None, state)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from physgen.quantum.lattice import Lattice

__all__ = ["AutoregressiveWavefunction", "make_ordering"]

_MASK = -1e9


def make_ordering(n_sites: int, ordering: str = "chain", lattice: Lattice | None = None) -> list[int]:
    """Site visiting order: ``"chain"`` (0..N-1) or ``"snake"`` (boustrophedon on a 2D lattice)."""
    if ordering == "chain":
        return list(range(n_sites))
    if ordering == "snake":
        if lattice is None or lattice.ndim != 2:
            raise ValueError("ordering='snake' needs a 2D lattice (physgen.quantum.lattice.Square).")
        Lx, Ly = lattice.shape
        order = []
        for x in range(Lx):
            ys = range(Ly) if x % 2 == 0 else range(Ly - 1, -1, -1)
            order += [x * Ly + y for y in ys]
        return order
    raise ValueError(f"unknown ordering {ordering!r}; use 'chain' or 'snake'.")


class AutoregressiveWavefunction(nn.Module):
    """Base class; see the module docstring.

    Args:
        n_sites: number of sites N.
        lattice: optional lattice (checked against n_sites; used for orderings and Marshall).
        ordering: ``"chain"`` or ``"snake"``.
        phase: learn a phase (complex wavefunction) in addition to the amplitude.
        u1: restrict to zero magnetisation (needs even N).
        marshall: include the Marshall sign ``(-1)^{sum_i m_i sigma_i}`` (needs a bipartite lattice).
    """

    def __init__(
        self,
        n_sites: int,
        *,
        lattice: Lattice | None = None,
        ordering: str = "chain",
        phase: bool = False,
        u1: bool = False,
        marshall: bool = False,
    ) -> None:
        super().__init__()
        if lattice is not None and lattice.n_sites != n_sites:
            raise ValueError(
                f"the lattice has {lattice.n_sites} sites but the wavefunction was built with n_sites={n_sites}; "
                "they must match."
            )
        if u1 and n_sites % 2:
            raise ValueError(f"u1=True (zero magnetisation) needs an even number of sites, got n_sites={n_sites}.")
        self.n_sites = int(n_sites)
        self.use_phase = bool(phase)
        self.u1 = bool(u1)
        order = make_ordering(n_sites, ordering, lattice)
        self.register_buffer("order", torch.as_tensor(order, dtype=torch.long), persistent=False)
        self.register_buffer("inv_order", torch.argsort(self.order), persistent=False)
        if marshall:
            if lattice is None:
                raise ValueError("marshall=True needs the lattice (for its sublattices).")
            if not lattice.bipartite:
                raise ValueError(f"the Marshall sign rule needs a bipartite lattice; {lattice!r} is not.")
            m = torch.as_tensor(lattice.sublattice, dtype=torch.float64)
        else:
            m = torch.zeros(n_sites, dtype=torch.float64)
        self.marshall = bool(marshall)
        self.register_buffer("marshall_mask", m, persistent=False)

    # -- subclass hooks ----------------------------------------------------------------
    def _logits(self, x: Tensor) -> tuple[Tensor, Tensor | None]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _sample_step(self, x: Tensor, t: int, state):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    # -- masking ------------------------------------------------------------------------
    def _u1_mask(self, x: Tensor) -> Tensor:
        """``(B, N, 2)`` bool: value allowed at step t given x_<t (teacher forcing)."""
        B, N = x.shape
        ones_before = torch.cumsum(x, 1) - x
        t = torch.arange(N, device=x.device, dtype=x.dtype)
        zeros_before = t - ones_before
        half = N // 2
        return torch.stack([zeros_before < half, ones_before < half], -1)

    def _masked_log_softmax(self, logits: Tensor, allowed: Tensor | None) -> Tensor:
        if allowed is not None:
            logits = logits.masked_fill(~allowed, _MASK)
        return torch.log_softmax(logits, -1)

    # -- public API ---------------------------------------------------------------------
    def _ordered(self, sigma: Tensor) -> Tensor:
        if sigma.ndim != 2 or sigma.shape[-1] != self.n_sites:
            raise ValueError(f"sigma must have shape (B, {self.n_sites}), got {tuple(sigma.shape)}.")
        return sigma.to(self._dtype)[:, self.order]

    def log_psi(self, sigma: Tensor) -> Tensor:
        """Complex ``log psi``. sigma: ``(B, N)`` of 0/1 -> ``(B,)`` complex."""
        x = self._ordered(sigma)
        logits, phases = self._logits(x)
        allowed = self._u1_mask(x) if self.u1 else None
        logp = self._masked_log_softmax(logits, allowed)
        xi = x.long().unsqueeze(-1)
        log_amp = 0.5 * logp.gather(-1, xi).squeeze(-1).sum(-1)
        phase = torch.zeros_like(log_amp)
        if phases is not None:
            phase = phase + phases.gather(-1, xi).squeeze(-1).sum(-1)
        if self.marshall:
            phase = phase + math.pi * (sigma.to(log_amp.dtype) @ self.marshall_mask.to(log_amp.dtype))
        return torch.complex(log_amp, phase)

    def forward(self, sigma: Tensor) -> Tensor:
        """Same as :meth:`log_psi`."""
        return self.log_psi(sigma)

    def log_prob(self, sigma: Tensor) -> Tensor:
        """Exactly normalised ``log |psi(sigma)|^2``. sigma: ``(B, N)`` -> ``(B,)`` real."""
        return 2.0 * self.log_psi(sigma).real

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Exact ancestral samples from ``|psi|^2``.

        Args:
            n: number of samples.
            generator: torch generator on the model's device.

        Returns:
            ``(n, N)`` float tensor of 0/1 in site order.
        """
        dev = self.order.device
        N = self.n_sites
        x = torch.zeros(n, N, dtype=self._dtype, device=dev)
        state = None
        ones = torch.zeros(n, dtype=self._dtype, device=dev)
        for t in range(N):
            logits, _, state = self._sample_step(x, t, state)
            if self.u1:
                allowed = torch.stack([(t - ones) < N // 2, ones < N // 2], -1)
                logits = logits.masked_fill(~allowed, _MASK)
            p1 = torch.softmax(logits.to(torch.float64), -1)[:, 1]
            u = torch.rand(n, generator=generator, device=dev, dtype=torch.float64)
            xt = (u < p1).to(self._dtype)
            x[:, t] = xt
            ones = ones + xt
        return x[:, self.inv_order]
