r"""Quantum state tomography: maximum-likelihood fit of a wavefunction to Pauli-basis records.

Data: ``n`` shots, each a basis ``b`` (one Pauli letter per site) and an outcome ``s`` (0/1 per
site), see :mod:`physgen.quantum.measurements`. Model: any wavefunction module with
``n_sites`` and ``log_psi(sigma) -> (B,)`` complex (``log|psi| + i phase``).

Likelihood. The probability of outcome ``s`` in basis ``b`` is ``|psi_b(s)|^2 / Z`` with

    psi_b(s) = sum_{s'} prod_i U_{b_i}[s_i, s'_i] psi(s'),        Z = sum_s |psi(s)|^2,

and the loss is the negative log-likelihood per shot, ``-mean log |psi_b(s)|^2 + log Z``.
Two exact evaluations of ``psi_b(s)``:

* ``"local"``: sum over the ``2^k`` configurations ``s'`` that differ from ``s`` only on the ``k``
  non-Z sites of the shot (``U_Z`` is the identity); ``log_psi`` is called on ``B 2^k``
  configurations. Cheap for bases with few X/Y sites (Torlai et al., Nat. Phys. 14, 447 (2018)).
* ``"dense"``: evaluate ``psi`` on all ``2^N`` configurations and rotate the whole vector per
  distinct basis (``O(N 2^N)``); needed for global bases such as ``X^N`` (a GHZ phase is only
  visible there), and limited to ``N <= 20``.

``"auto"`` picks ``local`` when every shot of the batch has at most 6 non-Z sites.
Autoregressive models (those with ``log_prob``) are exactly normalised, ``log Z = 0``; other
models (the RBM) are normalised by exact enumeration of ``Z`` over ``2^N`` states (``N <= 20``).
A Z-basis-only fit determines ``|psi|`` and therefore suits positive states (TFIM ground states);
general states need X/Y data.

Figures of merit: the quantum fidelity ``F = |<psi_exact|psi_model>|^2`` of the normalised
states, by exact enumeration over ``2^N`` configurations, and observables (``<Z_i>``, ``<X_i>``,
``<Z_i Z_j>``) of the dense model state against the exact ones.

``run_tomography_config(path, out_dir)`` runs the whole pipeline from a TOML file (exact state ->
exact measurement records -> model -> fit -> figures); ``python -m physgen.quantum.tomography
CONFIG.toml [--out DIR]`` prints them, the last line being ``RESULT {json}``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from physgen.quantum.measurements import (
    MeasurementRecords,
    _unitaries,
    enumerate_configs,
    rotate_dense,
)

__all__ = [
    "is_normalised",
    "model_state",
    "log_partition",
    "rotated_log_psi",
    "nll",
    "fidelity",
    "observables",
    "observable_errors",
    "TomographyResult",
    "fit_tomography",
    "TomographyConfig",
    "StateConfig",
    "MeasurementConfig",
    "ModelConfig",
    "TrainConfig",
    "load_config",
    "build_model",
    "run_tomography_config",
]

_DENSE_MAX_N = 20
_LOCAL_MAX_K = 6


def _call_log_psi(model: nn.Module, sigma: Tensor) -> Tensor:
    out = model.log_psi(sigma)
    if isinstance(out, tuple):  # (log|psi|, sign) wavefunctions
        log_abs, sign = out
        return torch.complex(log_abs, torch.where(torch.as_tensor(sign) < 0, math.pi, 0.0).to(log_abs.dtype))
    if not out.is_complex():
        return torch.complex(out, torch.zeros_like(out))
    return out


def _model_device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def is_normalised(model: nn.Module) -> bool:
    """True for exactly normalised (autoregressive) models: those with a ``log_prob`` method."""
    return callable(getattr(model, "log_prob", None))


def _check_dense_n(n: int, what: str) -> None:
    if n > _DENSE_MAX_N:
        raise ValueError(
            f"{what} enumerates all 2**N configurations and is limited to N <= {_DENSE_MAX_N}; got N = {n}. "
            "Use an autoregressive model and bases with few non-Z sites (method='local')."
        )


def _dense_log_psi(model: nn.Module, chunk: int = 1 << 14) -> Tensor:
    n = model.n_sites
    _check_dense_n(n, "the dense wavefunction")
    configs = enumerate_configs(n, device=_model_device(model))
    return torch.cat([_call_log_psi(model, c) for c in configs.split(chunk)])


def log_partition(model: nn.Module) -> Tensor:
    """``log Z = log sum_s |psi(s)|^2`` (0 for normalised models, else exact enumeration)."""
    if is_normalised(model):
        return torch.zeros((), device=_model_device(model))
    return torch.logsumexp(2.0 * _dense_log_psi(model).real, dim=0)


@torch.no_grad()
def model_state(model: nn.Module) -> np.ndarray:
    """The model's normalised dense state ``(2**N,)`` complex128 (exact enumeration)."""
    lp = _dense_log_psi(model).to(torch.complex128).cpu()
    lp = lp - 0.5 * torch.logsumexp(2.0 * lp.real, dim=0)
    return torch.exp(lp).numpy()


