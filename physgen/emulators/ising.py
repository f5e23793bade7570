r"""Autoregressive emulator of 2D Ising configurations given β, with exact sampling and exact log q.

Model (periodic L×L torus, ``H = -J Σ_<ij> s_i s_j``, h = 0)::

    q(s | β) = Π_t q(s_t | s_<t, β)                       (raster order, site t = r L + c),
    q_sym(s | β) = ½ [q(s | β) + q(-s | β)]               (z2=True: the m -> -m symmetry built in).

The conditionals come from :class:`physgen.models.autoregressive.RecurrentAutoregressive` (a GRU
by default, the core shared with :mod:`physgen.quantum`): at site (r, c) it reads the already
visited lattice neighbours, left (r, c-1), up (r-1, c), up-left, up-right, and the periodic
images (r, 0) at c = L-1 and (0, c) at r = L-1, each as a one-hot (zeros where not visited
yet), plus the context ``2 (β - β_lo) / (β_hi - β_lo) - 1`` (0 for a single β) and a learned
bias per site. Spins map to the binary sites as ``σ = (1 - s) / 2``.

``q_sym`` is exactly normalised and sampled exactly (a draw of q, flipped with probability ½).
β outside the training range ``beta_range`` is allowed but warns: the emulator extrapolates.

Training: :func:`physgen.emulators.ising_training.fit_maximum_likelihood` (on MCMC samples, via
:func:`physgen.fit` and :meth:`IsingEmulator.loss`) or
:func:`physgen.emulators.ising_training.fit_variational` (from the Boltzmann weight alone).
Neural importance sampling: :mod:`physgen.emulators.ising_nis`.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn

from physgen.models.autoregressive import RecurrentAutoregressive

__all__ = ["IsingEmulator", "ExtrapolationWarning", "ising_lookback", "bond_sum", "magnetisation_sum"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class ExtrapolationWarning(UserWarning):
    """β outside the emulator's training range: the output is an extrapolation."""


def bond_sum(spins: Tensor) -> Tensor:
    """Σ_<ij> s_i s_j over the 2N bonds of the torus. spins ``(*B, L, L)`` ±1 -> ``(*B,)``."""
    return (spins * (torch.roll(spins, 1, -1) + torch.roll(spins, 1, -2))).sum((-2, -1))


def magnetisation_sum(spins: Tensor) -> Tensor:
    """M = Σ_i s_i. spins ``(*B, L, L)`` -> ``(*B,)``."""
    return spins.sum((-2, -1))


def ising_lookback(L: int) -> Tensor:
    """``(L², 6)`` long: the raster steps of the visited neighbours of each site (-1 = not visited yet):
    left, up, up-left, up-right, periodic right (r, 0) at c = L-1, periodic down (0, c) at r = L-1."""
    rows = []
    for r in range(L):
        for c in range(L):
            t = r * L + c
            rows.append(
                [
                    t - 1 if c > 0 else -1,
                    t - L if r > 0 else -1,
                    t - L - 1 if r > 0 and c > 0 else -1,
                    t - L + 1 if r > 0 and c < L - 1 else -1,
                    r * L if c == L - 1 and L > 1 else -1,
                    c if r == L - 1 and L > 1 else -1,
                ]
            )
    return torch.as_tensor(rows, dtype=torch.long)


