r"""Reference posteriors for benchmark tasks, made once per (task, observation) and cached on disk.

:func:`task_reference` returns ``num_samples`` draws of p(θ | x_obs) for a simulator with an explicit likelihood:

* ``method="exact"``: the simulator's own exact sampler, ``simulator.reference_posterior(x_obs, n, seed=...)``
  (closed forms, rejection samplers);
* ``method="mcmc"``: :func:`physgen.mcmc.reference_posterior` on prior + ``log_likelihood`` (by default the
  batched Metropolis sampler, ``sampler="batched"``: 1,024 chains, burn-in 500, thinning 10, at most 20,000
  steps per chain), *gated by its convergence checks*: R-hat <= ``rhat_max`` (1.01) and bulk and tail ESS >=
  ``ess_min`` (default ``num_samples``, so that the draws kept are close to independent: a C2ST against
  autocorrelated draws reads above 0.5 even when the distribution is right). A run that fails raises
  :class:`ReferenceNotConverged` with arviz's verdict, and nothing is written. ``num_samples`` draws are
  taken from the (longer) chains at evenly spaced positions of a seeded shuffle;
* ``method="auto"`` (default): exact where the simulator has ``reference_posterior``, else MCMC.

Cache. One safetensors file per (task, observation, settings) in ``cache_dir`` (argument, else
``$PHYSGEN_REFERENCE_CACHE``, else ``$XDG_CACHE_HOME/physgen/references``, else ``~/.cache/physgen/references``),
named ``<task>-<key>.safetensors`` where the key is a SHA-256 over the task's name, ``definition_version``
and ``config``, x_obs (float64), the method, ``num_samples``, ``seed`` and the sampler settings. The file holds
the draws ``(n, D)`` (float64) and, as metadata, all of these plus physgen's version, the convergence
diagnostics and the wall time. Writes are atomic (a temporary file in the same folder, then ``os.replace``),
so a killed run leaves no partial reference; a file that cannot be read is recomputed (with a warning).
No pickle is involved. ``refresh=True`` recomputes and overwrites.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from physgen.mcmc.convergence import draws
from physgen.mcmc.density import simulator_name

__all__ = ["TaskReference", "ReferenceNotConverged", "task_reference", "reference_cache_dir"]

_MCMC_DEFAULTS: dict[str, Any] = {
    "sampler": "batched",
    "num_chains": 1024,
    "burn_in": 500,
    "thin": 10,
    "max_steps": 20_000,
}


class ReferenceNotConverged(RuntimeError):
    """An MCMC reference failed its convergence checks; nothing was cached."""


@dataclass
class TaskReference:
    """A reference posterior for one observation.

    Attributes:
        samples: ``(n, D)`` float64 draws.
        meta: what made them: task, definition_version, config, x_obs, method, num_samples, seed, settings,
            physgen_version, diagnostics (R-hat, ESS, ... for MCMC), seconds, created (UTC).
        path: the cache file.
        from_cache: whether the samples were read from ``path`` rather than computed now.
    """

    samples: Tensor
    meta: dict[str, Any]
    path: Path
    from_cache: bool = field(default=False)


def reference_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder for cached references (module docstring for the order of precedence)."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("PHYSGEN_REFERENCE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "physgen" / "references"


def _physgen_version() -> str:
    from physgen import __version__

    return str(__version__)


def _identity(simulator: Any, x_obs: Tensor, method: str, num_samples: int, seed: int, settings: dict) -> dict:
    return {
        "task": simulator_name(simulator),
        "definition_version": str(getattr(simulator, "definition_version", "1")),
        "config": getattr(simulator, "config", {}) or {},
        "x_obs": x_obs.detach().to("cpu", torch.float64).reshape(-1).tolist(),
        "x_shape": list(x_obs.shape),
        "method": method,
        "num_samples": int(num_samples),
        "seed": int(seed),
        "settings": settings,
    }


def _key(identity: dict) -> str:
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _read(path: Path, identity: dict) -> TaskReference | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["physgen_reference"])
            samples = f.get_tensor("samples")
    except Exception as err:  # noqa: BLE001 (a damaged cache file of any kind is recomputed)
        warnings.warn(
            f"reference cache file {path} cannot be read ({err}); recomputing it", RuntimeWarning, stacklevel=3
        )
        return None
    if any(meta.get(k) != v for k, v in json.loads(json.dumps(identity, default=str)).items()):
        warnings.warn(
            f"reference cache file {path} holds another reference; recomputing it", RuntimeWarning, stacklevel=3
        )
        return None
    return TaskReference(samples, meta, path, from_cache=True)


def _write(path: Path, samples: Tensor, meta: dict) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({"samples": samples.contiguous()}, tmp, metadata={"physgen_reference": json.dumps(meta, default=str)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _mcmc(
    simulator: Any, x_obs: Tensor, num_samples: int, seed: int, settings: dict, initial: Any
) -> tuple[Tensor, dict]:
    from physgen.mcmc.emcee_reference import reference_posterior

    name = simulator_name(simulator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the verdict is raised below instead
        idata = reference_posterior(simulator, x_obs, num_samples=num_samples, seed=seed, initial=initial, **settings)
    attrs = dict(idata.posterior.attrs)
    diagnostics = {k: (v.item() if hasattr(v, "item") else v) for k, v in attrs.items()}
    if not int(attrs.get("converged", 0)):
        raise ReferenceNotConverged(
            f"MCMC reference for {name} did not converge, so none was written: {attrs.get('messages', '')}. "
            f"(R-hat {float(attrs['rhat_max']):.4g} vs {settings['rhat_max']}, bulk ESS "
            f"{float(attrs['ess_bulk_min']):.4g} and tail ESS {float(attrs['ess_tail_min']):.4g} vs {settings['ess_min']}.) "
            "Raise max_steps, num_chains or thin, or pass initial= points near the posterior."
        )
    all_draws = draws(idata)  # (chains · draws, D)
    g = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(all_draws.shape[0], generator=g)
    pick = order[torch.linspace(0, all_draws.shape[0] - 1, num_samples).round().long()]
    return all_draws[pick], diagnostics


def task_reference(
    simulator: Any,
    x_obs: Tensor,
    *,
    num_samples: int = 10_000,
    seed: int = 0,
    method: str = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
    refresh: bool = False,
    initial: Any = None,
    **mcmc_options: Any,
) -> TaskReference:
    """Reference draws of p(θ | x_obs), read from the cache or made (and cached) now (module docstring).

    Args:
        simulator: a ``physgen.core.Simulator`` with ``log_likelihood`` (MCMC) or ``reference_posterior`` (exact).
        x_obs: one observation, shape ``simulator.x_shape``.
        num_samples: n, the number of draws returned.
        seed: seeds the sampler (and the subsampling of MCMC draws).
        method: "auto", "exact" or "mcmc".
        cache_dir: the cache folder (default: :func:`reference_cache_dir`).
        refresh: recompute even when a cached file exists.
        initial: MCMC starting points (``(m, D)`` tensor or a Posterior), as for
            :func:`physgen.mcmc.reference_posterior`; where chains start does not change the target, so it
            is not part of the cache key.
        **mcmc_options: settings of :func:`physgen.mcmc.reference_posterior` (sampler, num_chains, burn_in,
            thin, max_steps, num_runs, num_walkers, rhat_max, ess_min); JSON scalars, part of the cache key.

    Returns:
        A :class:`TaskReference` (``samples (n, D)`` float64, ``meta``, ``path``, ``from_cache``).

    Raises:
        ValueError: an unknown method, "exact" for a simulator without ``reference_posterior``, "mcmc" for one
            without ``log_likelihood``, or options given to the exact method.
        ReferenceNotConverged: the MCMC run failed R-hat or ESS (nothing is written).
    """
    if method not in ("auto", "exact", "mcmc"):
        raise ValueError(f"task_reference: method must be 'auto', 'exact' or 'mcmc'; got {method!r}")
    name = simulator_name(simulator)
    if method == "auto":
        method = "exact" if callable(getattr(simulator, "reference_posterior", None)) else "mcmc"
    if method == "exact" and not callable(getattr(simulator, "reference_posterior", None)):
        raise ValueError(f"task_reference: {name} has no exact reference_posterior; use method='mcmc'")
    if method == "exact" and (mcmc_options or initial is not None):
        raise ValueError(f"task_reference: MCMC options {sorted(mcmc_options)} given with method='exact'; drop them")
    if int(num_samples) < 1:
        raise ValueError(f"task_reference: num_samples must be >= 1; got {num_samples}")
    x_obs = torch.as_tensor(x_obs)
    settings: dict[str, Any] = {}
    if method == "mcmc":
        settings = {**_MCMC_DEFAULTS, "rhat_max": 1.01, "ess_min": float(num_samples), **mcmc_options}
    identity = _identity(simulator, x_obs, method, int(num_samples), int(seed), settings)
    path = reference_cache_dir(cache_dir) / f"{name}-{_key(identity)}.safetensors"
    if path.exists() and not refresh:
        cached = _read(path, identity)
        if cached is not None:
            return cached
    t0 = time.perf_counter()
    diagnostics: dict[str, Any] = {}
    if method == "exact":
        samples = torch.as_tensor(simulator.reference_posterior(x_obs, int(num_samples), seed=int(seed)))
    else:
        samples, diagnostics = _mcmc(simulator, x_obs, int(num_samples), int(seed), settings, initial)
    samples = samples.detach().to("cpu", torch.float64)
    meta = {
        **identity,
        "physgen_version": _physgen_version(),
        "diagnostics": diagnostics,
        "seconds": time.perf_counter() - t0,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write(path, samples, meta)
    return TaskReference(samples, json.loads(json.dumps(meta, default=str)), path, from_cache=False)
