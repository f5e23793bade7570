"""``physgen emulate``: simulate -> train an emulator -> compare it with the simulator -> report.

A run folder holds::

    config.toml                 the config of the last run
    stages/<stage>.json         {"fingerprint", "done", "seconds"} per stage (as for ``physgen run``)
    simulations/                the zarr simulation store (resumes where a killed run stopped)
    checkpoints/                fit()'s checkpoint (a killed training resumes from it)
    emulator.safetensors        the trained emulator (physgen.load)
    train_history.json          the training history
    report/                     report.html, the PNGs, metrics.json

The compare stage is :func:`physgen.emulator_comparison.compare_with_simulator` (and its downstream check).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from physgen.diagnostics.report import Report
from physgen.emulator_comparison import COMPARISONS, compare_with_simulator, downstream_check
from physgen.pipeline import open_run_folder, save_trained
from physgen.run_folder import (
    config_hash,
    load_report,
    publish_report,
    stage_must_run,
    timed_stage,
)

if TYPE_CHECKING:
    from physgen.config.emulate import EmulateConfig

__all__ = ["emulate", "compare_with_simulator", "downstream_check", "COMPARISONS"]

STAGES = ("simulate", "train", "compare")
OUTPUTS = {
    "simulate": ("simulations",),
    "train": ("checkpoints", "emulator.safetensors", "train_history.json"),
    "compare": ("report",),
}


def emulate(
    config: str | os.PathLike | EmulateConfig,
    run_dir: str | os.PathLike,
    *,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
    restart: bool = False,
) -> Report:
    """Simulate, train an emulator and compare it with the simulator, as an emulator config says.

    Each stage is skipped when done with the same settings and resumed when it was killed; a stage whose
    settings changed is refused, naming the difference, unless ``restart`` (then it runs again, with the
    stages after it). A larger ``[train] max_time`` after training stopped at the old one resumes training
    from its checkpoint (and compares again); another change of ``max_time`` alone redoes nothing.

    Args:
        config: an emulator TOML file (:mod:`physgen.config.emulate`) or a loaded :class:`EmulateConfig`.
        run_dir: the run folder (created); its layout is in the module docstring.
        log: called with one line per stage; None is silent.
        progress: progress bars / per-epoch lines of simulate and fit.
        restart: redo the stages whose settings changed (``physgen emulate --restart``).

    Returns:
        the comparison :class:`~physgen.diagnostics.report.Report`.

    Raises:
        ConfigError: the file is missing or does not fit the schema, or the model name is unknown.
    """
    from physgen.config import check_choice, load_config, resolve_simulator
    from physgen.config.emulate import EmulateConfig
    from physgen.models import MODELS, PRESETS

    cfg = load_config(config, EmulateConfig) if isinstance(config, (str, os.PathLike)) else config
    if not isinstance(cfg, EmulateConfig):
        raise TypeError(f"config must be a TOML path or an EmulateConfig; got {type(cfg).__name__}")
    check_choice(cfg.model.name, [*MODELS, *PRESETS], "[model]", "name")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    say = log or (lambda line: None)
    fps = open_run_folder(run_dir, cfg, _fingerprints, say, stages=STAGES, outputs=OUTPUTS, restart=restart)
    simulator = resolve_simulator(cfg.simulator.name, cfg.simulator.options)

    data = None
    if stage_must_run(run_dir, "simulate", fps, say, stages=STAGES, outputs=OUTPUTS):
        data = timed_stage(run_dir, "simulate", fps, say, lambda: _simulate(cfg, simulator, run_dir, progress))
    if stage_must_run(run_dir, "train", fps, say, stages=STAGES, outputs=OUTPUTS):
        if data is None:
            data = _simulate(cfg, simulator, run_dir, False)  # done: reads the store
        timed_stage(run_dir, "train", fps, say, lambda: _train(cfg, data, run_dir, progress))
    if stage_must_run(run_dir, "compare", fps, say, stages=STAGES, outputs=OUTPUTS):
        return timed_stage(run_dir, "compare", fps, say, lambda: _compare(cfg, simulator, run_dir, say))
    return load_report(run_dir / "report")


def _fingerprints(cfg: EmulateConfig) -> dict[str, str]:
    a = dataclasses.asdict
    sim_fp = config_hash({"simulator": a(cfg.simulator), "simulation": a(cfg.simulation)})
    model = a(cfg.model)
    if model["x_transform"] == "none":  # the default leaves runs made before the key existed as they were
        del model["x_transform"]
    train_fp = config_hash({"after": sim_fp, "model": model, "train": a(cfg.train)})
    return {
        "simulate": sim_fp,
        "train": train_fp,
        "compare": config_hash({"after": train_fp, "emulate": a(cfg.emulate)}),
    }


def _simulate(cfg: EmulateConfig, simulator: Any, run_dir: Path, progress: bool):
    from physgen.data import simulate

    s = cfg.simulation
    return simulate(
        simulator, s.n, seed=s.seed, batch_size=s.batch_size, path=run_dir / "simulations", progress=progress
    )


def _train(cfg: EmulateConfig, data: Any, run_dir: Path, progress: bool) -> None:
    from physgen.inference import fit_emulator

    m = cfg.model
    emu = fit_emulator(
        data,
        model=m.name,
        model_options=m.options,
        network=dict(m.network) or None,
        target_standardization=m.target_standardization or None,
        x_transform=m.x_transform,
        **cfg.train.fit_options(),
        checkpoint_dir=run_dir / "checkpoints",
        resume=True,
        progress=progress,
    )
    save_trained(emu, run_dir, "emulator.safetensors")


def _compare(cfg: EmulateConfig, simulator: Any, run_dir: Path, say: Callable[[str], None]) -> Report:
    from physgen.inference import load
    from physgen.train.device import module_threads

    emulator = load(run_dir / "emulator.safetensors")
    e = cfg.emulate
    # the training's thread rule holds for the comparison too: its cost per sample is measured under it
    with module_threads(cfg.train.num_threads or "auto", emulator):
        report = compare_with_simulator(
            emulator,
            simulator,
            num_theta=e.num_theta,
            num_per_theta=e.num_per_theta,
            seed=e.seed,
            statistics=e.statistics,
            log=lambda line: say(f"compare: {line}"),
        )
    if e.downstream:
        from physgen.data import load_simulations

        t0 = time.perf_counter()
        report.metrics["downstream"] = downstream_check(
            emulator, simulator, load_simulations(run_dir / "simulations"), seed=e.seed, **e.downstream
        )
        report.timings["downstream"] = time.perf_counter() - t0
    report.config = dataclasses.asdict(cfg)
    return publish_report(report, run_dir, f"physgen emulator report: {run_dir.resolve().name}")
