"""The ``physgen`` command line: thin sub-commands over the API.

    physgen demo [two_moons] [--out DIR]              a field-level posterior proven right, with its report
                                                      (two_moons: NPE vs the exact reference)
    physgen simulate CONFIG.toml --run-dir DIR        simulations into DIR/simulations (resumable; --scheduler ADDRESS:
                                                      on dask)
    physgen train CONFIG.toml --run-dir DIR           posterior into DIR/posterior.safetensors (resumable; --nproc N:
                                                      N data-parallel ranks)
    physgen sample CONFIG.toml --run-dir DIR          samples into DIR/samples.nc (arviz InferenceData)
    physgen vmc CONFIG.toml [--run-dir DIR]           variational Monte Carlo ground state
    physgen tomography CONFIG.toml [--run-dir DIR]    quantum state tomography
    physgen run CONFIG.toml [--run-dir DIR]           simulate -> train -> validate -> DIR/report/ (resumable)
    physgen validate RUN_DIR                          validate a run folder's posterior again, rewrite its report
    physgen emulate CONFIG.toml [--run-dir DIR]       simulate -> train an emulator -> compare -> DIR/report/

A killed ``simulate``, ``train`` or ``run`` resumes when the same command is run again (Ctrl-C too: it
prints one line and leaves the run folder resumable). One process writes a run folder at a time: a second
``simulate``/``train``/``sample``/``run`` on the same folder is refused at once, naming the first one's PID
and command. A run folder whose stored simulations or checkpoint were made with other settings is refused
with the difference named; ``--restart`` replaces them deliberately. ``--repair`` re-simulates exactly the
damaged batches of a store whose checksums do not match.

Errors: every physgen error prints one line on stderr and exits with status 2 for a bad config or bad
arguments (``physgen: config error: FILE: ...`` or ``physgen: error: ...``: a missing file, invalid TOML, an
unknown key, a wrong type, a value outside its domain, a bad value) and 1 for a failure at run time
(``physgen: error: ...``: a simulation, training, sampling, checkpoint, lock, disk or other failure). ``--debug``
(anywhere on the command line, or ``PHYSGEN_DEBUG=1``) shows the traceback instead.

Output: results on stdout; progress, stage lines and warnings through the ``logging`` module on stderr
(:mod:`physgen.logs`), one line each. ``-q``/``--quiet`` (anywhere) keeps warnings and errors only, ``-v``/
``--verbose`` adds debug messages.

Simulators: ``[simulator] name = "package.module:Class"`` is imported with the current directory first on
the import path (as ``python -m`` does), then the installed packages and ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from physgen.config import ConfigError

__all__ = ["main", "build_parser"]

# errors of physgen at run time (exit 1), by (module, name): looked up only in modules already imported
_RUNTIME_ERRORS = (
    ("physgen.store", "SimulationError"),
    ("physgen.train.loop", "TrainingError"),
    ("physgen.inference.posterior", "SamplingError"),
    ("physgen.io", "CheckpointError"),
    ("physgen.lock", "FolderLockedError"),
    ("physgen.quantum", "VMCDivergenceError"),
)


def _cmd_demo(args) -> int:
    from physgen.demo import demo

    metrics = demo(args.name, args.out, num_simulations=args.num_simulations, progress=not args.quiet)
    if args.name == "two_moons":
        out = Path(args.out or "runs/demo")
        print(json.dumps(metrics, indent=2))
        print(f"outputs in {out.resolve()}: posterior.safetensors, samples.nc, pairplot.png, metrics.json")
    elif args.quiet:  # otherwise the demo printed it with its summary
        print(f"report: {metrics['report']}")
    return 0


def _cmd(module: str, name: str):
    def run(args) -> int:
        import importlib

        return getattr(importlib.import_module(f"physgen.cli.{module}"), name)(args)

    return run


def positive_int(text: str) -> int:
    """An argparse type: an int >= 1 (argparse turns the ValueError into a usage error, exit status 2)."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (``physgen train: error: ... (see physgen train --help)``), exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    ap = _Parser(
        prog="physgen",
        description="Simulation-based inference and neural quantum states.",
        epilog="--debug, -q/--quiet, -v/--verbose may also come after the sub-command; --debug shows "
        "the traceback of an error instead of one line",
    )
    ap.add_argument("--version", action="version", version=f"physgen {_version()}")
    ap.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    ap.add_argument("-v", "--verbose", action="count", default=0, help="debug messages too")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "demo",
        help="a posterior from 32x32 Gaussian fields proven against the exact-likelihood "
        "reference, with its report (or: physgen demo two_moons)",
    )
    p.add_argument(
        "name",
        nargs="?",
        default="gaussian_field",
        choices=["gaussian_field", "two_moons"],
        help="gaussian_field (default: CNN posterior of (Omega_m, sigma8), validated, ~3 min) or two_moons",
    )
    p.add_argument("--out", default=None, help="output folder (default runs/demo_gaussian_field or runs/demo)")
    p.add_argument("--num-simulations", type=positive_int, default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_demo)
    for name, text in [
        ("simulate", "run the simulations of a config (resumable)"),
        ("train", "simulate if needed, then train the posterior (resumable)"),
        ("sample", "sample the trained posterior for the config's observation"),
    ]:
        p = sub.add_parser(name, help=text)
        p.add_argument("config", help="TOML run config (see examples/ and docs/cli.md)")
        p.add_argument("--run-dir", required=True, help="folder for this run's outputs")
        p.add_argument("--quiet", action="store_true")
        if name != "sample":
            p.add_argument(
                "--restart",
                action="store_true",
                help="replace stored simulations or a checkpoint made with other settings (instead of refusing them)",
            )
            p.add_argument(
                "--repair",
                action="store_true",
                help="re-simulate the damaged batches of the stored simulations with their original seeds",
            )
        if name == "sample":
            p.add_argument("-n", type=positive_int, default=None, help="number of samples (default: the config's)")
        else:
            from physgen.cli.scale import add_arguments  # --scheduler, train --nproc (docs/scaling.md)

            add_arguments(p, name)
        p.set_defaults(func=_cmd("sbi", f"cmd_{name}"))
    for name, text, out in [
        ("vmc", "variational Monte Carlo ground state", "default: <config stem>_out next to the config"),
        ("tomography", "quantum state tomography from measurements", "default: nothing written"),
    ]:
        p = sub.add_parser(name, help=text)
        p.add_argument("config", help="TOML config (see examples/quantum/ and docs/cli.md)")
        p.add_argument("--run-dir", default=None, help=f"output folder ({out})")
        p.set_defaults(func=_cmd(name, f"cmd_{name}"))
    from physgen.cli.run import add_parsers

    add_parsers(sub, _cmd)
    return ap


