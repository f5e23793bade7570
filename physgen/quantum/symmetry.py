r"""Lattice symmetry groups and symmetrised wavefunctions.

A group element ``g`` is a site permutation ``perm`` (``(g sigma)_i = sigma_{perm[i]}``) with an optional
global spin flip (``sigma -> 1 - sigma``). :class:`SymmetryGroup` builds translations, reflections and
the spin flip of a :class:`~physgen.quantum.lattice.Chain` or :class:`~physgen.quantum.lattice.Square`
and checks that every element is an automorphism of the lattice (it maps bonds onto bonds).

:class:`SymmetrizedWavefunction` projects a wavefunction onto the symmetric sector:

* ``mode="probability"`` (autoregressive models, Hibat-Allah et al., Phys. Rev. Research 2, 023358
  (2020)): ``|psi_s(sigma)|^2 = mean_g |psi(g sigma)|^2`` with the phase of ``sum_g psi(g sigma)``. Each
  ``g`` is a bijection of the configurations, so ``psi_s`` stays exactly normalised, and it is sampled
  exactly: draw ``x ~ |psi|^2`` and a uniform ``g``, return ``g^{-1} x``;
* ``mode="amplitude"`` (RBM and other unnormalised models, sampled by Metropolis):
  ``psi_s(sigma) = mean_g psi(g sigma)``.

Both are invariant, ``|psi_s(g sigma)| = |psi_s(sigma)|``, for every ``g`` of the group.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from physgen.quantum.hamiltonians import as_log_psi
from physgen.quantum.lattice import Chain, Lattice, Square

__all__ = ["SymmetryGroup", "SymmetrizedWavefunction"]


def _bond_set(edges: np.ndarray) -> set[tuple[int, int]]:
    return {(int(min(i, j)), int(max(i, j))) for i, j in edges}


class SymmetryGroup:
    """A group of lattice permutations, optionally with the global spin flip.

    Args:
        lattice: the lattice the group acts on.
        translations: all lattice translations (needs a periodic lattice).
        reflections: ``i -> N-1-i`` on a chain; ``x -> -x`` and ``y -> -y`` on a square lattice.
        spin_flip: also the global spin flip (doubles the group).
        permutations: extra generators, ``(k, N)`` site permutations (checked against the lattice).

    Raises:
        ValueError: an element that is not a symmetry of ``lattice`` (a permutation of the wrong length,
            translations on an open lattice, a permutation that breaks a bond); the message names the lattice.
    """

    def __init__(
        self,
        lattice: Lattice,
        *,
        translations: bool = True,
        reflections: bool = False,
        spin_flip: bool = False,
        permutations=None,
    ) -> None:
        self.lattice = lattice
        N = lattice.n_sites
        gens: list[np.ndarray] = []
        if translations:
            if not lattice.periodic:
                raise ValueError(f"translations are not symmetries of the open lattice {lattice!r}; use periodic=True.")
            gens += self._translations(lattice)
        if reflections:
            gens += self._reflections(lattice)
        for p in [] if permutations is None else list(permutations):
            gens.append(self._check_perm(np.asarray(p), lattice))
        for g in gens:
            self._check_perm(g, lattice)
        perms = self._closure(gens, N)
        flips = [False] * len(perms)
        if spin_flip:
            perms, flips = perms + perms, flips + [True] * len(perms)
        self.perms = torch.as_tensor(np.stack(perms), dtype=torch.long)  # (G, N)
        self.flips = torch.as_tensor(flips)  # (G,)
        self.inverse = torch.argsort(self.perms, dim=1)

    def __len__(self) -> int:
        return len(self.perms)

    def __repr__(self) -> str:
        return f"SymmetryGroup({self.lattice!r}, |G|={len(self)}, spin_flip={bool(self.flips.any())})"

    @staticmethod
    def _translations(lat: Lattice) -> list[np.ndarray]:
        N = lat.n_sites
        if isinstance(lat, Chain):
            return [(np.arange(N) + 1) % N]
        if isinstance(lat, Square):
            Lx, Ly = lat.shape
            xs, ys = np.divmod(np.arange(N), Ly)
            return [((xs + 1) % Lx) * Ly + ys, xs * Ly + (ys + 1) % Ly]
        raise ValueError(f"no translations are defined for {lat!r}.")

    @staticmethod
    def _reflections(lat: Lattice) -> list[np.ndarray]:
        N = lat.n_sites
        if isinstance(lat, Chain):
            return [(N - 1 - np.arange(N)) % N]
        Lx, Ly = lat.shape
        xs, ys = np.divmod(np.arange(N), Ly)
        return [((Lx - 1 - xs) % Lx) * Ly + ys, xs * Ly + (Ly - 1 - ys) % Ly]

    @staticmethod
    def _check_perm(p: np.ndarray, lat: Lattice) -> np.ndarray:
        N = lat.n_sites
        if p.ndim != 1 or len(p) != N or sorted(p.tolist()) != list(range(N)):
            raise ValueError(
                f"a symmetry of {lat!r} must be a permutation of its {N} sites, got one of length {len(p)} "
                f"({p.tolist()[:8]}{'...' if len(p) > 8 else ''})."
            )
        bonds = _bond_set(lat.edges)
        mapped = _bond_set(np.stack([p[lat.edges[:, 0]], p[lat.edges[:, 1]]], 1)) if len(lat.edges) else set()
        if mapped != bonds:
            missing = sorted(mapped - bonds)[:3]
            raise ValueError(
                f"the permutation {p.tolist()[:8]}{'...' if N > 8 else ''} is not a symmetry of {lat!r}: it maps bonds "
                f"onto non-bonds {missing}."
            )
        return p.astype(np.int64)

    @staticmethod
    def _closure(gens: list[np.ndarray], N: int) -> list[np.ndarray]:
        ident = tuple(range(N))
        seen = {ident}
        out = [np.arange(N)]
        frontier = [np.arange(N)]
        while frontier:
            nxt = []
            for g in frontier:
                for h in gens:
                    c = g[h]  # (g h sigma)_i = sigma_{g[h[i]]}: composition of permutations
                    key = tuple(c.tolist())
                    if key not in seen:
                        seen.add(key)
                        out.append(c)
                        nxt.append(c)
            frontier = nxt
        return out

    def apply(self, sigma: Tensor) -> Tensor:
        """All images ``g sigma``: ``(B, N)`` -> ``(G, B, N)``."""
        x = sigma[:, self.perms.to(sigma.device)].permute(1, 0, 2)  # (G, B, N)
        f = self.flips.to(sigma.device)[:, None, None]
        return torch.where(f, 1 - x, x)


class SymmetrizedWavefunction(nn.Module):
    """``psi`` projected onto the symmetric sector of ``group`` (module docstring).

    Args:
        model: the wavefunction (``n_sites``, ``log_psi``; ``sample`` for ``mode="probability"``).
        group: a :class:`SymmetryGroup` on a lattice of ``model.n_sites`` sites.
        mode: ``"probability"``, ``"amplitude"`` or ``"auto"`` (probability when the model can sample itself).
    """

    def __init__(self, model: nn.Module, group: SymmetryGroup, *, mode: str = "auto") -> None:
        super().__init__()
        if group.lattice.n_sites != model.n_sites:
            raise ValueError(
                f"the symmetry group acts on {group.lattice!r} ({group.lattice.n_sites} sites) but the wavefunction "
                f"has {model.n_sites} sites."
            )
        if mode == "auto":
            mode = "probability" if callable(getattr(model, "sample", None)) else "amplitude"
        if mode not in ("probability", "amplitude"):
            raise ValueError(f"mode must be 'probability', 'amplitude' or 'auto', got {mode!r}.")
        if mode == "probability" and not callable(getattr(model, "sample", None)):
            raise ValueError("mode='probability' needs a model that samples itself (autoregressive).")
        self.model, self.group, self.mode = model, group, mode
        self.n_sites: int = int(model.n_sites)
        self.u1 = bool(getattr(model, "u1", False))
        self.use_phase = bool(getattr(model, "use_phase", False) or getattr(model, "is_complex", False))
        self.config = {
            "type": "symmetrized",
            "mode": mode,
            "group_size": len(group),
            "model": getattr(model, "config", {}),
        }

    def forward(self, sigma: Tensor) -> Tensor:
        return self.log_psi(sigma)

    def log_psi(self, sigma: Tensor) -> Tensor:
        """Complex ``log psi_s``: ``(B, N)`` -> ``(B,)``."""
        G = len(self.group)
        imgs = self.group.apply(sigma).reshape(-1, self.n_sites)  # (G * B, N)
        inner: Callable[[Tensor], Tensor] = self.model.log_psi  # type: ignore[assignment]
        if torch.is_grad_enabled() or imgs.shape[0] < 2:
            lp = as_log_psi(inner(imgs))
        else:  # no gradient needed (sampling, local energies): evaluate each distinct image once
            uniq, inv = torch.unique(imgs, dim=0, return_inverse=True)
            lp = as_log_psi(inner(uniq))[inv]
        lp = lp.reshape(G, -1)  # (G, B)
        m = lp.real.max(dim=0).values.detach()
        lse = m + torch.log(torch.exp(lp - m).sum(0))  # complex log sum_g psi(g sigma)
        if self.mode == "amplitude":
            return lse - math.log(G)
        log_amp = 0.5 * (torch.logsumexp(2 * lp.real, dim=0) - math.log(G))
        return torch.complex(log_amp, lse.imag)

    def log_prob(self, sigma: Tensor) -> Tensor:
        """Exactly normalised ``log |psi_s|^2`` (``mode="probability"``)."""
        return 2.0 * self.log_psi(sigma).real

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Exact samples of ``|psi_s|^2``: ``x ~ |psi|^2``, uniform ``g``, return ``g^{-1} x``: ``(n, N)``."""
        if self.mode != "probability":
            raise RuntimeError("only mode='probability' samples exactly; use a Metropolis sampler.")
        x = self.model.sample(n, generator=generator)  # type: ignore[operator]
        k = torch.randint(0, len(self.group), (n,), generator=generator, device=x.device)
        inv = self.group.inverse.to(x.device)[k]  # (n, N)
        flip = self.group.flips.to(x.device)[k][:, None]
        y = torch.where(flip, 1 - x, x)  # the flip commutes with the permutation
        return torch.gather(y, 1, inv)
