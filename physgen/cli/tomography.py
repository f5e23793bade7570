"""``physgen tomography CONFIG.toml``: build a tomography job from a :class:`physgen.config.TomographyConfig`.

The job: the exact state of ``[state]`` -> measurement records (``[measurement]``, simulated exactly or
loaded) -> the wavefunction of ``[model]`` -> ``physgen.quantum.tomography.fit_tomography`` -> figures
(fidelity by exact enumeration, NLL per shot against the exact state's, observable errors).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from physgen.config import ConfigError, TomographyConfig, load_config
from physgen.config.tomography import MeasurementSection, StateSection

__all__ = ["cmd_tomography", "run_tomography", "run_tomography_config", "exact_state", "make_records"]


def build_model(kind: str, n_sites: int, options: dict[str, Any], *, seed: int = 0) -> Any:
    """:func:`physgen.quantum.build_wavefunction` with its errors as config errors of ``[model]``."""
    from physgen.quantum.wavefunctions import build_wavefunction

    try:
        return build_wavefunction(kind, n_sites, options, seed=seed)
    except ValueError as err:
        raise ConfigError(f"[model] {err}") from None
    except TypeError as err:
        raise ConfigError(f"[model.options] {err}") from None


def exact_state(cfg: StateSection) -> Any:
    """The exact state vector ``(2**n_sites,)`` of ``[state]``."""
    from physgen.quantum import ghz_state, tfim_ground_state, w_state

    if cfg.kind == "tfim":
        return tfim_ground_state(cfg.n_sites, h=cfg.h, J=cfg.J, periodic=cfg.periodic)[1]
    if cfg.kind == "ghz":
        return ghz_state(cfg.n_sites, phase=cfg.phase)
    return w_state(cfg.n_sites, phase=cfg.phase)


def make_records(cfg: MeasurementSection, psi: Any, n_sites: int) -> Any:
    """The ``MeasurementRecords`` of ``[measurement]``: loaded from ``records``, or measured on ``psi``.

    Raises:
        ConfigError: records of another size, extra bases without shots, or no shots at all.
    """
    from physgen.quantum import MeasurementRecords, measure
    from physgen.quantum.states import pair_bases, random_bases

    if cfg.records:
        rec = MeasurementRecords.load(cfg.records)
        if rec.n_sites != n_sites:
            raise ConfigError(
                f"[measurement] records = {cfg.records!r} holds {rec.n_sites}-site records but "
                f"[state] n_sites = {n_sites}"
            )
        return rec
    extra: list[str] = list(cfg.bases)
    if cfg.scheme == "random":
        extra += random_bases(n_sites, cfg.n_bases, max_non_z=cfg.max_non_z, letters=cfg.letters, seed=cfg.seed + 1)
    elif cfg.scheme == "pairs":
        extra += pair_bases(n_sites, letters=cfg.letters)
    elif cfg.scheme == "global":
        extra += ["X" * n_sites, "Y" + "X" * (n_sites - 1)]
    bases, shots = (["Z" * n_sites], [cfg.z_shots]) if cfg.z_shots > 0 else ([], [])
    if extra and cfg.shots_per_basis <= 0:
        raise ConfigError("[measurement] extra bases are requested but shots_per_basis = 0; set shots_per_basis")
    bases += extra
    shots += [cfg.shots_per_basis] * len(extra)
    if not bases:
        raise ConfigError("[measurement] no shots: set z_shots > 0, or extra bases with shots_per_basis > 0")
    return measure(psi, bases, shots, seed=cfg.seed)


def _exact_nll(psi: Any, records: Any) -> float:
    """NLL per shot of the records under the exact state (the floor a perfect model reaches)."""
    import torch

    from physgen.quantum.measurements import rotate_dense

    t = torch.as_tensor(psi).to(torch.complex128)
    w = 2 ** torch.arange(records.n_sites - 1, -1, -1)
    idx = (records.outcomes.cpu() * w).sum(1)
    uniq, inv = torch.unique(records.bases.cpu(), dim=0, return_inverse=True)
    total = 0.0
    for j, b in enumerate(uniq):
        p = rotate_dense(t, b).abs().square()[idx[inv == j]]
        total -= float(torch.log(p).sum())
    return total / len(records)


def run_tomography(cfg: TomographyConfig, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Run the tomography job of ``cfg``.

    Args:
        cfg: the config.
        out_dir: where to write ``result.json``, ``records.safetensors`` and ``model.safetensors``
            (nothing is written when ``None``).

    Returns:
        a JSON-serialisable dict: ``fidelity`` (quantum, ``|<psi_exact|psi_model>|^2`` by exact
        enumeration), ``nll`` and ``nll_exact`` per shot, ``observable_errors``, shot counts,
        ``time_s``, the training ``history`` and the ``config``.
    """
    import torch

    from physgen.quantum.tomography import fit_tomography, observable_errors

    n = cfg.state.n_sites
    psi = exact_state(cfg.state)
    records = make_records(cfg.measurement, psi, n)
    t = cfg.train
    device = ("cuda" if torch.cuda.is_available() else "cpu") if t.device == "auto" else t.device
    model = build_model(cfg.model.kind, n, cfg.model.options, seed=cfg.model.seed).to(device)
    counts = records.basis_counts()
    if t.progress:
        print(
            f"[{cfg.name}] {cfg.state.kind} N={n}: {len(records)} shots in {len(counts)} bases; model {cfg.model.kind}"
        )
    res = fit_tomography(
        model,
        records,
        epochs=t.epochs,
        batch_size=t.batch_size,
        lr=t.lr,
        schedule=t.schedule,
        method=t.method,
        psi_exact=psi,
        eval_every=t.eval_every,
        max_grad_norm=t.max_grad_norm,
        generator=torch.Generator().manual_seed(t.seed),
        progress=t.progress,
    )
    result = {
        "name": cfg.name,
        "state": cfg.state.kind,
        "n_sites": n,
        "model": cfg.model.kind,
        "n_shots": len(records),
        "n_bases": len(counts),
        "z_basis_shots": int(counts.get("Z" * n, 0)),
        "max_non_z_sites": int((records.bases != 0).sum(1).max()),
        "fidelity": res.fidelity,
        "fidelity_kind": "quantum |<psi_exact|psi_model>|^2, exact enumeration over 2^N states",
        "nll": res.nll,
        "nll_exact": _exact_nll(psi, records),
        "observable_errors": observable_errors(model, psi),
        "time_s": res.time_s,
        "history": res.history,
        "config": dataclasses.asdict(cfg),
    }
    if out_dir is not None:
        from physgen.io import atomic_write, save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        records.save(out / "records.safetensors", meta={"state": dataclasses.asdict(cfg.state)})
        save_file(
            out / "model.safetensors",
            model.state_dict(),
            "tomography_model",
            {"kind": cfg.model.kind, "n_sites": n, "options": cfg.model.options},
        )
        atomic_write(out / "result.json", json.dumps(result, indent=2))
    return result


def run_tomography_config(path: str | Path, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Load a tomography config and run it (:func:`run_tomography`).

    Raises:
        ConfigError: the file does not fit :class:`physgen.config.TomographyConfig`, or its parts do not
            fit together (model options, measurement settings).
    """
    cfg = load_config(path, "tomography")
    try:
        return run_tomography(cfg, out_dir)
    except ConfigError as err:
        raise err.at(str(path)) from None


def cmd_tomography(args: argparse.Namespace) -> int:
    print(json.dumps(run_tomography_config(args.config, args.run_dir), indent=2, default=str))
    return 0
