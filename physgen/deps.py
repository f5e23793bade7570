"""Third-party imports that need care: optional extras, and a dependency's notice a user cannot act on.

* :func:`optional` imports a package of an optional extra or raises an ImportError that names the feature and
  the extra to install (``dask`` -> ``pip install 'physgen[distributed]'``), so only that feature fails.
* ``from physgen.deps import az`` is arviz, imported with its once-a-day import-time FutureWarning ("ArviZ is
  undergoing a major refactor ...") filtered: it concerns arviz's own future API, which physgen pins and
  tests, so a physgen user can do nothing about it. Only that message, of that category, from that import,
  is filtered; every other warning passes.
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

__all__ = ["optional", "EXTRAS", "arviz"]

# the optional extra of pyproject.toml that provides each optional package
EXTRAS = {
    "dask": "distributed",
    "distributed": "distributed",
    "numba": "fast",
    "powerbox": "bench",
    "mkdocs": "docs",
    "material": "docs",
    "mkdocstrings": "docs",
}


def optional(module: str, feature: str, extra: str | None = None) -> ModuleType:
    """Import ``module`` for ``feature``, or raise an ImportError naming the extra that provides it.

    Args:
        module: the import name (``"dask.distributed"``).
        feature: what needs it, for the message (``"a dask scheduler"``).
        extra: the physgen extra; default: looked up in :data:`EXTRAS` by the top-level package.

    Raises:
        ImportError: ``"<feature> needs <package>, which is not installed: pip install 'physgen[<extra>]'"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        extra = extra or EXTRAS.get(top)
        how = f"pip install 'physgen[{extra}]'" if extra else f"pip install {top}"
        raise ImportError(f"{feature} needs {top}, which is not installed: {how}", name=module) from err


def arviz() -> ModuleType:
    """arviz, with its import-time refactoring notice filtered (module docstring)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)
        return importlib.import_module("arviz")


def __getattr__(name: str) -> ModuleType:
    if name == "az":
        return arviz()
    raise AttributeError(f"module 'physgen.deps' has no attribute {name!r}")
