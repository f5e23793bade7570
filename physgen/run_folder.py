"""A resumable run folder, stage by stage: what ``physgen run`` (:mod:`physgen.pipeline`) and ``physgen emulate``
(:mod:`physgen.emulation`) share.

Each stage has a fingerprint, a hash (:func:`config_hash`) of its config sections and of the fingerprint of the
stage before, and a state file ``stages/<stage>.json`` = ``{"fingerprint", "done", "seconds"}``.
:func:`stage_must_run` says whether a stage runs: not when its state says done with the current fingerprint and
its outputs exist; when its fingerprint changed, its outputs and those of the stages after it are removed first.
:func:`timed_stage` runs one and records it as done. The time budget (``[train] max_time``) is not a setting:
:func:`carry_budget` re-records stages made under another budget, and marks the train stage unfinished (its
checkpoint resumes) when training stopped at its old budget and the new one is larger. :func:`to_toml` writes
the folder's ``config.toml`` (what :func:`physgen.pipeline.refuse_changed` compares a new config with);
:func:`publish_report` writes ``report/`` whole or not at all, :func:`load_report` reads it back. Nothing
here reads a config (:mod:`physgen.config`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from physgen.diagnostics.report import Report
from physgen.io import atomic_write

__all__ = [
    "config_hash",
    "read_state",
    "write_state",
    "stage_must_run",
    "timed_stage",
    "carry_budget",
    "to_toml",
    "publish_report",
    "load_report",
]


def config_hash(obj: Any) -> str:
    """A stage fingerprint: 16 hex digits of the SHA-256 of ``obj`` as sorted JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_state(run_dir: Path, stage: str) -> dict | None:
    """``stages/<stage>.json`` of ``run_dir`` (None when absent or unreadable)."""
    path = run_dir / "stages" / f"{stage}.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_state(run_dir: Path, stage: str, fingerprint: str, *, done: bool, seconds: float | None = None) -> None:
    """Write ``stages/<stage>.json`` atomically."""
    (run_dir / "stages").mkdir(exist_ok=True)
    atomic_write(
        run_dir / "stages" / f"{stage}.json", json.dumps({"fingerprint": fingerprint, "done": done, "seconds": seconds})
    )


def stage_must_run(
    run_dir: Path,
    stage: str,
    fps: dict[str, str],
    say: Callable[[str], None],
    *,
    stages: tuple[str, ...],
    outputs: dict[str, tuple[str, ...]],
) -> bool:
    """Whether ``stage`` must run; removes its outputs (and later stages' state) when its config changed.

    ``stages``: every stage in order; ``outputs``: per stage, its outputs relative to ``run_dir``.
    """
    state = read_state(run_dir, stage)
    fp = fps[stage]
    if state and state["fingerprint"] == fp and state["done"] and all((run_dir / o).exists() for o in outputs[stage]):
        say(f"{stage}: skipped (up to date)")
        return False
    if state and state["fingerprint"] != fp:
        say(f"{stage}: config changed; its outputs are removed and it runs again")
        _remove(run_dir, stages[stages.index(stage) :], outputs)
    elif state and not state["done"]:
        say(f"{stage}: resuming an unfinished run")
    kept = state.get("seconds") if state and state["fingerprint"] == fp and not state["done"] else None
    write_state(run_dir, stage, fp, done=False, seconds=kept)
    return True


