"""The ``physgen`` command line: thin sub-commands over the API.

    physgen demo [--out DIR]                          NPE on two_moons vs the exact reference
    physgen simulate CONFIG.toml --run-dir DIR        simulations into DIR/simulations (resumable)
    physgen train CONFIG.toml --run-dir DIR           posterior into DIR/posterior.safetensors (resumable)
    physgen sample CONFIG.toml --run-dir DIR          samples into DIR/samples.nc (arviz InferenceData)
    physgen vmc CONFIG.toml [--run-dir DIR]           variational Monte Carlo ground state
    physgen tomography CONFIG.toml [--run-dir DIR]    quantum state tomography
    physgen run CONFIG.toml [--run-dir DIR]           simulate -> train -> validate -> DIR/report/ (resumable)
    physgen validate RUN_DIR                          validate a run folder's posterior again, rewrite its report

A killed ``simulate`` or ``train`` resumes when the same command is run again.

Errors: a config error (a missing file, invalid TOML, an unknown key, a wrong type, a value outside the
allowed set) prints one line, ``physgen: config error: FILE: ...``, and exits with status 2; other
expected errors of the user's input (a bad value, a simulation, training or checkpoint failure) print
one line ``physgen: error: ...`` and exit with 2; anything else keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from physgen.config import ConfigError

__all__ = ["main", "build_parser"]

# errors a user's input can cause, by (module, name): looked up only in modules already imported
_USER_ERRORS = (
    ("physgen", "SimulationError"),
    ("physgen", "TrainingError"),
    ("physgen", "SamplingError"),
    ("physgen", "CheckpointError"),
    ("physgen.quantum", "VMCDivergenceError"),
)


def _cmd_demo(args) -> int:
    from physgen.demo import run_demo

    out = Path(args.out)
    metrics = run_demo(out, num_simulations=args.num_simulations, progress=not args.quiet)
    print(json.dumps(metrics, indent=2))
    print(f"outputs in {out.resolve()}: posterior.safetensors, samples.nc, pairplot.png, metrics.json")
    return 0


def _cmd(module: str, name: str):
    def run(args) -> int:
        import importlib

        return getattr(importlib.import_module(f"physgen.cli.{module}"), name)(args)

    return run


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    ap = argparse.ArgumentParser(prog="physgen", description="Simulation-based inference and neural quantum states.")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="NPE on two_moons, checked against the exact reference posterior")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--num-simulations", type=int, default=10_000)
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
        if name == "sample":
            p.add_argument("-n", type=int, default=None, help="number of samples (default: the config's)")
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


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; returns the exit status (2 for a config error or a bad input)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        path = getattr(args, "config", None)
        print(f"physgen: config error: {err.at(path) if path else err}", file=sys.stderr)
        return 2
    except Exception as err:
        if not _is_user_error(err):
            raise
        print(f"physgen: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2


def _is_user_error(err: Exception) -> bool:
    if isinstance(err, (ValueError, FileNotFoundError)):
        return True
    for module, name in _USER_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(err, cls):
            return True
    return False
