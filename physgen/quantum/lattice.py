"""Lattices for spin models: open or periodic chains and square lattices.

Conventions (shared by every quantum module):

* sites are numbered ``0 .. N-1``; site ``i`` of an ``Lx x Ly`` square lattice sits at
  ``(x, y)`` with ``i = x * Ly + y`` (row-major);
* ``edges`` are the nearest-neighbour bonds as sorted pairs ``(i, j)`` with ``i < j``, each
  bond listed once (a periodic chain of 2 sites or a periodic side of length 2 would
  otherwise list a bond twice; duplicates are removed);
* ``next_edges`` are next-nearest-neighbour bonds (chain: ``i, i+2``; square: diagonals),
  used by the J1-J2 Heisenberg model;
* ``sublattice`` is the checkerboard colour (chain: ``i % 2``; square: ``(x + y) % 2``);
  ``bipartite`` says whether every nearest-neighbour bond joins the two colours (an odd
  periodic chain is not bipartite), which the Marshall sign rule needs.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Lattice", "Chain", "Square", "lattice_from_config"]


class Lattice:
    """A finite lattice: number of sites, bonds and a checkerboard colouring.

    Attributes:
        n_sites: number of sites N.
        shape: ``(N,)`` for a chain, ``(Lx, Ly)`` for a square lattice.
        periodic: periodic boundary conditions.
        edges: nearest-neighbour bonds, ``(n_bonds, 2)`` int64 array, ``i < j``.
        next_edges: next-nearest-neighbour bonds, ``(n_nnn, 2)`` int64 array.
        sublattice: ``(N,)`` int64 array of 0/1.
    """

    n_sites: int
    shape: tuple[int, ...]
    periodic: bool
    edges: np.ndarray
    next_edges: np.ndarray
    sublattice: np.ndarray

    @property
    def bipartite(self) -> bool:
        """True when every nearest-neighbour bond joins sublattice 0 to sublattice 1."""
        if len(self.edges) == 0:
            return True
        a, b = self.edges[:, 0], self.edges[:, 1]
        return bool(np.all(self.sublattice[a] != self.sublattice[b]))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def to_config(self) -> dict:
        """JSON-serialisable description such that :func:`lattice_from_config` rebuilds it."""
        if isinstance(self, Chain):
            return {"type": "chain", "n": self.n_sites, "periodic": self.periodic}
        return {"type": "square", "lx": self.shape[0], "ly": self.shape[1], "periodic": self.periodic}

    def __repr__(self) -> str:
        dims = "x".join(str(s) for s in self.shape)
        return f"{type(self).__name__}({dims}, periodic={self.periodic})"


def _unique_bonds(pairs: list[tuple[int, int]]) -> np.ndarray:
    seen = sorted({(min(i, j), max(i, j)) for i, j in pairs if i != j})
    return np.asarray(seen, dtype=np.int64).reshape(-1, 2)


class Chain(Lattice):
    """A 1D chain of ``N`` sites.

    Args:
        N: number of sites (>= 2).
        periodic: add the bond ``(N-1, 0)``.
    """

    def __init__(self, N: int, periodic: bool = True) -> None:
        if not isinstance(N, (int, np.integer)) or N < 2:
            raise ValueError(f"Chain needs an integer N >= 2 sites, got N={N!r}.")
        N = int(N)
        self.n_sites = N
        self.shape = (N,)
        self.periodic = bool(periodic)
        nn = [(i, i + 1) for i in range(N - 1)]
        nnn = [(i, i + 2) for i in range(N - 2)]
        if self.periodic:
            nn.append((N - 1, 0))
            if N > 2:
                nnn += [(N - 2, 0), (N - 1, 1)]
        self.edges = _unique_bonds(nn)
        self.next_edges = _unique_bonds(nnn)
        self.sublattice = np.arange(N, dtype=np.int64) % 2


class Square(Lattice):
    """An ``Lx x Ly`` square lattice; site ``(x, y)`` has index ``x * Ly + y``.

    Args:
        Lx: number of rows (>= 1).
        Ly: number of columns (>= 1); ``Lx * Ly >= 2``.
        periodic: periodic in both directions.
    """

    def __init__(self, Lx: int, Ly: int, periodic: bool = True) -> None:
        if Lx < 1 or Ly < 1 or Lx * Ly < 2:
            raise ValueError(f"Square needs Lx, Ly >= 1 and at least 2 sites, got Lx={Lx}, Ly={Ly}.")
        Lx, Ly = int(Lx), int(Ly)
        self.n_sites = Lx * Ly
        self.shape = (Lx, Ly)
        self.periodic = bool(periodic)

        def idx(x: int, y: int) -> int | None:
            if self.periodic:
                return (x % Lx) * Ly + (y % Ly)
            if 0 <= x < Lx and 0 <= y < Ly:
                return x * Ly + y
            return None

        nn: list[tuple[int, int]] = []
        nnn: list[tuple[int, int]] = []
        for x in range(Lx):
            for y in range(Ly):
                i = x * Ly + y
                for dx, dy, lst in ((1, 0, nn), (0, 1, nn), (1, 1, nnn), (1, -1, nnn)):
                    j = idx(x + dx, y + dy)
                    if j is not None:
                        lst.append((i, j))
        self.edges = _unique_bonds(nn)
        self.next_edges = _unique_bonds(nnn)
        xs, ys = np.divmod(np.arange(self.n_sites), Ly)
        self.sublattice = ((xs + ys) % 2).astype(np.int64)


def lattice_from_config(config: dict) -> Lattice:
    """Rebuild a lattice from :meth:`Lattice.to_config` output."""
    kind = config.get("type")
    if kind == "chain":
        return Chain(int(config["n"]), periodic=bool(config.get("periodic", True)))
    if kind == "square":
        return Square(int(config["lx"]), int(config["ly"]), periodic=bool(config.get("periodic", True)))
    raise ValueError(f"unknown lattice type {kind!r}; use 'chain' or 'square'.")
