"""``physgen run CONFIG.toml``, ``physgen validate RUN_DIR`` and ``physgen emulate CONFIG.toml``: the workflows,
thin over :mod:`physgen.pipeline` and :mod:`physgen.emulation`.

``run`` simulates, trains and validates as the workflow config says (each stage resumed after a kill and
skipped when up to date) and writes ``RUN_DIR/report/``; ``validate`` re-validates a finished run folder
from its config copy and posterior. Both print one line per stage, then the report's path and its
warnings; the exit status is 0 whether or not the report carries warnings (they are findings, not errors).
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["cmd_run", "cmd_validate", "cmd_emulate", "add_parsers"]


def _finish(report, run_dir: Path) -> int:
    print(f"report: {(run_dir / 'report' / 'report.html').resolve()}")
    for warning in report.warnings:
        print(f"warning: {warning}")
    for note in report.notes:
        print(f"note: {note}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from physgen.pipeline import run

    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / Path(args.config).stem
    report = run(
        args.config,
        run_dir,
        log=print if not args.quiet else None,
        progress=args.progress,
        repair=args.repair,
        restart=args.restart,
    )
    return _finish(report, run_dir)


def cmd_validate(args: argparse.Namespace) -> int:
    from physgen.pipeline import validate_run

    run_dir = Path(args.run_dir)
    report = validate_run(run_dir, log=print if not args.quiet else None)
    return _finish(report, run_dir)


def cmd_emulate(args: argparse.Namespace) -> int:
    from physgen.emulation import emulate

    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / Path(args.config).stem
    report = emulate(
        args.config, run_dir, log=print if not args.quiet else None, progress=args.progress, restart=args.restart
    )
    return _finish(report, run_dir)


def add_parsers(sub, command) -> None:
    """Register ``run`` and ``validate`` on the sub-command parsers; ``command(module, name)`` makes the handler."""
    p = sub.add_parser("run", help="simulate -> train -> validate -> report (resumable, skips finished stages)")
    p.add_argument("config", help="TOML workflow config (see examples/workflows/ and docs/validation.md)")
    p.add_argument("--run-dir", default=None, help="folder for this run (default: runs/<config stem>)")
    p.add_argument("--quiet", action="store_true", help="no per-stage lines")
    p.add_argument("--progress", action="store_true", help="progress of simulation and training")
    p.add_argument(
        "--repair",
        action="store_true",
        help="re-simulate the damaged batches of the run's stored simulations with their original seeds",
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="redo the stages whose settings changed since the folder's "
        "last run (and those after them) instead of refusing the changed settings",
    )
    p.set_defaults(func=command("run", "cmd_run"))
    p = sub.add_parser("validate", help="validate the posterior of a run folder again and rewrite its report")
    p.add_argument("run_dir", help="a folder written by `physgen run` (its config.toml and posterior)")
    p.add_argument("--quiet", action="store_true", help="no per-stage lines")
    p.set_defaults(func=command("run", "cmd_validate"))
    p = sub.add_parser("emulate", help="simulate -> train an emulator -> compare it with the simulator -> report")
    p.add_argument("config", help="TOML emulator config (see examples/emulate/ and docs/emulate.md)")
    p.add_argument("--run-dir", default=None, help="folder for this run (default: runs/<config stem>)")
    p.add_argument("--quiet", action="store_true", help="no per-stage lines")
    p.add_argument("--progress", action="store_true", help="progress of simulation and training")
    p.add_argument(
        "--restart",
        action="store_true",
        help="redo the stages whose settings changed since the "
        "folder's last run instead of refusing the changed settings",
    )
    p.set_defaults(func=command("run", "cmd_emulate"))