class IsingEmulator(nn.Module):
    """q(s | β) for L×L periodic Ising configurations (module docstring).

    Args:
        L: linear size (>= 2).
        beta_range: ``(β_lo, β_hi)``, the training range of β (β_lo <= β_hi; equal for one β).
        J: coupling (> 0), used by :meth:`energy`.
        hidden, layers, cell: the recurrent network (GRU/LSTM width, depth).
        z2: symmetrise under s -> -s (recommended at h = 0).
        dtype: ``"float32"`` or ``"float64"``.

    Example:
        >>> emu = IsingEmulator(4, beta_range=(0.3, 0.5), hidden=8)
        >>> s = emu.sample(5, 0.44, generator=torch.Generator().manual_seed(0))   # (5, 4, 4) ±1
        >>> emu.log_prob(s, 0.44).shape
        torch.Size([5])
    """

    name = "ising_autoregressive"

    def __init__(
        self,
        L: int,
        *,
        beta_range: tuple[float, float] = (0.2, 0.8),
        J: float = 1.0,
        hidden: int = 64,
        layers: int = 1,
        cell: str = "gru",
        z2: bool = True,
        dtype: str = "float32",
    ) -> None:
        super().__init__()
        if isinstance(L, bool) or not isinstance(L, int) or L < 2:
            raise ValueError(f"L must be an integer >= 2, got {L!r}.")
        lo, hi = (float(b) for b in beta_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi):
            raise ValueError(f"beta_range must be (lo, hi) with 0 <= lo <= hi, finite; got {beta_range!r}.")
        if not (math.isfinite(J) and J > 0):
            raise ValueError(f"J must be a finite number > 0, got {J!r}.")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {list(_DTYPES)}, got {dtype!r}.")
        self.L, self.n_sites, self.J, self.z2 = L, L * L, float(J), bool(z2)
        self.beta_range = (lo, hi)
        self.net = RecurrentAutoregressive(
            L * L, hidden, layers, cell, context_features=1, lookback=ising_lookback(L), position_bias=True
        )
        self.config = {
            "L": L,
            "beta_range": [lo, hi],
            "J": self.J,
            "hidden": hidden,
            "layers": layers,
            "cell": cell,
            "z2": self.z2,
            "dtype": dtype,
        }
        self.to(_DTYPES[dtype])

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- inputs ----------------------------------------------------------------------------
    def betas(self, beta: Tensor | float, n: int, *, warn: bool = True) -> Tensor:
        """β as ``(n,)`` in the model's dtype from a float, ``(1,)``, ``(n,)`` or ``(n, 1)``; warns
        (:class:`ExtrapolationWarning`) when any β lies outside ``beta_range``."""
        b = torch.as_tensor(beta, dtype=self.dtype, device=self.device).reshape(-1)
        if b.numel() not in (1, n):
            raise ValueError(
                f"beta must be a number or hold one value per configuration ({n}); got {b.numel()} values."
            )
        if not bool(torch.isfinite(b).all()) or bool((b < 0).any()):
            raise ValueError("beta must be finite and >= 0.")
        lo, hi = self.beta_range
        tol = 1e-9 * max(1.0, hi)
        if warn and bool(((b < lo - tol) | (b > hi + tol)).any()):
            bad = b[(b < lo - tol) | (b > hi + tol)][0].item()
            warnings.warn(
                f"beta = {bad:.6g} is outside the emulator's training range [{lo:g}, {hi:g}]: the emulator "
                "extrapolates there. Train with a beta_range that covers it.",
                ExtrapolationWarning,
                stacklevel=3,
            )
        return b.expand(n)

    def _context(self, b: Tensor) -> Tensor:
        lo, hi = self.beta_range
        c = torch.zeros_like(b) if hi == lo else 2.0 * (b - lo) / (hi - lo) - 1.0
        return c.unsqueeze(-1)

    def _check_spins(self, spins: Tensor) -> Tensor:
        L = self.L
        if not isinstance(spins, Tensor) or spins.ndim < 2 or tuple(spins.shape[-2:]) != (L, L):
            got = tuple(spins.shape) if isinstance(spins, Tensor) else type(spins).__name__
            raise ValueError(f"spins must have shape (*B, {L}, {L}) for this IsingEmulator(L={L}); got {got}.")
        return spins.to(self.dtype)

    # -- densities ---------------------------------------------------------------------------
    def log_prob(self, spins: Tensor, beta: Tensor | float, *, warn: bool = True) -> Tensor:
        """Exact ``log q(s | β)``. spins ``(*B, L, L)`` ±1, β a number or ``(*B,)`` -> ``(*B,)``."""
        s = self._check_spins(spins)
        batch = s.shape[:-2]
        s = s.reshape(-1, self.n_sites)
        n = s.shape[0]
        ctx = self._context(self.betas(beta, n, warn=warn))
        sigma = (1 - s) / 2
        if not self.z2:
            return self.net.log_prob(sigma, ctx).reshape(batch)
        both = self.net.log_prob(torch.cat([sigma, 1 - sigma]), torch.cat([ctx, ctx]))
        return (torch.logaddexp(both[:n], both[n:]) - math.log(2.0)).reshape(batch)

    @torch.no_grad()
    def sample(
        self, n: int, beta: Tensor | float, *, generator: torch.Generator | None = None, warn: bool = True
    ) -> Tensor:
        """``n`` exact draws of ``q(s | β)``: ``(n, L, L)`` ±1 in the model's dtype.

        Args:
            n: number of configurations.
            beta: a number or ``(n,)``.
            generator: torch generator on the model's device.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}.")
        ctx = self._context(self.betas(beta, n, warn=warn))
        sigma = self.net.sample(n, ctx, generator=generator)
        s = 1 - 2 * sigma
        if self.z2:
            flip = torch.rand(n, 1, generator=generator, device=self.device) < 0.5
            s = torch.where(flip, -s, s)
        return s.reshape(n, self.L, self.L)

    def energy(self, spins: Tensor) -> Tensor:
        """``H(s) = -J Σ_<ij> s_i s_j``: spins ``(*B, L, L)`` -> ``(*B,)``."""
        return -self.J * bond_sum(self._check_spins(spins))

    # -- training hook (physgen.fit) ---------------------------------------------------------
    def loss(self, beta: Tensor, spins: Tensor) -> Tensor:
        """Negative log-likelihood per spin of the unsymmetrised network, ``-mean log q(s | β) / N``: beta
        ``(B, 1)`` or ``(B,)``, spins ``(B, L, L)`` ±1 (the hook :func:`physgen.fit` minimises).

        With ``z2`` the network itself is fitted (one pass instead of two); on m -> -m symmetric data the
        symmetrised ``q_sym`` is then at least as close to the data: KL(p || q_sym) <= KL(p || q) by convexity.
        """
        s = self._check_spins(spins).reshape(-1, self.n_sites)
        ctx = self._context(self.betas(beta.reshape(-1), s.shape[0], warn=False))
        return -self.net.log_prob((1 - s) / 2, ctx).mean() / self.n_sites
