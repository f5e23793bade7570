"""Schema of a VMC config (``physgen vmc CONFIG.toml``); see ``examples/quantum/vmc_*.toml``.

Every section and key is optional::

    [lattice]      type = "chain" | "square", n (chain), lx, ly (square), periodic
    [hamiltonian]  type = "tfim" | "heisenberg", J, h (tfim), J2 (heisenberg)
    [model]        type = "rnn" | "transformer" | "rbm", dtype = "float32" | "float64", seed,
                   rnn: hidden, layers, cell; transformer: d_model, heads, n_layers;
                   rbm: alpha, complex; autoregressive: phase, u1, marshall, ordering ("chain" | "snake");
                   any: translations, reflections, spin_flip (a symmetry group of the lattice: tied RBM
                   filters, or the autoregressive model averaged over the group)
    [sampler]      (rbm only) n_chains, move = "flip" | "exchange", burn_in, thin
    [vmc]          optimizer = "minsr" | "sr" | "adam", lr, lr_final, lr_schedule = "geometric" | "cosine" |
                   "constant", warmup_steps, diag_shift, diag_shift_final, max_grad_norm, n_samples,
                   n_steps, seed, time_limit_s, checkpoint_every, resume, eval_samples,
                   exact_reference (compare with exact diagonalization when N <= 20)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from physgen.config.schema import bounded, choice

__all__ = ["VMCConfig", "LatticeSection", "HamiltonianSection", "WavefunctionSection", "SamplerSection", "VMCSection"]


@dataclass
class LatticeSection:
    """``[lattice]``: a chain of ``n`` sites or an ``lx x ly`` square lattice."""

    type: str = choice("chain", "square")
    n: int = bounded(10, ge=2)
    lx: int = bounded(4, ge=1)
    ly: int = bounded(4, ge=1)
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
    hidden: int = bounded(32, ge=1)
    layers: int = bounded(1, ge=1)
    cell: str = "gru"
    d_model: int = bounded(32, ge=1)
    heads: int = bounded(4, ge=1)
    n_layers: int = bounded(2, ge=1)
    alpha: int = bounded(2, ge=1)
    complex: bool = False
    phase: bool = False
    u1: bool = False
    marshall: bool = False
    ordering: str = "chain"
    translations: bool = False
    reflections: bool = False
    spin_flip: bool = False
    seed: int = bounded(0, ge=0)


@dataclass
class SamplerSection:
    """``[sampler]``: Metropolis chains of the RBM (autoregressive models sample exactly)."""

    n_chains: int = bounded(64, ge=1)
    move: str = "flip"
    burn_in: int = bounded(50, ge=0)
    thin: int = bounded(1, ge=1)


@dataclass
class VMCSection:
    """``[vmc]``: the optimizer, its schedule and budget, checkpoints and the final estimate."""

    optimizer: str = "minsr"
    lr: float = bounded(0.05, gt=0)
    lr_final: float | None = None
    lr_schedule: str = choice("geometric", "cosine", "constant")
    warmup_steps: int = bounded(0, ge=0)
    diag_shift: float = bounded(1e-3, ge=0)
    diag_shift_final: float | None = None
    max_grad_norm: float | None = None
    n_samples: int = bounded(1024, ge=1)
    n_steps: int = bounded(500, ge=0)
    seed: int = bounded(0, ge=0)
    time_limit_s: float | None = None
    checkpoint_every: int = bounded(50, ge=1)
    resume: bool = False
    eval_samples: int = bounded(10000, ge=1)
    exact_reference: bool = True


@dataclass
class VMCConfig:
    """A VMC config: ``[lattice]``, ``[hamiltonian]``, ``[model]``, ``[sampler]``, ``[vmc]``."""

    lattice: LatticeSection = field(default_factory=LatticeSection)
    hamiltonian: HamiltonianSection = field(default_factory=HamiltonianSection)
    model: WavefunctionSection = field(default_factory=WavefunctionSection)
    sampler: SamplerSection = field(default_factory=SamplerSection)
    vmc: VMCSection = field(default_factory=VMCSection)
