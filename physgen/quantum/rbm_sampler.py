r"""Fast Metropolis sampling of an RBM with cached effective angles (O(M) per proposal).

For :class:`~physgen.quantum.rbm.RBMWavefunction` with spins ``s_i = 1 - 2 sigma_i``,

    log psi(s) = sum_i a_i s_i + sum_j log cosh theta_j,      theta_j = b_j + sum_i W_ji s_i,

flipping site ``i`` changes ``theta`` by ``-2 s_i W_{:, i}`` and ``log psi`` by

    -2 a_i s_i + sum_j [log cosh(theta_j - 2 s_i W_ji) - log cosh theta_j],

an ``O(M)`` computation from the cached ``theta`` (``M`` hidden units) instead of the ``O(N M)``
re-evaluation of the whole RBM that :class:`~physgen.quantum.metropolis.MetropolisSampler` does.
An exchange of sites ``i, j`` with ``s_i != s_j`` is two flips at once (``O(M)`` as well); equal spins
make the exchange the identity (accepted, nothing changes), as in the generic sampler. On acceptance
``theta`` and ``sum_j Re log cosh theta_j`` are replaced by their proposed values (the cache is updated,
not recomputed); the cache is rebuilt from scratch at every :meth:`RBMSampler.sample` call, after the
parameters may have changed, so rounding never accumulates beyond one call. The Marshall sign of the RBM
does not enter ``|psi|^2``. All chains advance together; proposals (sites or bonds) and the uniform
numbers of a whole sweep are drawn in one call.

The interface (``n_chains``, ``sample``, ``reset``, ``state``, ``last_acceptance``, ``last_rhat``,
``generator``) is that of ``MetropolisSampler``, so :class:`~physgen.quantum.vmc.VMC` takes either.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from physgen.quantum.lattice import Lattice
from physgen.quantum.metropolis import MetropolisSampler, split_rhat
from physgen.quantum.rbm import RBMWavefunction
from physgen.quantum.rbm_kernels import HAVE_NUMBA, exchange_sweeps, flip_sweeps

__all__ = ["RBMSampler", "re_log_cosh"]


def re_log_cosh(z: Tensor) -> Tensor:
    """``Re log cosh z + log 2`` for real or complex ``z`` (stable; the constant cancels in ratios)."""
    if z.is_complex():
        x = z.real.abs()
        # |cosh z|^2 = (cosh 2x + cos 2y) / 2  ->  Re log cosh z = x + 0.5 log((1 + 2 e^{-2x} cos 2y + e^{-4x}) / 4)
        e = torch.exp(-2.0 * x)
        return x + 0.5 * torch.log1p(2.0 * e * torch.cos(2.0 * z.imag) + e * e)
    a = z.abs()
    return a + torch.log1p(torch.exp(-2.0 * a))


class RBMSampler(MetropolisSampler):
    """Metropolis sampler for an :class:`RBMWavefunction` with cached effective angles.

    Args:
        model: the RBM (real or complex, with or without the Marshall sign).
        n_chains: parallel chains (many chains amortise the per-step overhead).
        move: ``"flip"`` (one site) or ``"exchange"`` (swap a bond's spins; conserves Sz).
        lattice: bonds for exchange moves (optional; otherwise any pair of sites).
        burn_in: sweeps discarded on the first call (a sweep is N proposals per chain).
        thin: sweeps between kept draws.
        sz0: start in the zero-magnetisation sector (default for exchange moves).
        generator: torch generator for proposals and acceptances.
        backend: ``"numba"`` (compiled sweeps, CPU), ``"torch"`` (vectorised over chains, any device) or
            ``"auto"`` (numba on CPU when installed). Both make the same moves from the same random draws.

    Raises:
        TypeError: ``model`` is not an :class:`RBMWavefunction` (use ``MetropolisSampler``).
    """

    # The cache of the chains, built by _refresh and updated by the sweeps: spins +-1 (C, N), effective angles
    # (C, M), their tanh (C, M), sum_j Re log cosh (C,); W2 = 2 W^T (N, M) with its cosh and sinh, Re a (N,).
    _s: Tensor
    _theta: Tensor
    _t: Tensor
    _lc: Tensor
    _W2: Tensor
    _ch: Tensor
    _sh: Tensor
    _a_re: Tensor
    _safe: bool

    def __init__(
        self,
        model: RBMWavefunction,
        n_chains: int = 16,
        *,
        move: str = "flip",
        lattice: Lattice | None = None,
        burn_in: int = 50,
        thin: int = 1,
        sz0: bool | None = None,
        generator: torch.Generator | None = None,
        backend: str = "auto",
    ) -> None:
        if backend not in ("auto", "numba", "torch"):
            raise ValueError(f"backend must be 'auto', 'numba' or 'torch', got {backend!r}.")
        if backend == "numba" and not HAVE_NUMBA:
            raise ValueError("backend='numba' needs the numba package (pip install numba); use backend='auto'.")
        if not isinstance(model, RBMWavefunction):
            raise TypeError(
                f"RBMSampler caches the hidden-unit angles of an RBMWavefunction; got {type(model).__name__}. "
                "Use physgen.quantum.MetropolisSampler for other wavefunctions."
            )
        super().__init__(
            model, n_chains, move=move, lattice=lattice, burn_in=burn_in, thin=thin, sz0=sz0, generator=generator
        )
        self.backend = backend
        self._cached = False  # whether the cache holds the chains of self.state (see _refresh)

    # ------------------------------------------------------------------------------------
    @torch.no_grad()
    def _refresh(self) -> None:
        """Rebuild the cache (spins, angles, their tanh, log cosh sums, log|psi|) from ``self.state``: O(C N M)."""
        m = self.model
        a, b, W = (p.detach() for p in m.weights())
        assert self.state is not None, "reset() draws the chains before the cache is built"
        s = 1.0 - 2.0 * self.state.to(m.a.dtype)
        W2 = (2.0 * W.T).contiguous()  # (N, M): a flip of site i with spin s_i shifts theta by -s_i W2[i]
        self._s, self._W2 = s, W2
        self._theta = s.to(W.dtype) @ W.T + b
        self._t = torch.tanh(self._theta)
        self._ch, self._sh = torch.cosh(W2), torch.sinh(W2)
        self._a_re = (a.real if a.is_complex() else a).contiguous()
        self._safe = (not W.is_complex()) and float(W2.abs().max()) <= 8.0 and float(W2.abs().sum(1).max()) < 300.0
        self._lc = re_log_cosh(self._theta).sum(-1)
        self._lp = s @ self._a_re + self._lc  # log|psi| + M log 2
        self._cached = True

    def reset(self) -> None:
        """Fresh random initial states (burn-in runs again on the next call)."""
        self._cached = False
        super().reset()

    def _flip_ratio(self, theta: Tensor, t: Tensor, lc: Tensor, i: Tensor, si: Tensor):
        """The RBM part of ``log|psi'/psi|`` for flipping site ``i[c]`` of each chain, with the new angles,
        tanh and log cosh sum: ``(C,)``, ``(C, M)``, ``(C, M)``, ``(C,)`` (as the compiled kernels)."""
        sic = si.to(theta.dtype)[:, None]
        th_new = theta - sic * self._W2[i]
        if self._safe:
            d = torch.log(torch.addcmul(self._ch[i], t * sic, self._sh[i], value=-1.0).prod(-1).abs())
            return d, th_new, torch.tanh(th_new), lc + d
        lc_new = re_log_cosh(th_new).sum(-1)
        return lc_new - lc, th_new, t, lc_new

    @torch.no_grad()
    def _sweeps(self, n_sweeps: int) -> float:
        if not self._cached:
            self._refresh()
        C, N, g, dev = self.n_chains, self.n_sites, self.generator, self._s.device
        n_steps = n_sweeps * N
        if n_steps == 0:
            return float("nan")
        logu = torch.log(torch.rand(n_steps, C, generator=g, device=dev, dtype=self._s.dtype))
        if self.move == "flip":
            idx = torch.randint(0, N, (n_steps, C), generator=g, device=dev)
        else:
            idx = torch.randint(0, len(self._pairs), (n_steps, C), generator=g, device=dev)
        if self._use_numba():
            n_acc = self._sweeps_numba(idx, logu)
        else:
            n_acc = self._sweeps_torch(idx, logu)
        self.state = (1.0 - self._s) * 0.5
        return n_acc / (n_steps * C)

    def _use_numba(self) -> bool:
        return self.backend == "numba" or (self.backend == "auto" and HAVE_NUMBA and self._s.device.type == "cpu")

    def _sweeps_numba(self, idx: Tensor, logu: Tensor) -> int:
        assert self._lp is not None, "_refresh sets it with the cache"
        cache = [x.contiguous() for x in (self._s, self._theta, self._t, self._lc, self._lp)]
        args = [x.numpy() for x in cache] + [self._W2.numpy(), self._ch.numpy(), self._sh.numpy(), self._a_re.numpy()]
        idx_c, logu_c = idx.T.contiguous().numpy(), logu.T.contiguous().numpy()  # chain-major for the kernels
        if self.move == "flip":
            n_acc = flip_sweeps(*args, idx_c, logu_c, self._safe)
        else:
            n_acc = exchange_sweeps(*args, self._pairs.numpy(), idx_c, logu_c, self._safe)
        self._s, self._theta, self._t, self._lc, self._lp = cache  # updated in place through the numpy views
        return int(n_acc)

    def _sweeps_torch(self, idx: Tensor, logu: Tensor) -> int:
        """The same steps as the compiled kernels, vectorised over chains (any device)."""
        s, theta, t, lc, lp = self._s, self._theta, self._t, self._lc, self._lp
        assert lp is not None, "_refresh sets it with the cache"
        C, n_steps, dev = self.n_chains, idx.shape[0], s.device
        n_acc = torch.zeros(C, dtype=torch.long, device=dev)
        pairs = self._pairs.to(dev)
        for k in range(n_steps):
            if self.move == "flip":
                i = idx[k]
                si = s.gather(1, i[:, None])[:, 0]
                d, th_new, t_new, lc_new = self._flip_ratio(theta, t, lc, i, si)
                dlp = d - 2.0 * si * self._a_re[i]
                move = acc = logu[k] < 2.0 * dlp
                s_i_new = torch.where(acc, -si, si)
            else:
                i, j = pairs[idx[k], 0], pairs[idx[k], 1]
                si, sj = s.gather(1, i[:, None])[:, 0], s.gather(1, j[:, None])[:, 0]
                d1, th1, t1, lc1 = self._flip_ratio(theta, t, lc, i, si)
                d2, th_new, t_new, lc_new = self._flip_ratio(th1, t1, lc1, j, sj)
                same = si == sj  # equal spins: the exchange is the identity (accepted, nothing changes)
                dlp = torch.where(same, 0.0, d1 + d2 - 2.0 * (si * self._a_re[i] + sj * self._a_re[j]))
                acc = logu[k] < 2.0 * dlp
                move = acc & ~same
                s_i_new = torch.where(move, sj, si)
                s.scatter_(1, j[:, None], torch.where(move, si, sj)[:, None])
            theta = torch.where(move[:, None], th_new, theta)
            t = torch.where(move[:, None], t_new, t)
            lc = torch.where(move, lc_new, lc)
            lp = torch.where(move, lp + dlp, lp)
            s.scatter_(1, i[:, None], s_i_new[:, None])
            n_acc += acc
        self._s, self._theta, self._t, self._lc, self._lp = s, theta, t, lc, lp
        return int(n_acc.sum())

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """Draw about ``n`` samples (rounded up to a multiple of ``n_chains``); see ``MetropolisSampler.sample``.

        Returns:
            ``(n_draws * n_chains, N)`` configurations (0/1, float64), draw-major.
        """
        if self.state is None:
            self.reset()
        self._refresh()  # the parameters may have changed since the last call
        n_draws = -(-int(n) // self.n_chains)
        draws, lps, acc = [], [], []
        for _ in range(n_draws):
            acc.append(self._sweeps(self.thin))
            assert self.state is not None and self._lp is not None, "set by reset() and every sweep"
            draws.append(self.state.clone())
            # rounded: the cached values carry ~1e-15 of path-dependent rounding, which would break the
            # ties of equal configurations by chain history and inflate the rank-normalised R-hat
            lps.append(torch.round(2.0 * self._lp, decimals=8))
        self.last_acceptance = float(np.mean(acc)) if acc else float("nan")
        lp = torch.stack(lps)
        self.last_rhat = split_rhat(lp) if n_draws >= 4 else float("nan")
        return torch.stack(draws).reshape(n_draws * self.n_chains, self.n_sites)
