r"""TOML configuration of a tomography run (``python -m physgen.quantum.tomography CONFIG.toml``).

``run_tomography_config(path, out_dir)`` runs the whole pipeline from a TOML file (exact state ->
exact measurement records -> model -> fit -> figures) with the fitting code of
:mod:`physgen.quantum.tomography`, which re-exports every name defined here. The file has a
top-level ``name`` and tables ``[state]`` (:class:`StateConfig`), ``[measurement]``
(:class:`MeasurementConfig`), ``[model]`` (:class:`ModelConfig`, with a sub-table
``[model.options]``) and ``[train]`` (:class:`TrainConfig`); an unknown key is an error naming the
allowed ones. See ``examples/quantum/tomography_*.toml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from physgen.quantum.measurements import MeasurementRecords, rotate_dense

__all__ = [
    "TomographyConfig",
    "StateConfig",
    "MeasurementConfig",
    "ModelConfig",
    "TrainConfig",
    "load_config",
    "build_model",
    "run_tomography_config",
    "main",
]


@dataclass
class StateConfig:
    """The exact state that is measured: ``kind`` in ``tfim | ghz | w``.

    ``h, J, periodic`` apply to ``tfim``; ``phase`` to ``ghz`` (relative phase of ``|1..1>``)
    and ``w`` (phase ``j * phase`` on the component with site j flipped).
    """

    kind: str = "tfim"
    n_sites: int = 10
    h: float = 1.0
    J: float = 1.0
    periodic: bool = False
    phase: float = 0.0


@dataclass
class MeasurementConfig:
    """Which shots: ``z_shots`` in the all-Z basis plus ``shots_per_basis`` in each extra basis.

    Extra bases: ``scheme = "none" | "random" | "pairs" | "global"`` (global: ``X^N`` and
    ``Y X^(N-1)``) and/or an explicit list ``bases``. ``records`` loads a saved records file instead.
    """

    z_shots: int = 10000
    scheme: str = "none"
    n_bases: int = 0
    max_non_z: int = 2
    letters: str = "XY"
    bases: list = field(default_factory=list)
    shots_per_basis: int = 0
    records: str = ""
    seed: int = 0


@dataclass
class ModelConfig:
    """``kind`` in ``rnn | transformer | rbm``; ``options`` are the class's keyword arguments."""

    kind: str = "rnn"
    options: dict = field(default_factory=dict)
    seed: int = 0


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 200
    lr: float = 5e-3
    schedule: str = "cosine"
    method: str = "auto"
    eval_every: int = 5
    max_grad_norm: float = 10.0
    device: str = "cpu"
    seed: int = 0
    progress: bool = True


