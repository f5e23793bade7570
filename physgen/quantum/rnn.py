r"""Autoregressive recurrent (GRU or LSTM) wavefunction.

At step t the recurrent cell reads the one-hot of the previous visited spin ``x_{t-1}``
(zeros at t = 0) and its hidden state ``h_{t-1}``; a linear head maps ``h_t`` to the two
logits of ``p(x_t | x_<t)`` and, with ``phase=True``, a second head gives the phases
``phi_t = pi * softsign(.)`` of the two values. Because ``h_t`` only sees ``x_<t``, the
factorisation of :mod:`physgen.quantum.autoregressive` holds exactly (normalised,
exactly sampled).

GRU:  ``z = s(W_z x + U_z h)``, ``r = s(W_r x + U_r h)``, ``n = tanh(W_n x + r*(U_n h))``,
``h' = (1 - z) n + z h``.  LSTM: the usual input/forget/cell/output gates.
Stacked layers feed the hidden state of layer l as the input of layer l + 1.
The cells (:class:`physgen.models.autoregressive.GRUCell` / ``LSTMCell``, shared with the Ising
emulator) are written with ``nn.Linear`` so ``torch.func`` (per-sample gradients) works.
"""

from __future__ import annotations

import math
from typing import Protocol, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from physgen.models.autoregressive import GRUCell, LSTMCell, make_cells, run_sequence, run_stack
from physgen.quantum.autoregressive import AutoregressiveWavefunction
from physgen.quantum.lattice import Lattice

__all__ = ["RNNWavefunction"]

S = TypeVar("S")  # a cell's state: h (B, H) for a GRU, (h, c) for an LSTM


class _Cell(Protocol[S]):
    """A recurrent cell (:class:`GRUCell` is a ``_Cell[Tensor]``, :class:`LSTMCell` a ``_Cell[tuple]``)."""

    wx: nn.Linear

    def init_state(self, B: int, ref: Tensor, /) -> S: ...

    def step(self, gx: Tensor, state: S, /) -> tuple[Tensor, S]: ...


