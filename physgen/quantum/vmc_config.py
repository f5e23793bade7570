"""TOML configuration of a VMC run (``physgen vmc CONFIG.toml``).

Sections (every key optional except where noted; an unknown section or key is an error that
names it and lists the allowed ones)::

    [lattice]      type = "chain" | "square", n (chain), lx, ly (square), periodic
    [hamiltonian]  type = "tfim" | "heisenberg", J, h (tfim), J2 (heisenberg)
    [model]        type = "rnn" | "transformer" | "rbm", dtype = "float32" | "float64",
                   rnn: hidden, layers, cell; transformer: d_model, heads, n_layers;
                   rbm: alpha, complex; all: phase, u1, marshall, ordering ("chain"/"snake")
    [sampler]      (rbm only) n_chains, move = "flip" | "exchange", burn_in, thin
    [vmc]          optimizer = "minsr" | "sr" | "adam", lr, lr_final, diag_shift, n_samples,
                   n_steps, seed, time_limit_s, checkpoint_every, resume, eval_samples,
                   exact_reference (compare with exact diagonalization when N <= 20)

See ``examples/quantum/vmc_tfim.toml``.
"""

from __future__ import annotations

import dataclasses
import json
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import torch

__all__ = ["VMCRunConfig", "load_vmc_config", "run_vmc_config", "build_model"]


@dataclass
class LatticeConfig:
    type: str = "chain"
    n: int = 10
    lx: int = 4
    ly: int = 4
    periodic: bool = True


@dataclass
class HamiltonianConfig:
    type: str = "tfim"
    J: float = 1.0
    h: float = 1.0
    J2: float = 0.0


@dataclass
class ModelConfig:
    type: str = "rnn"
    dtype: str = "float32"
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
class SamplerConfig:
    n_chains: int = 64
    move: str = "flip"
    burn_in: int = 50
    thin: int = 1