@dataclass
class TomographyConfig:
    name: str = "tomography"
    state: StateConfig = field(default_factory=StateConfig)
    measurement: MeasurementConfig = field(default_factory=MeasurementConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _build(cls, data: dict, where: str):
    import dataclasses

    if not isinstance(data, dict):
        raise ValueError(f"[{where}] must be a table, got {type(data).__name__}.")
    from physgen.config import check_keys

    fields = {f.name: f for f in dataclasses.fields(cls)}
    check_keys(data, fields, f"[{where}]")
    kwargs = {}
    for key, value in data.items():
        default = fields[key].default_factory() if fields[key].default is dataclasses.MISSING else fields[key].default
        if dataclasses.is_dataclass(default):
            kwargs[key] = _build(type(default), value, key)
            continue
        want = type(default)
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise ValueError(f"[{where}] {key} = {value!r} should be of type {want.__name__}.")
        kwargs[key] = value
    return cls(**kwargs)


def load_config(path: str) -> TomographyConfig:
    """Read and validate a tomography TOML file (unknown keys are errors)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    with open(path, "rb") as f:
        cfg = _build(TomographyConfig, tomllib.load(f), "top level")
    if cfg.state.kind not in ("tfim", "ghz", "w"):
        raise ValueError(f"[state] kind = {cfg.state.kind!r}; allowed: 'tfim', 'ghz', 'w'.")
    if cfg.measurement.scheme not in ("none", "random", "pairs", "global"):
        raise ValueError(
            f"[measurement] scheme = {cfg.measurement.scheme!r}; allowed: 'none', 'random', 'pairs', 'global'."
        )
    if cfg.model.kind not in _MODELS:
        raise ValueError(f"[model] kind = {cfg.model.kind!r}; allowed: {', '.join(_MODELS)}.")
    return cfg


_MODELS = {
    "rnn": ("physgen.quantum.rnn", "RNNWavefunction"),
    "transformer": ("physgen.quantum.transformer", "TransformerWavefunction"),
    "rbm": ("physgen.quantum.rbm", "RBMWavefunction"),
}
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def build_model(kind: str, n_sites: int, options: dict, *, seed: int = 0) -> nn.Module:
    """Construct a wavefunction by name with deterministic initialisation (global RNG untouched)."""
    import importlib

    module, name = _MODELS[kind]
    cls = getattr(importlib.import_module(module), name)
    opts = dict(options)
    if isinstance(opts.get("dtype"), str):
        if opts["dtype"] not in _DTYPES:
            raise ValueError(f"[model.options] dtype = {opts['dtype']!r}; allowed: {', '.join(_DTYPES)}.")
        opts["dtype"] = _DTYPES[opts["dtype"]]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return cls(n_sites, **opts)
        except TypeError as err:
            raise ValueError(f"[model.options] not accepted by {name}: {err}") from None


def _exact_state(cfg: StateConfig) -> np.ndarray:
    from physgen.quantum.states import ghz_state, tfim_ground_state, w_state

    if cfg.kind == "tfim":
        return tfim_ground_state(cfg.n_sites, h=cfg.h, J=cfg.J, periodic=cfg.periodic)[1]
    if cfg.kind == "ghz":
        return ghz_state(cfg.n_sites, phase=cfg.phase)
    return w_state(cfg.n_sites, phase=cfg.phase)


def _make_records(cfg: MeasurementConfig, psi: np.ndarray, n: int) -> MeasurementRecords:
    from physgen.quantum.states import measure, pair_bases, random_bases

    if cfg.records:
        rec = MeasurementRecords.load(cfg.records)
        if rec.n_sites != n:
            raise ValueError(f"{cfg.records} holds {rec.n_sites}-site records but [state] n_sites = {n}.")
        return rec
    extra: list[str] = list(cfg.bases)
    if cfg.scheme == "random":
        extra += random_bases(n, cfg.n_bases, max_non_z=cfg.max_non_z, letters=cfg.letters, seed=cfg.seed + 1)
    elif cfg.scheme == "pairs":
        extra += pair_bases(n, letters=cfg.letters)
    elif cfg.scheme == "global":
        extra += ["X" * n, "Y" + "X" * (n - 1)]
    bases, shots = (["Z" * n], [cfg.z_shots]) if cfg.z_shots > 0 else ([], [])
    if extra and cfg.shots_per_basis <= 0:
        raise ValueError("[measurement] extra bases are requested but shots_per_basis is 0; set shots_per_basis.")
    bases += extra
    shots += [cfg.shots_per_basis] * len(extra)
    if not bases:
        raise ValueError("[measurement] no shots: set z_shots > 0 or extra bases with shots_per_basis > 0.")
    return measure(psi, bases, shots, seed=cfg.seed)


def _exact_nll(psi: np.ndarray, records: MeasurementRecords) -> float:
    """NLL per shot of the records under the exact state (the floor a perfect model reaches)."""
    t = torch.as_tensor(psi).to(torch.complex128)
    w = 2 ** torch.arange(records.n_sites - 1, -1, -1)
    idx = (records.outcomes.cpu() * w).sum(1)
    uniq, inv = torch.unique(records.bases.cpu(), dim=0, return_inverse=True)
    total = 0.0
    for j, b in enumerate(uniq):
        p = rotate_dense(t, b).abs().square()[idx[inv == j]]
        total -= float(torch.log(p).sum())
    return total / len(records)


def run_tomography_config(path: str, out_dir: str | None = None) -> dict:
    """Run a tomography experiment from a TOML config and return its figures.

    The config has a top-level ``name`` and tables ``[state]`` (:class:`StateConfig`),
    ``[measurement]`` (:class:`MeasurementConfig`), ``[model]`` (:class:`ModelConfig`,
    with a sub-table ``[model.options]``) and ``[train]`` (:class:`TrainConfig`); an unknown key
    is an error naming the allowed ones.

    Args:
        path: the TOML file.
        out_dir: where to write ``result.json``, ``records.safetensors`` and
            ``model.safetensors`` (nothing is written when ``None``).

    Returns:
        a JSON-serialisable dict: ``fidelity`` (quantum, ``|<psi_exact|psi_model>|^2`` by exact
        enumeration), ``nll`` and ``nll_exact`` per shot, ``observable_errors``, shot counts,
        ``time_s`` and the training ``history``.
    """
    import dataclasses
    import json
    from pathlib import Path

    from physgen.quantum.tomography import fit_tomography, observable_errors

    cfg = load_config(path)
    n = cfg.state.n_sites
    psi = _exact_state(cfg.state)
    records = _make_records(cfg.measurement, psi, n)
    device = cfg.train.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = build_model(cfg.model.kind, n, cfg.model.options, seed=cfg.model.seed).to(device)
    gen = torch.Generator().manual_seed(cfg.train.seed)
    t = cfg.train
    if t.progress:
        print(f"[{cfg.name}] {cfg.state.kind} N={n}: {len(records)} shots in {len(records.basis_counts())} bases; "
              f"model {cfg.model.kind}")
    res = fit_tomography(
        model, records, epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, schedule=t.schedule,
        method=t.method, psi_exact=psi, eval_every=t.eval_every, max_grad_norm=t.max_grad_norm,
        generator=gen, progress=t.progress,
    )
    counts = records.basis_counts()
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
        from physgen.io import atomic_write_text, save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        records.save(out / "records.safetensors", meta={"state": dataclasses.asdict(cfg.state)})
        save_file(out / "model.safetensors", model.state_dict(), "tomography_model",
                  {"kind": cfg.model.kind, "n_sites": n, "options": cfg.model.options})
        atomic_write_text(out / "result.json", json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m physgen.quantum.tomography CONFIG.toml [--out DIR]``: run and print the figures."""
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="physgen tomography", description=main.__doc__)
    ap.add_argument("config")
    ap.add_argument("--out", default=None, help="output folder (result.json, records, model)")
    args = ap.parse_args(argv)
    res = run_tomography_config(args.config, args.out)
    summary = {k: res[k] for k in ("name", "state", "n_sites", "model", "n_shots", "n_bases", "fidelity",
                                   "nll", "nll_exact", "time_s")}
    summary["observable_errors"] = res["observable_errors"]
    print("RESULT " + json.dumps(summary))
    return 0
