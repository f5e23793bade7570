r"""The autoregressive lattice emulator as a :class:`physgen.core.ConditionalModel` family, so that
``physgen.fit_emulator(data, model=AutoregressiveLattice((L, L), context_dim), target_standardization="none")``
trains it on ±1 lattices with any θ encoder, like every other family.

The network is that of :class:`physgen.emulators.ising.IsingEmulator` (a GRU reading the visited lattice
neighbours, :func:`physgen.emulators.ising.ising_lookback`), with the encoded context ``(B, C)`` in place
of β. Targets are ±1 spins ``(L, L)``: pass ``target_standardization="none"`` (a target is read as spin
+1 where it is >= 0). With ``z2`` the density is the symmetrised mixture ½[q(s | c) + q(-s | c)]; the
loss fits the network itself (see :meth:`IsingEmulator.loss`).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from physgen.emulators.ising import ising_lookback
from physgen.models.autoregressive import RecurrentAutoregressive

__all__ = ["AutoregressiveLattice"]


class AutoregressiveLattice(nn.Module):
    """q(s | c) over ±1 lattices ``(L, L)`` given a context ``(C,)`` (module docstring).

    Args:
        event_shape: ``(L, L)``.
        context_dim: C (>= 0).
        hidden, layers, cell: the recurrent network.
        z2: symmetrise under s -> -s.
    """

    name = "autoregressive_lattice"
    fit_defaults: ClassVar[dict] = {}
    default_transform: ClassVar[str] = "unconstrained"
    sample_block: ClassVar[int] = 4096

    def __init__(
        self,
        event_shape: tuple[int, ...],
        context_dim: int = 0,
        *,
        hidden: int = 64,
        layers: int = 1,
        cell: str = "gru",
        z2: bool = True,
    ) -> None:
        super().__init__()
        shape = tuple(int(v) for v in event_shape)
        if len(shape) != 2 or shape[0] != shape[1] or shape[0] < 2:
            raise ValueError(
                f"AutoregressiveLattice models square lattices, event shape (L, L) with L >= 2; got {shape}."
            )
        self.event_shape, self.context_dim, self.z2 = shape, int(context_dim), bool(z2)
        self.L, self.n_sites = shape[0], shape[0] * shape[1]
        self.net = RecurrentAutoregressive(
            self.n_sites,
            hidden,
            layers,
            cell,
            context_features=self.context_dim,
            lookback=ising_lookback(self.L),
            position_bias=True,
        )
        self.config = {
            "event_shape": list(shape),
            "context_dim": self.context_dim,
            "hidden": hidden,
            "layers": layers,
            "cell": cell,
            "z2": self.z2,
        }

    def _bits(self, target: Tensor) -> Tensor:
        if tuple(target.shape[-2:]) != self.event_shape:
            raise ValueError(f"target must have shape (*B, {self.L}, {self.L}); got {tuple(target.shape)}.")
        return (target.reshape(-1, self.n_sites) < 0).to(next(self.parameters()).dtype)

    def _ctx(self, context: Tensor | None, n: int) -> Tensor | None:
        if self.context_dim == 0:
            return None
        if context is None:
            raise ValueError(f"this model needs a context (*B, {self.context_dim}); got None.")
        return (
            context.reshape(-1, self.context_dim).expand(n, -1)
            if context.numel() == self.context_dim
            else context.reshape(n, self.context_dim)
        )

    def loss(self, target: Tensor, context: Tensor | None, *, generator: torch.Generator | None = None) -> Tensor:
        """``-mean log q(s | c) / N`` of the network: target ``(B, L, L)`` ±1, context ``(B, C)``."""
        bits = self._bits(target)
        return -self.net.log_prob(bits, self._ctx(context, bits.shape[0])).mean() / self.n_sites

    def log_prob(self, target: Tensor, context: Tensor | None) -> Tensor:
        """Exact log q: target ``(*B, L, L)``, context ``(*B, C)`` (broadcast) -> ``(*B,)``."""
        batch = target.shape[:-2]
        if context is not None and self.context_dim:
            batch = torch.broadcast_shapes(batch, context.shape[:-1])
            target = target.expand(*batch, *self.event_shape)
            context = context.expand(*batch, self.context_dim)
        bits = self._bits(target)
        n = bits.shape[0]
        ctx = self._ctx(context, n)
        if not self.z2:
            return self.net.log_prob(bits, ctx).reshape(batch)
        both = self.net.log_prob(torch.cat([bits, 1 - bits]), None if ctx is None else torch.cat([ctx, ctx]))
        return (torch.logaddexp(both[:n], both[n:]) - math.log(2.0)).reshape(batch)

    @torch.no_grad()
    def sample(
        self, shape: tuple[int, ...], context: Tensor | None, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Exact draws: context ``(*Bc, C)`` -> ``(*shape, *Bc, L, L)`` ±1."""
        shape = tuple(shape)
        reps = math.prod(shape)
        bc: tuple[int, ...] = ()
        if self.context_dim == 0:
            ctx = None
        elif context is None:
            raise ValueError(f"this model needs a context (*B, {self.context_dim}); got None.")
        else:
            bc = tuple(context.shape[:-1])
            ctx = context.reshape(1, -1, self.context_dim).expand(reps, -1, -1).reshape(-1, self.context_dim)
        n = reps * math.prod(bc)
        bits = self.net.sample(n, ctx, generator=generator)
        s = 1 - 2 * bits
        if self.z2:
            flip = torch.rand(n, 1, generator=generator, device=s.device) < 0.5
            s = torch.where(flip, -s, s)
        return s.reshape(*shape, *bc, *self.event_shape)