class RNNWavefunction(AutoregressiveWavefunction):
    """Autoregressive GRU/LSTM wavefunction.

    Args:
        n_sites: number of sites N.
        hidden: hidden size of every layer.
        layers: number of stacked recurrent layers.
        cell: ``"gru"`` or ``"lstm"``.
        lattice: optional lattice (needed for ``ordering="snake"`` and ``marshall``).
        ordering: ``"chain"`` (1D) or ``"snake"`` (2D boustrophedon).
        phase: learn a phase head (complex wavefunction).
        u1: zero-magnetisation masking (even N).
        marshall: built-in Marshall sign (bipartite lattice).
        dtype: parameter dtype (float64 default for accurate VMC).

    Example:
        >>> psi = RNNWavefunction(6, hidden=8)
        >>> s = psi.sample(4, generator=torch.Generator().manual_seed(0))
        >>> psi.log_psi(s).shape
        torch.Size([4])
    """

    def __init__(
        self,
        n_sites: int,
        hidden: int = 32,
        layers: int = 1,
        cell: str = "gru",
        *,
        lattice: Lattice | None = None,
        ordering: str = "chain",
        phase: bool = False,
        u1: bool = False,
        marshall: bool = False,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__(n_sites, lattice=lattice, ordering=ordering, phase=phase, u1=u1, marshall=marshall)
        self.cells = make_cells(cell, 2, hidden, layers)
        self.head = nn.Linear(hidden, 2)
        self.phase_head = nn.Linear(hidden, 2) if phase else None
        self.config = {
            "type": "rnn",
            "n_sites": n_sites,
            "hidden": hidden,
            "layers": layers,
            "cell": cell,
            "ordering": ordering,
            "phase": phase,
            "u1": u1,
            "marshall": marshall,
            "dtype": str(dtype).replace("torch.", ""),
        }
        self.to(dtype)

    def _run(self, inp: Tensor, states: list):
        """One time step through the stack. inp: (B, 2) -> top hidden (B, H)."""
        return run_stack(self.cells, inp, states)

    def _heads(self, h: Tensor):
        logits = self.head(h)
        phases = math.pi * F.softsign(self.phase_head(h)) if self.phase_head is not None else None
        return logits, phases

    def _logits(self, x: Tensor, context: Tensor | None = None):
        onehot = torch.stack([1 - x, x], -1)  # (B, N, 2)
        inp = torch.cat([torch.zeros_like(onehot[:, :1]), onehot[:, :-1]], 1)
        return self._heads(run_sequence(self.cells, inp))

    def log_psi_single_flips(self, sigma: Tensor) -> Tensor | None:
        """``log psi`` of every single-site flip of each configuration, sharing prefixes.

        Flipping the spin at ordered position i leaves the hidden states of steps <= i
        unchanged, so only steps > i are recomputed (N^2/2 cell steps per sample instead of
        N^2). Used by the TFIM local energy. Returns None where unsupported (stacked layers
        or U(1) masking), and the caller then evaluates the flipped configurations directly.

        Args:
            sigma: ``(B, N)`` configurations.

        Returns:
            ``(B, N)`` complex: entry ``[b, j]`` is ``log psi`` of ``sigma_b`` with site j flipped.
        """
        if len(self.cells) != 1 or self.u1:
            return None
        cell = self.cells[0]
        if isinstance(cell, GRUCell):
            return self._single_flips(cell, sigma)
        assert isinstance(cell, LSTMCell), "make_cells builds GRU or LSTM cells"
        return self._single_flips(cell, sigma)

    def _single_flips(self, cell: _Cell[S], sigma: Tensor) -> Tensor:
        """:meth:`log_psi_single_flips` with the one cell of the stack (generic in the cell's state)."""
        x = self._ordered(sigma)
        B, N = x.shape
        onehot = torch.stack([1 - x, x], -1)
        inp = torch.cat([torch.zeros_like(onehot[:, :1]), onehot[:, :-1]], 1)
        gx = cell.wx(inp)  # (B, N, G)
        gflip = cell.wx(torch.flip(onehot, [-1]))  # input of step i+1 when x_i is flipped
        st = cell.init_state(B, x)
        hs: list[Tensor] = []
        states: list[S] = []
        for t in range(N):
            h, st = cell.step(gx[:, t], st)
            hs.append(h)
            states.append(st)
        logits, phases = self._heads(torch.stack(hs, 1))  # (B, N, 2)
        logp = torch.log_softmax(logits, -1)
        xi = x.long().unsqueeze(-1)
        lp_obs = logp.gather(-1, xi).squeeze(-1)  # (B, N)
        lp_flip = logp.gather(-1, 1 - xi).squeeze(-1)
        ph_obs = phases.gather(-1, xi).squeeze(-1) if phases is not None else torch.zeros_like(lp_obs)
        ph_flip = phases.gather(-1, 1 - xi).squeeze(-1) if phases is not None else torch.zeros_like(lp_obs)
        prefix_lp = torch.cumsum(lp_obs, 1) - lp_obs  # sum_{t<i}
        prefix_ph = torch.cumsum(ph_obs, 1) - ph_obs
        # suffix terms for flips i < t, computed by advancing a growing set of flipped runs
        suffix_lp = torch.zeros(B, N, dtype=x.dtype, device=x.device)
        suffix_ph = torch.zeros_like(suffix_lp)
        run: S | None = None  # states of the flipped runs i = 0..t-1, batched as (B, t, ...)

        def cat_state(a, b):
            if isinstance(a, tuple):
                return tuple(torch.cat([u, v], 1) for u, v in zip(a, b))
            return torch.cat([a, b], 1)

        def flat(s, k):
            return tuple(u.reshape(B * k, -1) for u in s) if isinstance(s, tuple) else s.reshape(B * k, -1)

        def unflat(s, k):
            return tuple(u.reshape(B, k, -1) for u in s) if isinstance(s, tuple) else s.reshape(B, k, -1)

        def expand(s):
            return tuple(u.unsqueeze(1) for u in s) if isinstance(s, tuple) else s.unsqueeze(1)

        for t in range(1, N):
            # advance existing runs (flips i < t-1) with the original input of step t
            if run is not None:
                k = t - 1
                g = gx[:, t].unsqueeze(1).expand(B, k, -1).reshape(B * k, -1)
                h_old, s_old = cell.step(g, flat(run, k))
                run = unflat(s_old, k)
                h_old = h_old.reshape(B, k, -1)
            # start the run of flip i = t-1 from the original state of step t-1
            h_new, s_new = cell.step(gflip[:, t - 1], states[t - 1])
            run = expand(s_new) if run is None else cat_state(run, expand(s_new))
            hcur = h_new.unsqueeze(1) if t == 1 else torch.cat([h_old, h_new.unsqueeze(1)], 1)  # (B, t, H)
            lg, ph = self._heads(hcur)
            lpt = torch.log_softmax(lg, -1)
            xt = x[:, t].long().view(B, 1, 1).expand(B, t, 1)
            suffix_lp[:, :t] += lpt.gather(-1, xt).squeeze(-1)
            if ph is not None:
                suffix_ph[:, :t] += ph.gather(-1, xt).squeeze(-1)
        log_amp = 0.5 * (prefix_lp + lp_flip + suffix_lp)  # (B, N) in ordered positions
        phase = prefix_ph + ph_flip + suffix_ph
        # back to site order: column j = flip of site j = ordered position inv_order[j]
        log_amp = log_amp[:, self.inv_order]
        phase = phase[:, self.inv_order]
        if self.marshall:
            m = self.marshall_mask.to(log_amp.dtype)
            base = sigma.to(log_amp.dtype) @ m
            flipped = base[:, None] + m[None, :] * (1 - 2 * sigma.to(log_amp.dtype))
            phase = phase + math.pi * flipped
        return torch.complex(log_amp, phase)

    def _sample_step(self, x: Tensor, t: int, state, context: Tensor | None = None):
        B = x.shape[0]
        if state is None:
            state = []
            for c in self.cells:
                assert isinstance(c, (GRUCell, LSTMCell)), "make_cells builds GRU or LSTM cells"
                state.append(c.init_state(B, x))
        if t == 0:
            inp = torch.zeros(B, 2, dtype=x.dtype, device=x.device)
        else:
            prev = x[:, t - 1]
            inp = torch.stack([1 - prev, prev], -1)
        h, state = self._run(inp, state)
        logits, phases = self._heads(h)
        return logits, phases, state
