"""The 2D Ising model on the periodic L×L square lattice as a batched simulator.

:class:`Ising` (``model.py``) is the simulator; its Markov chains (``chains.py``) run the
checkerboard Metropolis kernel (``kernels.py``) or the Wolff cluster update (``wolff.py``); exact
finite-lattice results (Kaufman, enumeration, Onsager) are in ``exact.py`` and the error analysis
(τ_int, jackknife) in ``stats.py``. Units and conventions: the :mod:`simulators.ising.model` docstring.
"""

from __future__ import annotations

from simulators.ising.exact import BETA_C
from simulators.ising.model import Ising

__all__ = ["Ising", "BETA_C"]
