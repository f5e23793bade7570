"""Training checkpoints: the one file format of ``fit`` and VMC (safetensors + a JSON header).

A checkpoint is a physgen file (:func:`physgen.io.save_file`, written atomically) whose JSON
``config`` holds the caller's settings and a ``"checkpoint"`` entry: ``{"format": 2, ...}``. Tensors:

    <module>.<parameter or buffer>     weights of each named module or state dict ("model", "best", ...)
    optimizer.<name>.<i>.<key>        tensor state of parameter i of optimizer <name> (its scalars and
                                      param_groups are in the JSON, under checkpoint.optimizers)
    generator.<name>                  the state of an explicit torch.Generator (CPU or CUDA)
    rng.cpu, rng.cuda.<i>             torch's global CPU RNG and each CUDA device's RNG (when saved)
    <anything else>                   extra tensors of the caller (e.g. "ema.<name>")

Schedulers' states are JSON (checkpoint.schedulers). Nothing is unpickled on load: safetensors reads
raw tensor bytes and the rest is JSON.

Versions: format 2 is this layout. Format 1 (files written before physgen.train was a package: no
``"checkpoint"`` entry) is read for kind ``"vmc"`` (weights, Adam state, the sampling generator, step,
history) and refused with a :class:`~physgen.io.CheckpointError` naming the format for kind
``"checkpoint"`` (fit), whose random streams changed with format 2, so that such a run could not
continue as it would have.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler

from physgen.io import CheckpointError, load_file, save_file

__all__ = ["CHECKPOINT_FORMAT", "Checkpoint", "save_checkpoint", "load_checkpoint", "rng_tensors"]

CHECKPOINT_FORMAT = 2
_RESERVED = ("optimizer", "generator", "rng")


def rng_tensors() -> dict[str, Tensor]:
    """torch's global RNG states: ``rng.cpu`` and, when CUDA is available, ``rng.cuda.<i>`` per device."""
    out = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda.{i}"] = state
    return out


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if torch.is_tensor(o) else str(o)))


def save_checkpoint(
    path: str | os.PathLike,
    *,
    kind: str,
    modules: Mapping[str, nn.Module | Mapping[str, Tensor]] | None = None,
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    schedulers: Mapping[str, LRScheduler] | None = None,
    generators: Mapping[str, torch.Generator] | None = None,
    tensors: Mapping[str, Tensor] | None = None,
    config: Mapping | None = None,
    rng: bool = True,
) -> Path:
    """Write a checkpoint atomically.

    Args:
        path: the ``.safetensors`` file.
        kind: what it holds (``"checkpoint"`` for fit, ``"vmc"``); checked by :func:`load_checkpoint`.
        modules: name -> module or state dict (names without dots, not ``optimizer``/``generator``/``rng``).
        optimizers: name -> optimizer (tensor state as tensors, the rest as JSON).
        schedulers: name -> learning-rate scheduler (its ``state_dict()``, as JSON).
        generators: name -> explicit generator (its state).
        tensors: extra tensors, stored under their own names.
        config: JSON-serialisable settings of the caller (top level of the file's config; the key
            ``"checkpoint"`` is reserved).
        rng: also store torch's global CPU and CUDA RNG states.

    Returns:
        the path written.
    """
    out: dict[str, Tensor] = {}
    for name, mod in (modules or {}).items():
        if "." in name or name in _RESERVED:
            raise ValueError(f"module name {name!r} must not contain '.' nor be one of {_RESERVED}")
        state = mod.state_dict() if isinstance(mod, nn.Module) else mod
        out.update({f"{name}.{k}": v for k, v in state.items()})
    opt_meta = {}
    for name, opt in (optimizers or {}).items():
        sd = opt.state_dict()
        scalars = {}
        for idx, st in sd["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v):
                    out[f"optimizer.{name}.{idx}.{k}"] = v
                else:
                    scalars[f"{idx}.{k}"] = v
        opt_meta[name] = {"param_groups": sd["param_groups"], "scalars": scalars}
    for name, gen in (generators or {}).items():
        out[f"generator.{name}"] = gen.get_state()
    if rng:
        out.update(rng_tensors())
    for k, v in (tensors or {}).items():
        if k in out:
            raise ValueError(f"extra tensor {k!r} collides with a checkpoint entry; rename it")
        out[k] = v
    cfg = dict(config or {})
    if "checkpoint" in cfg:
        raise ValueError("the config key 'checkpoint' is reserved for the checkpoint's own entry")
    cfg["checkpoint"] = {
        "format": CHECKPOINT_FORMAT,
        "optimizers": _jsonable(opt_meta),
        "schedulers": {k: _jsonable(s.state_dict()) for k, s in (schedulers or {}).items()},
    }
    return save_file(path, out, kind=kind, config=cfg)


@dataclass
class Checkpoint:
    """A loaded checkpoint. ``config``: the caller's settings; ``tensors``: everything stored."""

    path: Path
    kind: str
    tensors: dict[str, Tensor]
    config: dict
    optimizers: dict = field(default_factory=dict)
    schedulers: dict = field(default_factory=dict)

    def state_dict(self, name: str) -> dict[str, Tensor]:
        """The weights stored under module name ``name`` (empty if none)."""
        p = f"{name}."
        return {k[len(p) :]: v for k, v in self.tensors.items() if k.startswith(p)}

    def restore_module(self, name: str, module: nn.Module) -> None:
        """Load module ``name``'s weights into ``module`` (strict)."""
        state = self.state_dict(name)
        if not state and any(True for _ in module.state_dict()):
            raise CheckpointError(f"{self.path} holds no weights for {name!r}")
        module.load_state_dict(state)

    def restore_optimizer(self, name: str, opt: torch.optim.Optimizer) -> None:
        """Load optimizer ``name``'s state (tensors go to each parameter's device as torch decides)."""
        if name not in self.optimizers:
            raise CheckpointError(
                f"{self.path} holds no state of optimizer {name!r} (it has {sorted(self.optimizers)})"
            )
        meta = self.optimizers[name]
        state: dict[int, dict] = {}
        p = f"optimizer.{name}."
        for k, v in self.tensors.items():
            if k.startswith(p):
                idx, key = k[len(p) :].split(".", 1)
                state.setdefault(int(idx), {})[key] = v
        for k, v in meta.get("scalars", {}).items():
            idx, key = k.split(".", 1)
            state.setdefault(int(idx), {})[key] = v
        groups = meta.get("param_groups") or opt.state_dict()["param_groups"]
        try:
            opt.load_state_dict({"state": state, "param_groups": groups})
        except (ValueError, KeyError) as err:
            raise CheckpointError(f"{self.path}: optimizer {name!r} does not fit this model ({err})") from None

    def restore_scheduler(self, name: str, scheduler: LRScheduler) -> None:
        """Load scheduler ``name``'s state (a no-op when none was stored)."""
        if self.schedulers.get(name):
            scheduler.load_state_dict(self.schedulers[name])

    def restore_generator(self, name: str, gen: torch.Generator) -> bool:
        """Set ``gen`` to the stored state of generator ``name``; False when none was stored."""
        state = self.tensors.get(f"generator.{name}")
        if state is None:
            return False
        gen.set_state(state)
        return True

    def restore_rng(self, cuda_devices: Sequence[int] | None = None) -> None:
        """Set torch's global CPU RNG and the RNG of each CUDA device in ``cuda_devices`` (None: every
        device present) whose state was stored."""
        if "rng.cpu" in self.tensors:
            torch.set_rng_state(self.tensors["rng.cpu"])
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()) if cuda_devices is None else cuda_devices:
                if f"rng.cuda.{i}" in self.tensors:
                    torch.cuda.set_rng_state(self.tensors[f"rng.cuda.{i}"], i)


def load_checkpoint(path: str | os.PathLike, *, kind: str) -> Checkpoint:
    """Read a checkpoint of ``kind`` (format 2, or format 1 where that kind can still be read).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: corrupted, foreign, another kind, or a format this version cannot read (named).
    """
    tensors, meta = load_file(path, kind=kind)
    cfg = dict(meta["config"])
    entry = cfg.pop("checkpoint", None)
    fmt = entry.get("format") if isinstance(entry, dict) else 1
    if fmt == CHECKPOINT_FORMAT:
        return Checkpoint(Path(path), kind, tensors, cfg, entry.get("optimizers", {}), entry.get("schedulers", {}))
    if fmt == 1 and kind == "vmc":
        return _vmc_format1(Path(path), tensors, cfg)
    if fmt == 1:
        raise CheckpointError(
            f"{path} is a {kind!r} checkpoint of format 1 (written by an earlier physgen); this physgen reads "
            f"checkpoint format {CHECKPOINT_FORMAT}, whose random streams differ, so the run cannot continue as it "
            "would have. Start it again (resume=False, or another checkpoint_dir); the old weights are the "
            "file's 'model.*' tensors (physgen.io.load_file)."
        )
    raise CheckpointError(
        f"{path} has checkpoint format {fmt}; this physgen reads format {CHECKPOINT_FORMAT} (upgrade physgen "
        "if the file is newer)."
    )


def _vmc_format1(path: Path, tensors: dict[str, Tensor], cfg: dict) -> Checkpoint:
    """VMC format 1: ``model.*``, ``adam.<i>.{exp_avg, exp_avg_sq, step}``, ``generator_state``."""
    out = {k: v for k, v in tensors.items() if k.startswith("model.")}
    for k, v in tensors.items():
        if k.startswith("adam."):
            _, idx, key = k.split(".", 2)
            out[f"optimizer.adam.{idx}.{key}"] = torch.tensor(float(v.reshape(-1)[0])) if key == "step" else v
    if "generator_state" in tensors:
        out["generator.sampling"] = tensors["generator_state"]
    optimizers: dict[str, dict] = {}
    if any(k.startswith("adam.") for k in tensors):
        optimizers["adam"] = {"param_groups": None, "scalars": {}}
    return Checkpoint(path, "vmc", out, cfg, optimizers, {})
