"""Schema of a VMC config (``physgen vmc CONFIG.toml``); see ``examples/quantum/vmc_*.toml``.

Every section and key is optional::

    [lattice]      type = "chain" | "square", n (chain), lx, ly (square), periodic
    [hamiltonian]  type = "tfim" | "heisenberg", J, h (tfim), J2 (heisenberg)
    [model]        type = "rnn" | "transformer" | "rbm", dtype = "float32" | "float64", seed,
                   rnn: hidden, layers, cell; transformer: d_model, heads, n_layers;
                   rbm: alpha, complex; autoregressive: phase, u1, marshall, ordering ("chain" | "snake")
    [sampler]      (rbm only) n_chains, move = "flip" | "exchange", burn_in, thin
    [vmc]          optimizer = "minsr" | "sr" | "adam", lr, lr_final, diag_shift, n_samples,
                   n_steps, seed, time_limit_s, checkpoint_every, resume, eval_samples,
                   exact_reference (compare with exact diagonalization when N <= 20)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from physgen.config.schema import choice

__all__ = ["VMCConfig", "LatticeSection", "HamiltonianSection", "WavefunctionSection", "SamplerSection",
           "VMCSection"]


@dataclass
class LatticeSection:
    """``[lattice]``: a chain of ``n`` sites or an ``lx x ly`` square lattice."""

    type: str = choice("chain", "square")
    n: int = 10
    lx: int = 4
    ly: int = 4
    periodic: bool = True


@dataclass
class HamiltonianSection:
    """``[hamiltonian]``: transverse-field Ising (``J``, ``h``) or Heisenberg (``J``, ``J2``)."""

    type: str = choice("tfim", "heisenberg")
    J: float = 1.0
    h: float = 1.0
    J2: float = 0.0


@dataclass
class WavefunctionSection:
    """``[model]``: the wavefunction and its hyperparameters (each family reads its own keys)."""

    type: str = choice("rnn", "transformer", "rbm")
    dtype: str = choice("float32", "float64")
    hidden: int = 32
    layers: int = 1
    cell: str = "gru"
    d_model: int = 32
    heads: int = 4
    n_layers: int = 2
    alpha: int = 2
    complex: bool = False
    phase: bool = False
    u1: bool = False
    marshall: bool = False
    ordering: str = "chain"
    seed: int = 0


@dataclass
class SamplerSection:
    """``[sampler]``: Metropolis chains of the RBM (autoregressive models sample exactly)."""

    n_chains: int = 64
    move: str = "flip"
    burn_in: int = 50
    thin: int = 1


@dataclass
class VMCSection:
    """``[vmc]``: the optimizer, its schedule and budget, checkpoints and the final estimate."""

    optimizer: str = "minsr"
    lr: float = 0.05
    lr_final: float | None = None
    diag_shift: float = 1e-3
    n_samples: int = 1024
    n_steps: int = 500
    seed: int = 0
    time_limit_s: float | None = None
    checkpoint_every: int = 50
    resume: bool = False
    eval_samples: int = 10000
    exact_reference: bool = True


@dataclass
class VMCConfig:
    """A VMC config: ``[lattice]``, ``[hamiltonian]``, ``[model]``, ``[sampler]``, ``[vmc]``."""

    lattice: LatticeSection = field(default_factory=LatticeSection)
    hamiltonian: HamiltonianSection = field(default_factory=HamiltonianSection)
    model: WavefunctionSection = field(default_factory=WavefunctionSection)
    sampler: SamplerSection = field(default_factory=SamplerSection)
    vmc: VMCSection = field(default_factory=VMCSection)
