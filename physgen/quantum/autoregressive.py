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

The factorisation, ordering, masking and ancestral sampling are those of
:class:`physgen.models.autoregressive.AutoregressiveModel` (shared with the Ising emulator; the
wavefunctions have no context). Subclasses implement its hooks ``_logits(x, context=None)`` (teacher
forcing: ``x`` ``(B, N)`` ordered inputs -> ``(B, N, 2)`` logits and optional ``(B, N, 2)`` phases,
output t depending on ``x_<t`` only) and ``_sample_step(x, t, state, context=None) ->
(logits_t (B, 2), phases_t or None, state)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from physgen.models.autoregressive import AutoregressiveModel
from physgen.models.autoregressive import make_ordering as _grid_ordering
from physgen.quantum.lattice import Lattice

__all__ = ["AutoregressiveWavefunction", "make_ordering"]


def make_ordering(n_sites: int, ordering: str = "chain", lattice: Lattice | None = None) -> list[int]:
    """Site visiting order: ``"chain"`` (0..N-1) or ``"snake"`` (boustrophedon on a 2D lattice)."""
    if ordering != "snake":
        return _grid_ordering(n_sites, ordering, None)
    if lattice is None or lattice.ndim != 2:
        raise ValueError("ordering='snake' needs a 2D lattice (physgen.quantum.lattice.Square).")
    return _grid_ordering(n_sites, ordering, (lattice.shape[0], lattice.shape[1]))


class AutoregressiveWavefunction(AutoregressiveModel):
    """Base class; see the module docstring.

    Args:
        n_sites: number of sites N.
        lattice: optional lattice (checked against n_sites; used for orderings and Marshall).
        ordering: ``"chain"`` or ``"snake"``.
        phase: learn a phase (complex wavefunction) in addition to the amplitude.
        u1: restrict to zero magnetisation (needs even N).
        marshall: include the Marshall sign ``(-1)^{sum_i m_i sigma_i}`` (needs a bipartite lattice).
    """

    marshall_mask: Tensor  # (N,) buffer: the sublattice m_i of the Marshall sign (zeros without it)

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
        if lattice is not None and lattice.n_sites != n_sites:
            raise ValueError(
                f"the lattice has {lattice.n_sites} sites but the wavefunction was built with n_sites={n_sites}; "
                "they must match."
            )
        if u1 and n_sites % 2:
            raise ValueError(f"u1=True (zero magnetisation) needs an even number of sites, got n_sites={n_sites}.")
        super().__init__(int(n_sites), order=make_ordering(n_sites, ordering, lattice))
        self.use_phase = bool(phase)
        self.u1 = bool(u1)
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

    # -- U(1) masking (hooks of AutoregressiveModel) --------------------------------------
    def _u1_mask(self, x: Tensor) -> Tensor:
        """``(B, N, 2)`` bool: value allowed at step t given x_<t (teacher forcing)."""
        B, N = x.shape
        ones_before = torch.cumsum(x, 1) - x
        t = torch.arange(N, device=x.device, dtype=x.dtype)
        zeros_before = t - ones_before
        half = N // 2
        return torch.stack([zeros_before < half, ones_before < half], -1)

    def _allowed(self, x: Tensor) -> Tensor | None:
        return self._u1_mask(x) if self.u1 else None

    def _allowed_step(self, x: Tensor, t: int) -> Tensor | None:
        if not self.u1:
            return None
        ones = x[:, :t].sum(1)
        half = self.n_sites // 2
        return torch.stack([(t - ones) < half, ones < half], -1)

    # -- public API ---------------------------------------------------------------------
    def log_psi(self, sigma: Tensor) -> Tensor:
        """Complex ``log psi``. sigma: ``(B, N)`` of 0/1 -> ``(B,)`` complex."""
        x, logp, phases = self.ordered_log_probs(sigma)
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

    def log_prob(self, sigma: Tensor, context: Tensor | None = None) -> Tensor:
        """Exactly normalised ``log |psi(sigma)|^2``. sigma: ``(B, N)`` -> ``(B,)`` real."""
        return 2.0 * self.log_psi(sigma).real

    @torch.no_grad()
    def sample(self, n: int, context: Tensor | None = None, *, generator: torch.Generator | None = None) -> Tensor:
        """Exact ancestral samples from ``|psi|^2``.

        Args:
            n: number of samples.
            context: None (wavefunctions have no context).
            generator: torch generator on the model's device.

        Returns:
            ``(n, N)`` float tensor of 0/1 in site order.
        """
        return super().sample(n, context, generator=generator)