def carry_budget(
    run_dir: Path,
    before: dict[str, str],
    fps: dict[str, str],
    say: Callable[[str], None],
    *,
    stages: tuple[str, ...],
    outputs: dict[str, tuple[str, ...]],
    stage: str = "train",
    grown: bool,
) -> None:
    """Carry the stages recorded under another time budget over to the current fingerprints.

    ``before``: the fingerprints of the current config with the folder's old budget; ``fps``: the current ones.
    A stage from ``stage`` on whose state holds its ``before`` fingerprint is re-recorded under ``fps``, as done
    or not as it was, so a changed budget alone redoes nothing. When ``grown`` (training stopped at its old
    budget and the new one is larger) and ``stage`` was done, it is marked unfinished instead (its run
    resumes from the checkpoint, the seconds so far kept) and the later stages' outputs and states are removed.
    """
    state = read_state(run_dir, stage)
    if before == fps or not state or state.get("fingerprint") != before[stage]:
        return
    i = stages.index(stage)
    if grown and state["done"]:
        say(f"{stage}: the time budget grew after training stopped at it; training resumes from its checkpoint")
        write_state(run_dir, stage, fps[stage], done=False, seconds=state.get("seconds"))
        _remove(run_dir, stages[i + 1 :], outputs)
        return
    for s in stages[i:]:
        st = read_state(run_dir, s)
        if st and st.get("fingerprint") == before[s]:
            write_state(run_dir, s, fps[s], done=st["done"], seconds=st.get("seconds"))
    if state["done"]:
        say(
            f"{stage}: the time budget changed; the trained model is kept (training did not stop at its old "
            "budget, or the new one is not larger)"
        )


def _remove(run_dir: Path, stages: tuple[str, ...], outputs: dict[str, tuple[str, ...]]) -> None:
    """Delete the outputs and state files of ``stages``."""
    for stage in stages:
        for out in outputs[stage]:
            path = run_dir / out
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        (run_dir / "stages" / f"{stage}.json").unlink(missing_ok=True)


def timed_stage(
    run_dir: Path, stage: str, fps: dict[str, str], say: Callable[[str], None], fn: Callable[[], Any]
) -> Any:
    """Run ``fn`` as ``stage``, then record it as done with its duration (added to the seconds an unfinished
    state records, as :func:`carry_budget` leaves them); returns what ``fn`` returns."""
    state = read_state(run_dir, stage)
    resumed = state is not None and state.get("fingerprint") == fps[stage] and not state.get("done")
    before = float((state or {}).get("seconds") or 0.0) if resumed else 0.0
    t0 = time.perf_counter()
    say(f"{stage}: running")
    out = fn()
    seconds = before + time.perf_counter() - t0
    write_state(run_dir, stage, fps[stage], done=True, seconds=seconds)
    say(f"{stage}: done in {seconds:.1f} s")
    return out


def to_toml(cfg: Any) -> str:
    """A config dataclass as TOML text that :func:`physgen.config.load_config` reads back to an equal config."""
    lines = []
    for f in dataclasses.fields(cfg):
        section = getattr(cfg, f.name)
        if not dataclasses.is_dataclass(section):
            lines.append(f"{f.name} = {_toml_value(section)}")
            continue
        lines.append(f"\n[{f.name}]")
        lines += [f"{k.name} = {_toml_value(getattr(section, k.name))}" for k in dataclasses.fields(section)]
    return "\n".join(lines).lstrip() + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")) if not math.isfinite(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + " }" if v else "{}"
    raise ValueError(f"cannot write {v!r} ({type(v).__name__}) to TOML")


def publish_report(report: Report, run_dir: Path, title: str) -> Report:
    """Add the earlier stages' times and the title, then write ``run_dir/report/`` whole or not at all (a
    temporary folder renamed into place)."""
    for stage in ("simulate", "train"):
        state = read_state(run_dir, stage)
        if state and state.get("seconds") is not None:
            report.timings[f"stage {stage}"] = state["seconds"]
    report.title = title
    tmp = run_dir / ".report.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    report.write(tmp)
    shutil.rmtree(run_dir / "report", ignore_errors=True)
    os.replace(tmp, run_dir / "report")
    return report


def load_report(out_dir: str | os.PathLike) -> Report:
    """A Report read back from a folder written by ``Report.write`` (metrics.json and the PNGs; no samples)."""
    out = Path(out_dir)
    summary = json.loads((out / "metrics.json").read_text())
    figures = {p.stem: p.read_bytes() for p in sorted(out.glob("*.png"))}
    return Report(
        metrics=summary["metrics"],
        warnings=summary["warnings"],
        notes=summary["notes"],
        figures=figures,
        versions=summary["versions"],
        timings=summary["timings"],
    )