@dataclass
class VMCSettings:
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
class VMCRunConfig:
    lattice: LatticeConfig = field(default_factory=LatticeConfig)
    hamiltonian: HamiltonianConfig = field(default_factory=HamiltonianConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    vmc: VMCSettings = field(default_factory=VMCSettings)


def _section(cls, data: dict, name: str):
    from physgen.config import check_keys

    check_keys(data, [f.name for f in dataclasses.fields(cls)], f"[{name}]")
    return cls(**data)


def load_vmc_config(path: str | Path) -> VMCRunConfig:
    """Read and validate a TOML file into a :class:`VMCRunConfig`."""
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    sections = {f.name: f for f in dataclasses.fields(VMCRunConfig)}
    kwargs = {}
    for name, data in raw.items():
        if name not in sections:
            raise ValueError(f"unknown section [{name}] in {path}; allowed sections: {', '.join(sections)}.")
        if not isinstance(data, dict):
            raise ValueError(f"[{name}] must be a table in {path}.")
        kwargs[name] = _section(sections[name].default_factory().__class__, data, name)
    return VMCRunConfig(**kwargs)


def build_lattice(cfg: LatticeConfig):
    from physgen.quantum.lattice import Chain, Square

    if cfg.type == "chain":
        return Chain(cfg.n, periodic=cfg.periodic)
    if cfg.type == "square":
        return Square(cfg.lx, cfg.ly, periodic=cfg.periodic)
    raise ValueError(f"[lattice] type must be 'chain' or 'square', got {cfg.type!r}.")


def build_hamiltonian(cfg: HamiltonianConfig, lattice):
    from physgen.quantum.hamiltonians import Heisenberg, TransverseFieldIsing

    if cfg.type == "tfim":
        return TransverseFieldIsing(lattice, J=cfg.J, h=cfg.h)
    if cfg.type == "heisenberg":
        return Heisenberg(lattice, J=cfg.J, J2=cfg.J2)
    raise ValueError(f"[hamiltonian] type must be 'tfim' or 'heisenberg', got {cfg.type!r}.")


def build_model(cfg: ModelConfig, lattice):
    """Build the wavefunction of a ``[model]`` section on ``lattice``."""
    from physgen.quantum.rbm import RBMWavefunction
    from physgen.quantum.rnn import RNNWavefunction
    from physgen.quantum.transformer import TransformerWavefunction

    if cfg.dtype not in ("float32", "float64"):
        raise ValueError(f"[model] dtype must be 'float32' or 'float64', got {cfg.dtype!r}.")
    dtype = getattr(torch, cfg.dtype)
    N = lattice.n_sites
    common = dict(lattice=lattice, ordering=cfg.ordering, phase=cfg.phase, u1=cfg.u1, marshall=cfg.marshall, dtype=dtype)
    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        return _build(cfg, N, common, RNNWavefunction, TransformerWavefunction, RBMWavefunction, dtype, lattice)


def _build(cfg, N, common, RNNWavefunction, TransformerWavefunction, RBMWavefunction, dtype, lattice):
    if cfg.type == "rnn":
        return RNNWavefunction(N, hidden=cfg.hidden, layers=cfg.layers, cell=cfg.cell, **common)
    if cfg.type == "transformer":
        return TransformerWavefunction(N, d_model=cfg.d_model, heads=cfg.heads, n_layers=cfg.n_layers, **common)
    if cfg.type == "rbm":
        return RBMWavefunction(
            N, alpha=cfg.alpha, complex=cfg.complex, lattice=lattice, marshall=cfg.marshall, dtype=dtype, seed=cfg.seed
        )
    raise ValueError(f"[model] type must be 'rnn', 'transformer' or 'rbm', got {cfg.type!r}.")


def run_vmc_config(path: str, out_dir: str | None = None) -> dict:
    """Run VMC as described by a TOML file; returns a summary dict (also written as JSON).

    Args:
        path: the TOML configuration.
        out_dir: folder for ``vmc_checkpoint.safetensors`` and ``vmc_summary.json``
            (default: next to the config, ``<config stem>_out``).
    """
    from physgen.quantum.metropolis import MetropolisSampler
    from physgen.quantum.vmc import VMC

    cfg = load_vmc_config(path)
    out = Path(out_dir) if out_dir is not None else Path(path).with_name(Path(path).stem + "_out")
    out.mkdir(parents=True, exist_ok=True)
    lattice = build_lattice(cfg.lattice)
    H = build_hamiltonian(cfg.hamiltonian, lattice)
    model = build_model(cfg.model, lattice)
    sampler = None
    if cfg.model.type == "rbm":
        sc = cfg.sampler
        sampler = MetropolisSampler(
            model, sc.n_chains, move=sc.move, lattice=lattice if sc.move == "exchange" else None,
            burn_in=sc.burn_in, thin=sc.thin, generator=torch.Generator().manual_seed(cfg.vmc.seed + 1),
        )
    v = cfg.vmc
    driver = VMC(
        H, model, n_samples=v.n_samples, optimizer=v.optimizer, lr=v.lr, lr_final=v.lr_final,
        diag_shift=v.diag_shift, sampler=sampler, seed=v.seed,
    )
    ckpt = out / "vmc_checkpoint.safetensors"
    if v.resume and ckpt.exists():
        driver.load_checkpoint(ckpt)
    t0 = time.perf_counter()
    remaining = max(v.n_steps - driver.step_count, 0)
    driver.run(
        remaining, checkpoint=ckpt, checkpoint_every=v.checkpoint_every, time_limit_s=v.time_limit_s,
        extra_config={"run_config": dataclasses.asdict(cfg)}, total_steps=v.n_steps,
    )
    train_s = time.perf_counter() - t0
    est = driver.estimate(v.eval_samples)
    summary = {
        "config": dataclasses.asdict(cfg),
        "steps": driver.step_count,
        "train_time_s": train_s,
        "energy": est["energy"],
        "error": est["error"],
        "variance": est["variance"],
        "v_score": est["v_score"],
        "checkpoint": str(ckpt),
    }
    if v.exact_reference and lattice.n_sites <= 20:
        from physgen.quantum.exact import ground_state_energy

        e0 = ground_state_energy(H)
        summary["exact_energy"] = e0
        summary["relative_error"] = abs(est["energy"] - e0) / abs(e0)
    (out / "vmc_summary.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary
