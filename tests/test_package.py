"""A real package: ``python -m build`` makes a wheel and an sdist, and the wheel works in a fresh virtual
environment (issue 19).

The fresh environment has no pip and no packages of its own; the already installed dependencies (torch
and the rest) are reached through one ``.pth`` line naming this environment's site-packages, and the wheel is
installed into it with ``pip --python`` and ``--no-deps``. A ``.pth`` line only extends ``sys.path``: the
``.pth`` files there (this checkout's editable install) are not run, so ``physgen`` can only come from the
wheel, which the test checks by its path.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VERSION = re.search(r'^__version__ = "([^"]+)"', (REPO / "physgen" / "__init__.py").read_text(), re.M).group(1)


def _public_modules() -> list[str]:
    """Every module of the two packages whose dotted name has no part starting with an underscore."""
    mods = []
    for pkg in ("physgen", "simulators"):
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if not any(p.startswith("_") for p in parts) and parts[-1] != "__main__":
                mods.append(".".join(parts))
    return mods


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out


@pytest.mark.slow
def test_build_makes_a_wheel_and_an_sdist_with_the_one_version(dist):
    wheel = dist / f"physgen-{VERSION}-py3-none-any.whl"
    sdist = dist / f"physgen-{VERSION}.tar.gz"
    assert wheel.exists() and sdist.exists(), sorted(p.name for p in dist.iterdir())
    names = zipfile.ZipFile(wheel).namelist()
    expected = {f"{m.replace('.', '/')}{'/__init__' if (REPO / m.replace('.', '/')).is_dir() else ''}.py"
                for m in _public_modules()}
    assert expected <= set(names), sorted(expected - set(names))[:10]
    meta = zipfile.ZipFile(wheel).read(f"physgen-{VERSION}.dist-info/METADATA").decode()
    assert f"Version: {VERSION}" in meta and "Provides-Extra: distributed" in meta
    with tarfile.open(sdist) as tar:
        members = tar.getnames()
    assert f"physgen-{VERSION}/pyproject.toml" in members and f"physgen-{VERSION}/physgen/__init__.py" in members


@pytest.mark.slow
def test_the_wheel_in_a_fresh_venv_runs_and_imports_every_public_module(dist, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "_physgen_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch & co., reused
    wheel = dist / f"physgen-{VERSION}-py3-none-any.whl"
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                        "--disable-pip-version-check", "-q", str(wheel)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["OMP_NUM_THREADS"] = "1"
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    r = subprocess.run([str(venv / "bin" / "physgen"), "--version"], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == f"physgen {VERSION}", (r.stdout, r.stderr)
    code = ("import importlib, sys\n"
            f"mods = {_public_modules()!r}\n"
            "for m in mods:\n"
            "    importlib.import_module(m)\n"
            "import physgen\n"
            "print(physgen.__file__, physgen.__version__, len(mods))\n")
    r = subprocess.run([str(py), "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    where, version, n = r.stdout.split()
    assert Path(where).is_relative_to(site) and version == VERSION and int(n) == len(_public_modules())
