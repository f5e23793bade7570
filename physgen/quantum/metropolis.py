r"""Metropolis-Hastings sampling of ``|psi(sigma)|^2`` with several parallel chains.

Moves (both symmetric proposals, so the acceptance is ``min(1, |psi(sigma')/psi(sigma)|^2)``):

* ``"flip"``: flip one uniformly chosen site;
* ``"exchange"``: swap the values of a uniformly chosen bond of the lattice (or of a uniformly
  chosen pair of distinct sites without a lattice). It conserves total Sz, so chains started
  in the ``Sz = 0`` sector stay there (use it with Sz-conserving Hamiltonians).

All chains advance together (one batched ``log_psi`` call per step). A *sweep* is N steps.
Chains persist between calls of :meth:`MetropolisSampler.sample`; burn-in is run on the
first call (and on :meth:`reset`). Convergence: arviz's rank-normalised split R-hat (Vehtari et
al. 2021) over chains, computed on ``log |psi|^2`` of the draws (:func:`split_rhat`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from physgen.quantum.hamiltonians import as_log_psi
from physgen.quantum.lattice import Lattice

__all__ = ["MetropolisSampler", "split_rhat"]


def split_rhat(x: Tensor | np.ndarray) -> float:
    """Rank-normalised split R-hat (``arviz.rhat(method="rank")``) of draws ``x``: ``(n_draws, n_chains)``.

    Degenerate draws, where arviz's ratio is 0/0: 1.0 when every draw is equal, inf when each chain is
    constant but the chains differ (stuck chains).

    Raises:
        ValueError: ``x`` is not 2-D with at least 4 draws.
    """
    x = np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 4:
        raise ValueError(f"split_rhat needs (n_draws >= 4, n_chains) draws, got shape {x.shape}.")
    if np.ptp(x) == 0:
        return 1.0
    if np.all(np.ptp(x, axis=0) == 0):
        return float("inf")
    from physgen.deps import az

    return float(az.rhat(x.T, method="rank"))  # arviz: (chain, draw)


class MetropolisSampler:
    """Batched Metropolis sampler for a wavefunction with ``log_psi``.

    Args:
        model: a module with ``n_sites`` and ``log_psi(sigma) -> (B,)`` (unnormalised is fine).
        n_chains: parallel chains.
        move: ``"flip"`` or ``"exchange"``.
        lattice: bonds for exchange moves (optional; otherwise any pair of sites).
        burn_in: sweeps discarded on the first call.
        thin: sweeps between kept draws.
        sz0: start chains in the zero-magnetisation sector (needs even N; the default for
            exchange moves).
        generator: torch generator (on the model's device) for proposals and acceptances.
    """

    def __init__(
        self,
        model,
        n_chains: int = 16,
        *,
        move: str = "flip",
        lattice: Lattice | None = None,
        burn_in: int = 50,
        thin: int = 1,
        sz0: bool | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if move not in ("flip", "exchange"):
            raise ValueError(f"move must be 'flip' or 'exchange', got {move!r}.")
        N = model.n_sites
        if lattice is not None and lattice.n_sites != N:
            raise ValueError(f"the lattice has {lattice.n_sites} sites but the model has {N}; they must match.")
        sz0 = (move == "exchange") if sz0 is None else sz0
        if sz0 and N % 2:
            raise ValueError(f"the Sz = 0 sector needs an even number of sites, got N={N}.")
        if n_chains < 1 or thin < 1 or burn_in < 0:
            raise ValueError("n_chains and thin must be >= 1 and burn_in >= 0.")
        self.model = model
        self.n_chains = int(n_chains)
        self.move = move
        self.burn_in = int(burn_in)
        self.thin = int(thin)
        self.sz0 = bool(sz0)
        self.generator = generator
        self.n_sites = N
        if lattice is not None:
            self._pairs = torch.as_tensor(lattice.edges, dtype=torch.long)
        else:
            self._pairs = torch.as_tensor(
                [(i, j) for i in range(N) for j in range(i + 1, N)], dtype=torch.long
            ).reshape(-1, 2)
        self.state: Tensor | None = None  # (C, N) chains; None until the first reset()
        self._lp: Tensor | None = None  # (C,) log psi of the chains, set with state
        self.last_acceptance = float("nan")
        self.last_rhat = float("nan")

    def _device(self):
        try:
            return next(self.model.parameters()).device
        except (StopIteration, AttributeError):
            return torch.device("cpu")

    def _log_psi(self, s: Tensor) -> Tensor:
        return as_log_psi(self.model.log_psi(s))

    def reset(self) -> None:
        """Draw fresh random initial states (burn-in runs again on the next call)."""
        dev, N, C, g = self._device(), self.n_sites, self.n_chains, self.generator
        if self.sz0:
            keys = torch.rand(C, N, generator=g, device=dev)
            ranks = keys.argsort(1).argsort(1)
            s = (ranks < N // 2).to(torch.float64)
        else:
            s = (torch.rand(C, N, generator=g, device=dev) < 0.5).to(torch.float64)
        self.state = s
        with torch.no_grad():
            self._lp = self._log_psi(s)
        self._sweeps(self.burn_in)

    def _propose(self, s: Tensor) -> Tensor:
        C, N = s.shape
        g, dev = self.generator, s.device
        new = s.clone()
        r = torch.arange(C, device=dev)
        if self.move == "flip":
            i = torch.randint(0, N, (C,), generator=g, device=dev)
            new[r, i] = 1 - new[r, i]
        else:
            pairs = self._pairs.to(dev)
            k = torch.randint(0, len(pairs), (C,), generator=g, device=dev)
            i, j = pairs[k, 0], pairs[k, 1]
            vi, vj = new[r, i].clone(), new[r, j].clone()
            new[r, i], new[r, j] = vj, vi
        return new

    @torch.no_grad()
    def _sweeps(self, n_sweeps: int) -> float:
        state, lp = self.state, self._lp
        assert state is not None and lp is not None, "reset() sets the chains before any sweep"
        accepted, total = 0, 0
        for _ in range(n_sweeps * self.n_sites):
            prop = self._propose(state)
            lp_new = self._log_psi(prop)
            log_ratio = 2.0 * (lp_new.real - lp.real)
            u = torch.rand(self.n_chains, generator=self.generator, device=state.device, dtype=torch.float64)
            acc = torch.log(u) < log_ratio.to(torch.float64)
            state = torch.where(acc[:, None], prop, state)
            lp = torch.where(acc, lp_new, lp)
            self.state, self._lp = state, lp
            accepted += int(acc.sum())
            total += self.n_chains
        return accepted / max(total, 1)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """Draw about ``n`` samples (rounded up to a multiple of ``n_chains``).

        Returns:
            ``(n_draws * n_chains, N)`` configurations, draw-major: ``.reshape(n_draws,
            n_chains, N)`` recovers the chains. Sets ``last_acceptance`` and ``last_rhat``
            (split R-hat of ``log |psi|^2`` over chains, NaN with fewer than 4 draws).
        """
        if self.state is None:
            self.reset()
        else:  # the model may have changed since the last call
            self._lp = self._log_psi(self.state)
        n_draws = -(-int(n) // self.n_chains)
        draws, lps, acc = [], [], []
        for _ in range(n_draws):
            acc.append(self._sweeps(self.thin))
            assert self.state is not None and self._lp is not None, "set by reset() and every sweep"
            draws.append(self.state.clone())
            lps.append(2.0 * self._lp.real.clone())
        self.last_acceptance = float(np.mean(acc))
        lp = torch.stack(lps)
        self.last_rhat = split_rhat(lp) if n_draws >= 4 and self.n_chains >= 1 else float("nan")
        return torch.stack(draws).reshape(n_draws * self.n_chains, self.n_sites)
