"""``physgen run``: simulate -> train -> validate -> report, resumable and skipped per stage.

A run folder holds::

    config.toml                 the config of the last run (``physgen validate RUN_DIR`` reads it)
    stages/<stage>.json         {"fingerprint", "done", "seconds"} per stage
    simulations/                the zarr simulation store (resumes where a killed run stopped)
    checkpoints/                fit()'s checkpoint, every epoch (a killed training resumes from it)
    posterior.safetensors       the trained posterior (physgen.load)
    train_history.json          the training history
    report/                     report.html, the PNGs, metrics.json, posterior_samples.nc, reference_samples.nc

Each stage has a fingerprint: a hash of its config sections and of the fingerprint of the stage before
(simulate: ``[simulator]`` + ``[simulation]``; train: + ``[encoder]`` + ``[model]`` + ``[train]``; validate: +
``[validate]``). The ``[encoder]`` is checked against the simulator's x before anything is simulated.
A stage whose state file says done with the current fingerprint is skipped. A stage whose recorded
fingerprint differs is refused, naming the changed settings (nothing is lost by a mistyped value); with
``restart=True`` (``physgen run --restart``) its outputs are removed and it runs again, and so do the
stages after it, while the stages before are kept. A stage that
was started with the current fingerprint but not finished (a killed run) resumes: the simulation store
and the training checkpoint continue where they stopped; validation starts over and publishes its
report folder only when it is complete. ``[train] max_time`` is a budget, not a setting: a changed one
redoes nothing, except that a training which stopped at its old budget resumes from its checkpoint when the
new one is larger (and the stages after it run again). This bookkeeping is :mod:`physgen.run_folder`, shared
with ``physgen emulate``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from physgen.diagnostics.report import Report
from physgen.io import atomic_write
from physgen.lock import folder_lock
from physgen.run_folder import (
    carry_budget,
    config_hash,
    load_report,
    publish_report,
    read_state,
    stage_must_run,
    timed_stage,
    to_toml,
    write_state,
)

if TYPE_CHECKING:
    from physgen.config import WorkflowConfig

# physgen.config (and the TOML reader behind it) is imported when a function runs, so `import physgen`
# works without a TOML parser (the library never reads TOML; this layer and the CLI do)

__all__ = ["run", "validate_run", "check_encoder", "refuse_changed", "open_run_folder", "to_toml", "STAGES"]

STAGES = ("simulate", "train", "validate")
_OUTPUTS = {
    "simulate": ("simulations",),
    "train": ("checkpoints", "posterior.safetensors", "train_history.json"),
    "validate": ("report",),
}


def run(
    config: str | os.PathLike | WorkflowConfig,
    run_dir: str | os.PathLike,
    *,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
    repair: bool = False,
    restart: bool = False,
) -> Report:
    """Simulate, train and validate as a workflow config says; each stage is skipped when already done.

    Args:
        config: a workflow TOML file (:mod:`physgen.config.workflow`) or a loaded :class:`WorkflowConfig`.
        run_dir: the run folder (created); its layout is in the module docstring.
        log: called with one line per stage (``"train: done in 12.3 s"``, ``"simulate: skipped (up to date)"``);
            None is silent.
        progress: progress bars / per-epoch lines of simulate and fit.
        repair: re-simulate damaged batches of the run's simulation store (physgen.simulate's ``repair``).
        restart: redo the stages whose settings changed since the folder's last run (and those after them;
            the stages before are kept). Without it a changed setting is refused, naming the difference.

    The run folder is locked while the run lasts (:func:`physgen.lock.folder_lock`): a second process on it
    is refused at once (FolderLockedError, naming the first).

    Returns:
        the validation :class:`~physgen.diagnostics.report.Report` (read back from ``report/`` when the
        validate stage is skipped: metrics, warnings, notes, timings and figures, without samples).

    Raises:
        ConfigError: the file is missing or does not fit the schema, a model name is unknown, or the run
            folder holds a run made with other settings and ``restart`` is False.
    """
    from physgen.config import ConfigError, WorkflowConfig, check_choice, load_config

    cfg = load_config(config, "run") if isinstance(config, (str, os.PathLike)) else config
    if not isinstance(cfg, WorkflowConfig):
        raise TypeError(f"config must be a TOML path or a WorkflowConfig; got {type(cfg).__name__}")
    from physgen.models import MODELS, PRESETS

    check_choice(cfg.model.name, [*MODELS, *PRESETS], "[model]", "name")
    if cfg.cluster.nproc > 1:
        raise ConfigError(
            f"[cluster] nproc = {cfg.cluster.nproc}: physgen run trains in one process; train on several "
            "ranks with `physgen train CONFIG --run-dir DIR --nproc N` (docs/scaling.md)"
        )
    run_dir = Path(run_dir)
    with folder_lock(run_dir, f"physgen run {config if isinstance(config, (str, os.PathLike)) else ''}".strip()):
        return _run(cfg, run_dir, log, progress, repair, restart)


def _run(
    cfg: WorkflowConfig, run_dir: Path, log: Callable[[str], None] | None, progress: bool, repair: bool, restart: bool
) -> Report:
    from physgen.config import resolve_simulator

    say = log or (lambda line: None)
    fps = open_run_folder(run_dir, cfg, _fingerprints, say, stages=STAGES, outputs=_OUTPUTS, restart=restart)
    simulator = resolve_simulator(cfg.simulator.name, cfg.simulator.options)
    check_encoder(cfg, simulator)

    data = None
    if stage_must_run(run_dir, "simulate", fps, say, stages=STAGES, outputs=_OUTPUTS):
        data = timed_stage(run_dir, "simulate", fps, say, lambda: _simulate(cfg, simulator, run_dir, progress, repair))
    if stage_must_run(run_dir, "train", fps, say, stages=STAGES, outputs=_OUTPUTS):
        if data is None:
            data = _simulate(cfg, simulator, run_dir, False, cluster=False)  # done: reads the store
        timed_stage(run_dir, "train", fps, say, lambda: _train(cfg, simulator, data, run_dir, progress))
    if stage_must_run(run_dir, "validate", fps, say, stages=STAGES, outputs=_OUTPUTS):
        return timed_stage(run_dir, "validate", fps, say, lambda: _validate(cfg, simulator, run_dir))
    return load_report(run_dir / "report")


def check_encoder(cfg: Any, simulator: Any) -> None:
    """Raise ConfigError when ``[encoder]`` cannot take the simulator's x (a CNN on point sets, a bad option).

    Builds the encoder for the simulator's ``x_shape`` (and checks its ``x_kind`` against the encoder's
    ``accepts``) before anything is simulated; a simulator without ``x_shape`` is checked by name only.
    """
    from physgen.config import ConfigError
    from physgen.nn import check_accepts, encoder_for

    name = cfg.encoder.name
    if not name:
        if cfg.encoder.options:
            raise ConfigError(
                '[encoder] options are given without a name; set [encoder] name (e.g. "cnn") or remove the options'
            )
        return
    x_shape = getattr(simulator, "x_shape", None)
    what = f"the simulator {type(simulator).__name__}"
    try:
        check_accepts(name, getattr(simulator, "x_kind", None), x_shape or (), what)
        if x_shape is not None:
            encoder_for(name, tuple(x_shape), **cfg.encoder.options)
    except ValueError as e:
        raise ConfigError(f"[encoder] {e}") from None


def validate_run(run_dir: str | os.PathLike, *, log: Callable[[str], None] | None = None) -> Report:
    """Validate the posterior of a run folder again (``physgen validate RUN_DIR``) and rewrite its report.

    Reads ``run_dir/config.toml`` and ``run_dir/posterior.safetensors``.

    Raises:
        FileNotFoundError: the folder holds no config copy or no posterior (run ``physgen run`` first).
        ConfigError: the config copy does not fit the schema.
    """
    run_dir = Path(run_dir)
    for name in ("config.toml", "posterior.safetensors"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(
                f"{run_dir / name} does not exist: {run_dir} is not a finished run folder; run "
                f"`physgen run CONFIG.toml --run-dir {run_dir}` first"
            )
    from physgen.config import load_config, resolve_simulator

    cfg = load_config(run_dir / "config.toml", "validate")
    fps = _fingerprints(cfg)
    simulator = resolve_simulator(cfg.simulator.name, cfg.simulator.options)
    say = log or (lambda line: None)
    with folder_lock(run_dir, f"physgen validate {run_dir}"):
        write_state(run_dir, "validate", fps["validate"], done=False)
        return timed_stage(run_dir, "validate", fps, say, lambda: _validate(cfg, simulator, run_dir))


# ------------------------------------------------------------------------------------------------ stages
def _simulate(
    cfg: WorkflowConfig, simulator: Any, run_dir: Path, progress: bool, repair: bool = False, cluster: bool = True
):
    """The simulations, on ``[cluster] scheduler`` when ``cluster`` (docs/scaling.md); the store alone when not."""
    from physgen.data import simulate
    from physgen.distributed import connect

    s, c = cfg.simulation, cfg.cluster
    with connect(c.scheduler if cluster else "", workers=c.workers, timeout=c.timeout) as client:
        return simulate(
            simulator,
            s.n,
            seed=s.seed,
            batch_size=s.batch_size,
            path=run_dir / "simulations",
            progress=progress,
            repair=repair,
            executor=client,
            retries=c.retries,
        )


def _train(cfg: WorkflowConfig, simulator: Any, data: Any, run_dir: Path, progress: bool) -> None:
    from physgen.inference import fit_posterior

    post = fit_posterior(
        data,
        model=cfg.model.name,
        transform=cfg.model.transform,
        model_options=cfg.model.options,
        prior=simulator.prior,
        **cfg.encoder.fit_options(),
        **cfg.train.fit_options(),
        checkpoint_dir=run_dir / "checkpoints",
        resume=True,
        progress=progress,
    )
    save_trained(post, run_dir, "posterior.safetensors")


def save_trained(estimator: Any, run_dir: Path, name: str) -> Path:
    """Save a trained estimator as ``run_dir/name`` and its training history as ``run_dir/train_history.json``."""
    path = estimator.save(run_dir / name)
    r = estimator.fit_result
    atomic_write(
        run_dir / "train_history.json",
        json.dumps({"stopped": r.stopped, "best_epoch": r.best_epoch, "history": r.history}, indent=1),
    )
    return path


def _validate(cfg: WorkflowConfig, simulator: Any, run_dir: Path) -> Report:
    import torch

    from physgen.config import ConfigError
    from physgen.data import load_simulations
    from physgen.inference import load
    from physgen.train.device import module_threads
    from physgen.validation import validate

    v = cfg.validate
    post = load(run_dir / "posterior.safetensors")
    observations: Any = v.num_observations
    if v.observations:
        observations = torch.tensor(v.observations, dtype=torch.float32)
        x_shape = tuple(post.x_shape)
        if tuple(observations.shape) != x_shape and tuple(observations.shape[1:]) != x_shape:
            raise ConfigError(
                f"[validate] observations have shape {tuple(observations.shape)}; give one x of shape "
                f"{x_shape} or a list of them"
            )
    history_file = run_dir / "train_history.json"
    history = json.loads(history_file.read_text()) if history_file.is_file() else None
    training = load_simulations(run_dir / "simulations", lazy=True) if (run_dir / "simulations").exists() else None

    with module_threads(cfg.train.num_threads or "auto", post):  # the training's rule: one thread for a small model
        report = validate(
            post,
            simulator,
            num_test=v.num_test,
            num_posterior_samples=v.num_posterior_samples,
            observations=observations,
            reference=v.reference,
            seed=v.seed,
            training_data=training,
            fit_result=history,
            num_reference_samples=v.num_reference_samples or None,
            reference_options=v.mcmc,
            config=dataclasses.asdict(cfg),
        )
    return publish_report(report, run_dir, f"physgen validation report: {run_dir.resolve().name}")


# ------------------------------------------------------------------------------------------ bookkeeping
def _fingerprints(cfg: WorkflowConfig) -> dict[str, str]:
    a = dataclasses.asdict
    sim = config_hash({"simulator": a(cfg.simulator), "simulation": a(cfg.simulation)})
    train = {"after": sim, "model": a(cfg.model), "train": a(cfg.train)}
    if cfg.encoder.name or cfg.encoder.options:  # (absent from the hash when unused: older run folders stay valid)
        train["encoder"] = a(cfg.encoder)
    train_hash = config_hash(train)
    return {
        "simulate": sim,
        "train": train_hash,
        "validate": config_hash({"after": train_hash, "validate": a(cfg.validate)}),
    }


def refuse_changed(run_dir: Path, cfg: Any, fps: dict[str, str], stages: tuple[str, ...]) -> None:
    """Raise ConfigError when a stage of ``run_dir`` was run with other settings than ``cfg``'s, naming the
    difference (from the folder's config.toml) and the way out (``--restart`` / ``restart=True``)."""
    from physgen.config import ConfigError

    changed = [s for s in stages if (state := read_state(run_dir, s)) and state.get("fingerprint") != fps[s]]
    if not changed:
        return
    diff = _difference(run_dir / "config.toml", cfg)
    raise ConfigError(
        f"{run_dir} holds a run made with other settings ({diff or 'see its config.toml'}): the "
        f"{changed[0]} stage and those after it would be redone. Run again with --restart "
        "(restart=True) to redo them, keeping the stages before, or choose another --run-dir"
    )


def _difference(old_path: Path, cfg: Any, limit: int = 6) -> str:
    """``"[train] lr: 0.001 -> 0.01; ..."`` between a folder's config.toml and ``cfg`` ("" if unreadable)."""
    previous = _folder_config(old_path, cfg)
    if previous is None:
        return ""
    old, new = dataclasses.asdict(previous), dataclasses.asdict(cfg)
    changes = [
        f"[{sec}] {key}: {old[sec].get(key)!r} -> {value!r}"
        for sec in new
        if isinstance(new[sec], dict)
        for key, value in new[sec].items()
        if old.get(sec, {}).get(key) != value
    ]
    return "; ".join(changes[:limit]) + (f"; and {len(changes) - limit} more" if len(changes) > limit else "")


def _folder_config(path: Path, cfg: Any) -> Any:
    """The config copy at ``path`` read as ``cfg``'s type (None when absent or unreadable)."""
    from physgen.config import ConfigError, load_config

    try:
        return load_config(path, type(cfg))
    except (ConfigError, OSError):
        return None


def open_run_folder(
    run_dir: Path,
    cfg: Any,
    fingerprints: Callable[[Any], dict[str, str]],
    say: Callable[[str], None],
    *,
    stages: tuple[str, ...],
    outputs: dict[str, tuple[str, ...]],
    restart: bool,
) -> dict[str, str]:
    """Check ``cfg`` against the run folder, carry a changed time budget over and write its config.toml.

    A stage recorded with other settings is refused (:func:`refuse_changed`) unless ``restart``; a changed
    ``[train] max_time`` alone is not a changed setting (:func:`_budget_change`,
    :func:`physgen.run_folder.carry_budget`). Returns the stages' fingerprints for ``cfg``.
    """
    fps = fingerprints(cfg)
    before, grown = _budget_change(run_dir, cfg, fingerprints, fps)
    if not restart:
        refuse_changed(run_dir, cfg, before, stages)
    carry_budget(run_dir, before, fps, say, stages=stages, outputs=outputs, grown=grown)
    atomic_write(run_dir / "config.toml", to_toml(cfg))
    return fps


def _budget_change(
    run_dir: Path, cfg: Any, fingerprints: Callable[[Any], dict[str, str]], fps: dict[str, str]
) -> tuple[dict[str, str], bool]:
    """The fingerprints ``cfg`` has under the run folder's old time budget, and whether training must resume.

    The old budget is ``[train] max_time`` of ``run_dir/config.toml`` (the current one when that is absent or
    unreadable): the stages are compared with these fingerprints, so a changed ``max_time`` alone is not a
    changed setting (:func:`physgen.run_folder.carry_budget`). The second value is True when the folder's
    training stopped at its old ``max_time`` (``train_history.json``) and the new one is larger or 0 (no limit).
    """
    previous = _folder_config(run_dir / "config.toml", cfg)
    if previous is None or previous.train.max_time == cfg.train.max_time:
        return fps, False
    old, new = previous.train.max_time, cfg.train.max_time
    before = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_time=old))
    try:
        stopped = json.loads((run_dir / "train_history.json").read_text()).get("stopped")
    except (OSError, ValueError, AttributeError):
        stopped = None
    return fingerprints(before), stopped == "max_time" and (new == 0 or new > old)
