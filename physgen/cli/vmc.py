"""``physgen vmc CONFIG.toml``: build a VMC job from a :class:`physgen.config.VMCConfig` and run it.

Lattice, Hamiltonian and wavefunction come from their sections; the RBM gets a Metropolis sampler
(``[sampler]``: the cached-angle :class:`~physgen.quantum.RBMSampler`), autoregressive models sample exactly;
``translations``, ``reflections``, ``spin_flip`` in ``[model]`` make the model symmetric over that group. The run writes ``vmc_checkpoint.safetensors``
(resumed with ``[vmc] resume = true``) and ``vmc_summary.json`` (energy, error bar, variance, V-score,
and the exact energy and relative error when ``exact_reference`` and N <= 20).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from physgen.config import ConfigError, VMCConfig, load_config
from physgen.config.vmc import HamiltonianSection, LatticeSection, WavefunctionSection

__all__ = [
    "cmd_vmc",
    "run_vmc",
    "run_vmc_config",
    "build_lattice",
    "build_hamiltonian",
    "build_symmetry",
    "build_wavefunction",
]

_EXACT_MAX_SITES = 20


def build_lattice(cfg: LatticeSection) -> Any:
    """The ``[lattice]``: a ``Chain(n)`` or a ``Square(lx, ly)``."""
    from physgen.quantum import Chain, Square

    return Chain(cfg.n, periodic=cfg.periodic) if cfg.type == "chain" else Square(cfg.lx, cfg.ly, periodic=cfg.periodic)


def build_hamiltonian(cfg: HamiltonianSection, lattice: Any) -> Any:
    """The ``[hamiltonian]`` on ``lattice``: transverse-field Ising or Heisenberg."""
    from physgen.quantum import Heisenberg, TransverseFieldIsing

    if cfg.type == "tfim":
        return TransverseFieldIsing(lattice, J=cfg.J, h=cfg.h)
    return Heisenberg(lattice, J=cfg.J, J2=cfg.J2)


def build_symmetry(cfg: WavefunctionSection, lattice: Any) -> Any:
    """The symmetry group named by ``[model]`` (``translations``, ``reflections``, ``spin_flip``), or None.

    Raises:
        ConfigError: a group that is not a symmetry of the lattice (translations of an open lattice...).
    """
    from physgen.quantum import SymmetryGroup

    if not (cfg.translations or cfg.reflections or cfg.spin_flip):
        return None
    try:
        return SymmetryGroup(
            lattice, translations=cfg.translations, reflections=cfg.reflections, spin_flip=cfg.spin_flip
        )
    except ValueError as err:
        raise ConfigError(f"[model] translations/reflections/spin_flip: {err}") from None


def build_wavefunction(cfg: WavefunctionSection, lattice: Any) -> Any:
    """The ``[model]`` wavefunction on ``lattice``, initialised from ``cfg.seed`` (the global RNG is untouched).

    With a symmetry group (:func:`build_symmetry`) the RBM ties its filters over the group; an autoregressive
    model is wrapped in a :class:`~physgen.quantum.SymmetrizedWavefunction` (exact sampling is kept).
    """
    import torch

    from physgen.quantum import RBMWavefunction, RNNWavefunction, SymmetrizedWavefunction, TransformerWavefunction

    dtype = getattr(torch, cfg.dtype)
    n = lattice.n_sites
    group = build_symmetry(cfg, lattice)
    common = dict(
        lattice=lattice, ordering=cfg.ordering, phase=cfg.phase, u1=cfg.u1, marshall=cfg.marshall, dtype=dtype
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        if cfg.type == "rbm":
            return RBMWavefunction(
                n,
                alpha=cfg.alpha,
                complex=cfg.complex,
                lattice=lattice,
                marshall=cfg.marshall,
                symmetry=group,
                dtype=dtype,
                seed=cfg.seed,
            )
        model: torch.nn.Module
        if cfg.type == "rnn":
            model = RNNWavefunction(n, hidden=cfg.hidden, layers=cfg.layers, cell=cfg.cell, **common)
        else:
            model = TransformerWavefunction(n, d_model=cfg.d_model, heads=cfg.heads, n_layers=cfg.n_layers, **common)
        return model if group is None else SymmetrizedWavefunction(model, group)


def run_vmc(cfg: VMCConfig, out_dir: str | Path) -> dict[str, Any]:
    """Run the VMC job of ``cfg``, writing its checkpoint and summary into ``out_dir``.

    Returns:
        the summary: ``config``, ``steps``, ``train_time_s``, ``energy``, ``error``, ``variance``,
        ``v_score``, ``checkpoint``, and ``exact_energy``, ``relative_error`` when compared with exact
        diagonalization.
    """
    import torch

    from physgen.io import atomic_write
    from physgen.quantum import VMC, RBMSampler, ground_state_energy

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lattice = build_lattice(cfg.lattice)
    hamiltonian = build_hamiltonian(cfg.hamiltonian, lattice)
    model = build_wavefunction(cfg.model, lattice)
    v = cfg.vmc
    sampler = None
    if cfg.model.type == "rbm":
        sc = cfg.sampler
        sampler = RBMSampler(
            model,
            sc.n_chains,
            move=sc.move,
            lattice=lattice if sc.move == "exchange" else None,
            burn_in=sc.burn_in,
            thin=sc.thin,
            generator=torch.Generator().manual_seed(v.seed + 1),
        )
    driver = VMC(
        hamiltonian,
        model,
        n_samples=v.n_samples,
        optimizer=v.optimizer,
        lr=v.lr,
        lr_final=v.lr_final,
        lr_schedule=v.lr_schedule,
        warmup_steps=v.warmup_steps,
        diag_shift=v.diag_shift,
        diag_shift_final=v.diag_shift_final,
        max_grad_norm=v.max_grad_norm,
        sampler=sampler,
        seed=v.seed,
    )
    ckpt = out / "vmc_checkpoint.safetensors"
    if v.resume and ckpt.exists():
        driver.load_checkpoint(ckpt)
    t0 = time.perf_counter()
    driver.run(
        max(v.n_steps - driver.step_count, 0),
        checkpoint=ckpt,
        checkpoint_every=v.checkpoint_every,
        time_limit_s=v.time_limit_s,
        extra_config={"run_config": dataclasses.asdict(cfg)},
        total_steps=v.n_steps,
    )
    train_s = time.perf_counter() - t0
    est = driver.estimate(v.eval_samples)
    summary: dict[str, Any] = {
        "config": dataclasses.asdict(cfg),
        "steps": driver.step_count,
        "train_time_s": train_s,
        **{k: est[k] for k in ("energy", "error", "variance", "v_score")},
        "checkpoint": str(ckpt),
    }
    if v.exact_reference and lattice.n_sites <= _EXACT_MAX_SITES:
        e0 = ground_state_energy(hamiltonian)
        summary["exact_energy"] = e0
        summary["relative_error"] = abs(est["energy"] - e0) / abs(e0)
    atomic_write(out / "vmc_summary.json", json.dumps(summary, indent=2, default=float))
    return summary


def run_vmc_config(path: str | Path, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Load a VMC config and run it (:func:`run_vmc`); ``out_dir`` defaults to ``<config stem>_out`` beside it.

    Raises:
        ConfigError: the file does not fit :class:`physgen.config.VMCConfig`.
    """
    cfg = load_config(path, "vmc")
    path = Path(path)
    try:
        return run_vmc(cfg, out_dir if out_dir is not None else path.with_name(path.stem + "_out"))
    except ConfigError as err:
        raise err.at(str(path)) from None


def cmd_vmc(args: argparse.Namespace) -> int:
    print(json.dumps(run_vmc_config(args.config, args.run_dir), indent=2, default=str))
    return 0