def _version() -> str:
    """The version from physgen/__init__.py (its one source; read as text, so ``--help`` imports no torch)."""
    text = (Path(__file__).resolve().parents[1] / "__init__.py").read_text(encoding="utf-8")
    m = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    return m.group(1) if m else "unknown"


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; returns the exit status (0 done, 1 a failure at run time, 2 a bad config or
    argument, 130 interrupted); errors are one line on stderr unless ``--debug``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("PHYSGEN_DEBUG", "") not in ("", "0")
    quiet = any(a in ("-q", "--quiet") for a in argv)
    verbose = sum(a.count("v") for a in argv if a == "--verbose" or re.fullmatch(r"-v+", a))
    argv = [
        a for a in argv if a != "--debug" and a not in ("-q", "--quiet", "--verbose") and not re.fullmatch(r"-v+", a)
    ]
    args = build_parser().parse_args(argv)
    args.quiet, args.verbose = quiet, verbose
    from physgen.logs import configure, reset

    configure(-1 if quiet else verbose)  # for this command only: reset() when it returns
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # a user's simulator module next to the config (module docstring)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("physgen: interrupted; what was committed is kept: run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - every error becomes one line (the traceback with --debug)
        if debug:
            raise
        status, line = describe_error(err, getattr(args, "config", None))
        print(line, file=sys.stderr)
        return status
    finally:
        reset()


def describe_error(err: BaseException, config: str | None = None) -> tuple[int, str]:
    """(exit status, one line) for an exception escaping a command (module docstring)."""
    text = " ".join(str(err).split())
    if isinstance(err, ConfigError):
        return 2, f"physgen: config error: {err.at(config) if config else err}"
    if _is_runtime_error(err):
        return 1, f"physgen: error: {text}"
    if isinstance(err, (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError)):
        return 2, f"physgen: error: {text}"
    if isinstance(err, OSError):  # a full disk, a read-only folder, a permission
        return 1, f"physgen: error: {text or type(err).__name__}"
    where = _last_frame(err)
    return 1, (
        f"physgen: internal error: {type(err).__name__}: {text}{where} (run again with --debug for the "
        "traceback, and report it)"
    )


def _last_frame(err: BaseException) -> str:
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f" at {Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb is not None else ""


def _is_runtime_error(err: BaseException) -> bool:
    for module, name in _RUNTIME_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(err, cls):
            return True
    return False
