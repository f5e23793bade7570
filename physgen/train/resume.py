"""What a fit() checkpoint must match to be resumed: the run's settings, recorded and compared.

``settings(module, data, n, **options)`` is a JSON dict of everything that changes a fit's result: the module's
config (``save_config()`` of an estimator, else its class name), the data (a digest of in-memory tensors, or a
simulation store's identity), the row count and every training option and seed. fit() records it in each
checkpoint; on resume, :func:`mismatch` names each difference (``lr: 0.001 -> 0.01``). ``max_epochs`` and
``max_time`` are not settings (a resumed run continues with new limits), except ``max_epochs`` under the
cosine schedule, whose shape depends on it.
"""

from __future__ import annotations

import hashlib
import json

import torch
from torch import nn

__all__ = ["settings", "data_identity", "mismatch", "fingerprint"]


def fingerprint(module: nn.Module, n: int | None) -> str:
    """The module's parameter names and shapes and the row count, hashed (a checkpoint of another model or data
    set is refused by it)."""
    shapes = [(k, tuple(v.shape)) for k, v in module.state_dict().items()]
    return hashlib.sha1(json.dumps([shapes, n]).encode()).hexdigest()[:16]


def data_identity(data) -> object:
    """What identifies the training data: a digest of in-memory tensors, a simulation store's identity."""
    if torch.is_tensor(getattr(data, "theta", None)) and torch.is_tensor(getattr(data, "x", None)):
        data = (data.theta, data.x)  # an in-memory SimulationSet: its numbers, not its metadata
    if isinstance(data, (tuple, list)) and all(torch.is_tensor(t) for t in data):
        h = hashlib.blake2b(digest_size=16)
        for t in data:
            h.update(str((t.dtype, tuple(t.shape))).encode())
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()
    meta = getattr(data, "meta", None)
    if isinstance(meta, dict):
        return {k: v for k, v in meta.items() if k not in ("path", "physgen_version")}
    return type(data).__name__


def settings(module: nn.Module, data, n: int | None, **options) -> dict:
    """Everything that changes a fit's result (the module's config, the data, every training option and
    the seed), as JSON: recorded in the checkpoint and compared on resume."""
    try:  # an estimator's config; a module that has none (or a custom part without one) is named by its class
        save_config = getattr(module, "save_config", None)  # an estimator's (physgen.inference)
        config = save_config() if save_config is not None else type(module).__name__
    except (AttributeError, TypeError, ValueError, NotImplementedError):
        config = type(module).__name__
    return json.loads(json.dumps({"module": config, "data": data_identity(data), "n": n, **options}, default=str))


def mismatch(run, cfg: dict) -> str | None:
    """What differs between a checkpoint's recorded ``cfg`` and the run's (``optimizers``, ``ema``,
    ``fingerprint``, ``settings``); None when nothing does."""
    if cfg.get("optimizers") != sorted(run.optimizers):
        return (
            f"was written with optimizers {cfg.get('optimizers')}, not {sorted(run.optimizers)} (resume with the "
            "same optimizer setting)"
        )
    if (cfg.get("ema") is None) != (run.ema is None):
        return f"was written {'without' if run.ema is not None else 'with'} ema (resume with the same ema setting)"
    if cfg.get("fingerprint") != run.fingerprint:
        return f"belongs to a different model or data set (fingerprint {cfg.get('fingerprint')} != {run.fingerprint})"
    stored = cfg.get("settings")
    if stored is not None and stored != run.settings:
        keys = sorted(k for k in {*stored, *run.settings} if stored.get(k) != run.settings.get(k))
        return (
            "was written with other settings ("
            + "; ".join(f"{k}: {_brief(stored.get(k))} -> {_brief(run.settings.get(k))}" for k in keys)
            + ")"
        )
    return None


def _brief(value, limit: int = 120) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."