def _rotated_local(model: nn.Module, outcomes: Tensor, bases: Tensor) -> Tensor:
    """``log psi_b(s)`` by summing over the non-Z sites of each shot (groups of equal k)."""
    nonz = bases != 0
    k_per = nonz.sum(dim=1)
    out = None
    for k in torch.unique(k_per).tolist():
        rows = torch.nonzero(k_per == k).squeeze(1)
        s, b = outcomes[rows], bases[rows]
        if k == 0:
            lp = _call_log_psi(model, s)
        else:
            m = 2**k
            # positions of the non-Z sites (stable sort keeps them in site order): (r, k)
            pos = torch.argsort((~nonz[rows]).to(torch.int8), dim=1, stable=True)[:, :k]
            bits = enumerate_configs(k, device=s.device)  # (m, k)
            sp = s.unsqueeze(1).repeat(1, m, 1)  # (r, m, N)
            sp.scatter_(2, pos.unsqueeze(1).expand(-1, m, -1), bits.unsqueeze(0).expand(len(rows), -1, -1))
            lpp = _call_log_psi(model, sp.reshape(-1, s.shape[1])).reshape(len(rows), m)
            u = _unitaries(lpp.dtype, s.device)  # (3, 2, 2)
            code = torch.gather(b, 1, pos)  # (r, k)
            sk = torch.gather(s, 1, pos)  # (r, k)
            coef = u[code.unsqueeze(1), sk.unsqueeze(1), bits.unsqueeze(0)].prod(dim=2)  # (r, m)
            shift = lpp.real.max(dim=1, keepdim=True).values.detach()
            lp = shift.squeeze(1) + torch.log((coef * torch.exp(lpp - shift)).sum(dim=1))
        if out is None:
            out = torch.empty(outcomes.shape[0], dtype=lp.dtype, device=lp.device)
        out = out.index_put((rows,), lp)
    return out


def _rotated_dense(model: nn.Module, outcomes: Tensor, bases: Tensor) -> Tensor:
    """``log psi_b(s)`` by rotating the full dense model vector for each distinct basis."""
    full = _dense_log_psi(model)
    shift = full.real.max().detach()
    amp = torch.exp(full - shift)
    weights = 2 ** torch.arange(outcomes.shape[1] - 1, -1, -1, device=outcomes.device)
    idx = (outcomes * weights).sum(dim=1)
    uniq, inverse = torch.unique(bases, dim=0, return_inverse=True)
    out = torch.empty(outcomes.shape[0], dtype=full.dtype, device=full.device)
    for j, b in enumerate(uniq):
        rows = torch.nonzero(inverse == j).squeeze(1)
        out = out.index_put((rows,), shift + torch.log(rotate_dense(amp, b)[idx[rows]]))
    return out


def rotated_log_psi(model: nn.Module, records: MeasurementRecords, *, method: str = "auto") -> Tensor:
    """Unnormalised ``log psi_b(s)`` of every shot: ``(n,)`` complex (differentiable).

    Args:
        model: a wavefunction module (``n_sites``, ``log_psi``).
        records: shots with ``outcomes (n, N)`` and ``bases (n, N)``.
        method: ``"local"``, ``"dense"`` or ``"auto"`` (see the module docstring).
    """
    if records.n_sites != model.n_sites:
        raise ValueError(
            f"the records have {records.n_sites} sites per shot but the model has {model.n_sites}; "
            "build the model with n_sites matching the measured system."
        )
    if method not in ("auto", "local", "dense"):
        raise ValueError(f"method must be 'auto', 'local' or 'dense', got {method!r}.")
    dev = _model_device(model)
    outcomes, bases = records.outcomes.to(dev), records.bases.to(dev)
    if method == "auto":
        kmax = int((bases != 0).sum(dim=1).max()) if len(records) else 0
        method = "local" if kmax <= _LOCAL_MAX_K or model.n_sites > _DENSE_MAX_N else "dense"
    if method == "dense":
        return _rotated_dense(model, outcomes, bases)
    return _rotated_local(model, outcomes, bases)


def nll(model: nn.Module, records: MeasurementRecords, *, method: str = "auto") -> Tensor:
    """Negative log-likelihood per shot, ``-mean log(|psi_b(s)|^2 / Z)`` (a scalar)."""
    lp = rotated_log_psi(model, records, method=method)
    return -(2.0 * lp.real).mean() + log_partition(model)


def _as_dense(psi) -> np.ndarray:
    if isinstance(psi, nn.Module):
        return model_state(psi)
    v = np.asarray(psi.detach().cpu() if isinstance(psi, Tensor) else psi).astype(np.complex128).ravel()
    return v / np.linalg.norm(v)


def fidelity(model_or_psi, psi_exact) -> float:
    """Quantum state fidelity ``|<psi_exact|psi_model>|^2`` of the normalised states (exact)."""
    a, b = _as_dense(model_or_psi), _as_dense(psi_exact)
    if a.shape != b.shape:
        raise ValueError(f"states of different sizes: {a.shape[0]} vs {b.shape[0]} amplitudes.")
    return float(abs(np.vdot(b, a)) ** 2)


