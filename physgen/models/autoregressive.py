r"""Autoregressive models of binary variables with an optional context: the core shared by the
autoregressive wavefunctions (:mod:`physgen.quantum`) and the Ising emulator (:mod:`physgen.emulators`).

A model visits the N sites in an ordering ``order`` (a permutation of ``0..N-1``) and factorises

    q(x | c) = prod_t q(x_t | x_<t, c),      x_t = sigma[order[t]] in {0, 1},

each conditional a softmax over two logits, so ``q`` is exactly normalised for every context ``c``
(``(B, C)``, or None when ``context_features == 0``) and is sampled exactly, site by site
(ancestral sampling). Constraints (e.g. zero magnetisation) enter as masks of allowed values
(``_allowed`` / ``_allowed_step``), renormalising each conditional over what is allowed.

Subclasses implement two hooks, both seeing ``x`` in visiting order, ``(B, N)`` float 0/1:

* ``_logits(x, context)`` (teacher forcing) -> ``(logits (B, N, 2), extra (B, N, 2) or None)``; output
  t may depend on ``x_<t`` and the context only;
* ``_sample_step(x, t, state, context)`` -> ``(logits_t (B, 2), extra_t or None, state)``, with
  ``x[:, :t]`` filled in and ``state`` whatever the previous step returned (None at t = 0).

``extra`` is carried for subclasses (the wavefunctions' phases) and ignored by :meth:`log_prob`.

:class:`RecurrentAutoregressive` is the recurrent (GRU/LSTM) network: at step t it reads the one-hot
values of chosen earlier sites (``lookback``: by default the previous visited site; the Ising emulator
adds the already visited lattice neighbours) concatenated with the context, and a linear head gives
the logits from the top hidden state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, cast

import torch
from torch import Tensor, nn

__all__ = [
    "AutoregressiveModel",
    "RecurrentAutoregressive",
    "GRUCell",
    "LSTMCell",
    "make_ordering",
    "previous_site_lookback",
]

MASKED_LOGIT = -1e9


def make_ordering(n_sites: int, ordering: str = "chain", shape: tuple[int, int] | None = None) -> list[int]:
    """Site visiting order: ``"chain"`` (0..N-1, row-major on a grid) or ``"snake"`` (boustrophedon).

    Args:
        n_sites: N.
        ordering: ``"chain"`` or ``"snake"``.
        shape: ``(Lx, Ly)`` of a 2D grid with site ``x * Ly + y`` (needed by ``"snake"``).
    """
    if ordering == "chain":
        return list(range(n_sites))
    if ordering == "snake":
        if shape is None or len(shape) != 2 or shape[0] * shape[1] != n_sites:
            raise ValueError(f"ordering='snake' needs a 2D grid shape (Lx, Ly) with Lx * Ly = {n_sites}; got {shape}.")
        Lx, Ly = shape
        order = []
        for x in range(Lx):
            ys = range(Ly) if x % 2 == 0 else range(Ly - 1, -1, -1)
            order += [x * Ly + y for y in ys]
        return order
    raise ValueError(f"unknown ordering {ordering!r}; use 'chain' or 'snake'.")


def previous_site_lookback(n_sites: int) -> Tensor:
    """``(N, 1)`` long: step t reads the value of step t - 1 (-1, i.e. nothing, at t = 0)."""
    return (torch.arange(n_sites) - 1).view(n_sites, 1)


class AutoregressiveModel(nn.Module):
    """Base class of exactly normalised autoregressive models over N binary sites (module docstring).

    Args:
        n_sites: N.
        context_features: C, the width of the context (0 = unconditional).
        order: visiting order, a permutation of ``range(N)`` (default: ``0..N-1``).
    """

    order: Tensor  # buffers registered in __init__: the visiting order (N,) long and its inverse
    inv_order: Tensor

    def __init__(self, n_sites: int, *, context_features: int = 0, order: Sequence[int] | None = None) -> None:
        super().__init__()
        if isinstance(n_sites, bool) or not isinstance(n_sites, int) or n_sites < 1:
            raise ValueError(f"n_sites must be an integer >= 1, got {n_sites!r}.")
        if isinstance(context_features, bool) or not isinstance(context_features, int) or context_features < 0:
            raise ValueError(f"context_features must be an integer >= 0, got {context_features!r}.")
        order = list(range(n_sites)) if order is None else [int(i) for i in order]
        if sorted(order) != list(range(n_sites)):
            raise ValueError(f"order must be a permutation of range({n_sites}); got {order}.")
        self.n_sites = n_sites
        self.context_features = context_features
        self.register_buffer("order", torch.as_tensor(order, dtype=torch.long), persistent=False)
        self.register_buffer("inv_order", torch.argsort(self.order), persistent=False)

    # -- subclass hooks ----------------------------------------------------------------
    def _logits(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor | None]:  # pragma: no cover
        raise NotImplementedError

    def _sample_step(self, x: Tensor, t: int, state, context: Tensor | None = None):  # pragma: no cover
        raise NotImplementedError

    def _allowed(self, x: Tensor) -> Tensor | None:
        """``(B, N, 2)`` bool: values allowed at each step given ``x_<t`` (None = all)."""
        return None

    def _allowed_step(self, x: Tensor, t: int) -> Tensor | None:
        """``(B, 2)`` bool: values allowed at step t given ``x[:, :t]`` (None = all)."""
        return None

    @property
    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    # -- input checks -------------------------------------------------------------------
    def _ordered(self, sigma: Tensor) -> Tensor:
        if sigma.ndim != 2 or sigma.shape[-1] != self.n_sites:
            raise ValueError(f"sigma must have shape (B, {self.n_sites}), got {tuple(sigma.shape)}.")
        return sigma.to(self._dtype)[:, self.order]

    def _context(self, context: Tensor | None, batch: int) -> Tensor | None:
        """The context as ``(batch, C)`` in the model's dtype (a ``(C,)`` context is broadcast)."""
        C = self.context_features
        if C == 0:
            if context is not None:
                raise ValueError("this model has context_features=0; pass context=None.")
            return None
        if context is None:
            raise ValueError(f"this model needs a context of shape (B, {C}) (context_features={C}); got None.")
        context = torch.as_tensor(context, dtype=self._dtype, device=self.order.device)
        if context.ndim == 1:
            context = context.unsqueeze(0)
        if context.ndim != 2 or context.shape[-1] != C or context.shape[0] not in (1, batch):
            raise ValueError(f"context must have shape ({batch}, {C}) or ({C},); got {tuple(context.shape)}.")
        return context.expand(batch, C)

    # -- public API ---------------------------------------------------------------------
    def ordered_log_probs(self, sigma: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """Teacher-forced conditionals. sigma ``(B, N)`` 0/1 in site order ->
        ``(x (B, N) ordered, log q(. | x_<t) (B, N, 2), extra or None)``."""
        x = self._ordered(sigma)
        logits, extra = self._logits(x, self._context(context, x.shape[0]))
        allowed = self._allowed(x)
        if allowed is not None:
            logits = logits.masked_fill(~allowed, MASKED_LOGIT)
        return x, torch.log_softmax(logits, -1), extra

    def log_prob(self, sigma: Tensor, context: Tensor | None = None) -> Tensor:
        """Exactly normalised ``log q(sigma | context)``. sigma ``(B, N)`` 0/1, context ``(B, C)`` -> ``(B,)``."""
        x, logp, _ = self.ordered_log_probs(sigma, context)
        return logp.gather(-1, x.long().unsqueeze(-1)).squeeze(-1).sum(-1)

    @torch.no_grad()
    def sample(self, n: int, context: Tensor | None = None, *, generator: torch.Generator | None = None) -> Tensor:
        """Exact ancestral samples.

        Args:
            n: number of samples.
            context: ``(n, C)`` or ``(C,)`` (None when ``context_features == 0``).
            generator: torch generator on the model's device.

        Returns:
            ``(n, N)`` tensor of 0/1 (the model's dtype) in site order.
        """
        dev = self.order.device
        ctx = self._context(context, n)
        x = torch.zeros(n, self.n_sites, dtype=self._dtype, device=dev)
        state = None
        for t in range(self.n_sites):
            logits, _, state = self._sample_step(x, t, state, ctx)
            allowed = self._allowed_step(x, t)
            if allowed is not None:
                logits = logits.masked_fill(~allowed, MASKED_LOGIT)
            p1 = torch.softmax(logits.to(torch.float64), -1)[:, 1]
            u = torch.rand(n, generator=generator, device=dev, dtype=torch.float64)
            x[:, t] = (u < p1).to(self._dtype)
        return x[:, self.inv_order]


# -- recurrent cells (written with nn.Linear so torch.func per-sample gradients work) -----------------
class GRUCell(nn.Module):
    """GRU: ``z = s(W_z x + U_z h)``, ``r = s(W_r x + U_r h)``, ``n = tanh(W_n x + r*(U_n h))``,
    ``h' = (1 - z) n + z h``. ``wx`` maps the input ``(B, d_in)`` to the gates ``(B, 3H)``."""

    def __init__(self, d_in: int, hidden: int) -> None:
        super().__init__()
        self.wx = nn.Linear(d_in, 3 * hidden)
        self.wh = nn.Linear(hidden, 3 * hidden)
        self.hidden = hidden

    def init_state(self, B: int, ref: Tensor) -> Tensor:
        return torch.zeros(B, self.hidden, dtype=ref.dtype, device=ref.device)

    def step(self, gx: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """gx = ``wx(input)`` ``(B, 3H)``, h ``(B, H)`` -> (output h', state h')."""
        gh = self.wh(h)
        xz, xr, xn = gx.chunk(3, -1)
        hz, hr, hn = gh.chunk(3, -1)
        z = torch.sigmoid(xz + hz)
        r = torch.sigmoid(xr + hr)
        n = torch.tanh(xn + r * hn)
        h = (1 - z) * n + z * h
        return h, h


class LSTMCell(nn.Module):
    """LSTM with the usual input/forget/cell/output gates; state ``(h, c)``."""

    def __init__(self, d_in: int, hidden: int) -> None:
        super().__init__()
        self.wx = nn.Linear(d_in, 4 * hidden)
        self.wh = nn.Linear(hidden, 4 * hidden, bias=False)
        self.hidden = hidden

    def init_state(self, B: int, ref: Tensor) -> tuple[Tensor, Tensor]:
        z = torch.zeros(B, self.hidden, dtype=ref.dtype, device=ref.device)
        return (z, z)

    def step(self, gx: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        h, c = state
        i, f, g, o = (gx + self.wh(h)).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class _Cell(Protocol):
    """What the stack functions call on a :class:`GRUCell` or :class:`LSTMCell`. The state is the cell's
    own (h ``(B, H)`` for a GRU, ``(h, c)`` for an LSTM) and only passed back to the same cell."""

    wx: nn.Linear

    def init_state(self, B: int, ref: Tensor) -> Any: ...

    def step(self, gx: Tensor, state: Any) -> tuple[Tensor, Any]: ...


def _cells(cells: nn.ModuleList) -> Sequence[_Cell]:
    """A stack from :func:`make_cells` with its items' type (a ModuleList types them as nn.Module)."""
    return cast(Sequence[_Cell], cells)


def make_cells(cell: str, d_in: int, hidden: int, layers: int) -> nn.ModuleList:
    """A stack of ``layers`` GRU/LSTM cells; layer l > 0 reads the hidden state of layer l - 1."""
    if cell not in ("gru", "lstm"):
        raise ValueError(f"cell must be 'gru' or 'lstm', got {cell!r}.")
    if hidden < 1 or layers < 1:
        raise ValueError(f"hidden and layers must be >= 1, got hidden={hidden}, layers={layers}.")
    Cell = GRUCell if cell == "gru" else LSTMCell
    return nn.ModuleList([Cell(d_in if layer == 0 else hidden, hidden) for layer in range(layers)])


def run_stack(cells: nn.ModuleList, inp: Tensor, states: list) -> tuple[Tensor, list]:
    """One time step through a stack of cells. inp ``(B, d_in)`` -> (top hidden ``(B, H)``, new states)."""
    new = []
    h = inp
    for cell, st in zip(_cells(cells), states):
        h, st = cell.step(cell.wx(h), st)
        new.append(st)
    return h, new


def run_sequence(cells: nn.ModuleList, inp: Tensor) -> Tensor:
    """Teacher forcing through the stack. inp ``(B, T, d_in)`` -> top hidden states ``(B, T, H)``."""
    B, T, _ = inp.shape
    hs = []
    seq = inp.transpose(0, 1)  # time-major, so that every step reads a contiguous block
    if len(cells) == 1:  # the input projections of all steps at once
        cell = _cells(cells)[0]
        st = cell.init_state(B, inp)
        for g in cell.wx(seq.contiguous()).unbind(0):  # unbind: a backward without T full-size zero buffers
            h, st = cell.step(g, st)
            hs.append(h)
    else:
        states = [c.init_state(B, inp) for c in _cells(cells)]
        for step_input in seq.unbind(0):
            h, states = run_stack(cells, step_input, states)
            hs.append(h)
    return torch.stack(hs, 1)


class RecurrentAutoregressive(AutoregressiveModel):
    """Recurrent autoregressive model with a context.

    Step t reads ``[one-hot(x_s) for s in lookback[t]]`` (zeros for s = -1), concatenated with the
    context, through a stack of GRU/LSTM cells; a linear head maps the top hidden state to the two
    logits, plus a learned per-step bias with ``position_bias=True``.

    Args:
        n_sites: N.
        hidden, layers, cell: the recurrent stack (``"gru"`` or ``"lstm"``).
        context_features: C.
        order: visiting order (default ``0..N-1``).
        lookback: ``(N, K)`` long tensor of visiting steps (``< t``, or -1 for none) whose values step t
            reads; default: the previous step (:func:`previous_site_lookback`).
        position_bias: add a learned ``(N, 2)`` bias to the logits.
    """

    lookback: Tensor  # buffer registered in __init__: (N, K) long

    def __init__(
        self,
        n_sites: int,
        hidden: int = 32,
        layers: int = 1,
        cell: str = "gru",
        *,
        context_features: int = 0,
        order: Sequence[int] | None = None,
        lookback: Tensor | None = None,
        position_bias: bool = False,
    ) -> None:
        super().__init__(n_sites, context_features=context_features, order=order)
        lookback = previous_site_lookback(n_sites) if lookback is None else torch.as_tensor(lookback, dtype=torch.long)
        steps = torch.arange(n_sites).view(-1, 1)
        if lookback.ndim != 2 or lookback.shape[0] != n_sites or bool(((lookback >= steps) | (lookback < -1)).any()):
            raise ValueError(
                f"lookback must be ({n_sites}, K) with entries in [-1, t) at row t; got {tuple(lookback.shape)}."
            )
        self.register_buffer("lookback", lookback, persistent=False)
        self.cells = make_cells(cell, 2 * lookback.shape[1] + context_features, hidden, layers)
        self.head = nn.Linear(hidden, 2)
        self.position_bias = nn.Parameter(torch.zeros(n_sites, 2)) if position_bias else None

    def _inputs(self, x: Tensor, context: Tensor | None) -> Tensor:
        """Teacher-forced inputs: x ``(B, N)`` ordered -> ``(B, N, 2K + C)``."""
        B, N = x.shape
        lb = self.lookback
        vals = x[:, lb.clamp_min(0).view(-1)].view(B, N, -1)  # (B, N, K)
        present = (lb >= 0).to(x.dtype)
        feats = torch.stack([(1 - vals) * present, vals * present], -1).reshape(B, N, -1)
        if context is not None:
            feats = torch.cat([feats, context.unsqueeze(1).expand(B, N, -1)], -1)
        return feats

    def _input_step(self, x: Tensor, t: int, context: Tensor | None) -> Tensor:
        lb = self.lookback[t]
        vals = x[:, lb.clamp_min(0)]  # (B, K)
        present = (lb >= 0).to(x.dtype)
        feats = torch.stack([(1 - vals) * present, vals * present], -1).reshape(x.shape[0], -1)
        return feats if context is None else torch.cat([feats, context], -1)

    def _head(self, h: Tensor, t: int | None = None) -> Tensor:
        logits = self.head(h)
        if self.position_bias is not None:
            logits = logits + (self.position_bias if t is None else self.position_bias[t])
        return logits

    def _logits(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, None]:
        return self._head(run_sequence(self.cells, self._inputs(x, context))), None

    def _sample_step(self, x: Tensor, t: int, state, context: Tensor | None = None):
        if state is None:
            state = [c.init_state(x.shape[0], x) for c in _cells(self.cells)]
        h, state = run_stack(self.cells, self._input_step(x, t, context), state)
        return self._head(h, t), None, state