def observables(psi) -> dict[str, np.ndarray]:
    """Exact one- and two-point observables of a dense state (or a model, by enumeration).

    Returns:
        ``{"mz": (N,) <Z_i>, "mx": (N,) <X_i>, "zz": (N, N) <Z_i Z_j>, "mz_total": <sum Z>/N}``.
    """
    v = _as_dense(psi)
    n = int(round(math.log2(v.shape[0])))
    p = np.abs(v) ** 2
    s = 1.0 - 2.0 * enumerate_configs(n).numpy()  # (2**N, N)
    mz = p @ s
    zz = (s * p[:, None]).T @ s
    t = v.reshape([2] * n)
    mx = np.array([np.real(np.vdot(t, np.flip(t, axis=i))) for i in range(n)])
    return {"mz": mz, "mx": mx, "zz": zz, "mz_total": np.array(mz.mean())}


def observable_errors(psi_model, psi_exact) -> dict[str, float]:
    """Largest absolute error of each observable of :func:`observables`."""
    a, b = observables(psi_model), observables(psi_exact)
    return {k: float(np.max(np.abs(a[k] - b[k]))) for k in a}


@dataclass
class TomographyResult:
    """Outcome of :func:`fit_tomography`.

    Attributes:
        nll: final training NLL per shot.
        fidelity: final quantum fidelity (``None`` without an exact state).
        history: one dict per evaluation: ``epoch``, ``nll``, ``fidelity`` (if known), ``time_s``.
        time_s: wall time of the fit.
    """

    nll: float
    fidelity: float | None
    history: list[dict] = field(default_factory=list)
    time_s: float = 0.0


def fit_tomography(
    model: nn.Module,
    records: MeasurementRecords,
    *,
    epochs: int = 50,
    batch_size: int = 500,
    lr: float = 1e-2,
    schedule: str = "cosine",
    method: str = "auto",
    psi_exact=None,
    eval_every: int = 5,
    max_grad_norm: float | None = 10.0,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> TomographyResult:
    """Maximum-likelihood training of ``model`` on measurement records (Adam, minibatches).

    Args:
        model: wavefunction module (on the device to train on).
        records: the shots; their number of sites must match ``model.n_sites``.
        epochs, batch_size, lr: optimisation budget (``lr`` follows ``schedule``:
            ``"cosine"`` decays to 1% over the run, ``"constant"`` keeps it).
        method: likelihood evaluation, ``"auto" | "local" | "dense"``.
        psi_exact: ``(2**N,)`` exact state; when given, the fidelity is tracked (never used to train).
        eval_every: epochs between history entries (and the last epoch).
        max_grad_norm: gradient clipping (``None`` disables).
        generator: CPU generator for the minibatch shuffling.
        progress: print one line per evaluation.
    """
    if records.n_sites != model.n_sites:
        raise ValueError(
            f"the records have {records.n_sites} sites per shot but the model has {model.n_sites}."
        )
    if len(records) == 0:
        raise ValueError("no measurement records to train on.")
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}.")
    records = records.to(_model_device(model))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = math.ceil(len(records) / batch_size)
    total = max(epochs * steps_per_epoch, 1)
    sched = None
    if schedule == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda t: 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(t, total) / total))
        )
    history: list[dict] = []
    t0 = time.perf_counter()
    last = float("nan")
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(len(records), generator=generator).to(records.outcomes.device)
        run = 0.0
        for i in range(steps_per_epoch):
            batch = records[perm[i * batch_size : (i + 1) * batch_size]]
            loss = nll(model, batch, method=method)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            opt.step()
            if sched is not None:
                sched.step()
            run += float(loss.detach()) * len(batch)
        last = run / len(records)
        if not math.isfinite(last):
            raise FloatingPointError(f"the tomography loss became {last} at epoch {epoch}; lower lr.")
        if epoch % eval_every == 0 or epoch == epochs:
            entry = {"epoch": epoch, "nll": last, "time_s": time.perf_counter() - t0}
            if psi_exact is not None:
                entry["fidelity"] = fidelity(model, psi_exact)
            history.append(entry)
            if progress:
                print("  ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()))
    fid = fidelity(model, psi_exact) if psi_exact is not None else None
    return TomographyResult(nll=last, fidelity=fid, history=history, time_s=time.perf_counter() - t0)


# -- TOML configuration -------------------------------------------------------------------


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
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ValueError(f"unknown key {key!r} in [{where}]; allowed keys: {', '.join(fields)}.")
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
    from physgen.quantum.measurements import ghz_state, tfim_ground_state, w_state

    if cfg.kind == "tfim":
        return tfim_ground_state(cfg.n_sites, h=cfg.h, J=cfg.J, periodic=cfg.periodic)[1]
    if cfg.kind == "ghz":
        return ghz_state(cfg.n_sites, phase=cfg.phase)
    return w_state(cfg.n_sites, phase=cfg.phase)


def _make_records(cfg: MeasurementConfig, psi: np.ndarray, n: int) -> MeasurementRecords:
    from physgen.quantum.measurements import measure, pair_bases, random_bases

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


if __name__ == "__main__":
    raise SystemExit(main())
