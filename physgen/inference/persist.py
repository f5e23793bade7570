"""Saving and loading estimators by ``kind`` ("posterior", "emulator", "likelihood"), with a format version.

A saved estimator is one safetensors file (:func:`physgen.io.save_file`): the weights and buffers as
tensors, and a JSON config ``{"format": FORMAT, "target_shape", "context_shape", "target_standardization",
"model": {"name", "config"}, "encoder": {"name", "config"}, ...role keys}``. Nothing is unpickled.

Format history (each older format is upgraded on load, or refused with an error naming it):

* 1 (physgen 0.1 before the core refactor): posteriors only; keys ``theta_dim``, ``x_shape``; buffers
  ``u_shift``/``u_scale``/``x_shift``/``x_scale``; models configured by ``dim`` with their network's options
  inline; the preset ``flow_matching_fast`` saved under its own name.
* 2: event-shaped targets, networks saved as specs, emulators.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from physgen.inference.emulator import Emulator
from physgen.inference.estimator import FORMAT, build_encoder_from
from physgen.inference.likelihood import Likelihood
from physgen.inference.posterior import Posterior
from physgen.io import CheckpointError, load_file
from physgen.models import build_model

__all__ = ["FORMAT", "load"]
ROLES: dict[str, type[Posterior] | type[Emulator]] = {
    "posterior": Posterior,
    "emulator": Emulator,
    "likelihood": Likelihood,
}

# options added to format-1 model configs after files were first written, with the behaviour those files had
_ADDED_OPTIONS = {
    "nsf": {"coupling": False, "affine": False},
    "maf": {"coupling": False, "affine": False},
    "flow_matching": {"gaussian_base": False},
    "flow_matching_fast": {"gaussian_base": False},
    "diffusion": {"gaussian_base": False},
}
_NETWORK_KEYS = ("hidden_features", "num_blocks", "time_features", "conditioning")


def _upgrade_model_1(name: str, config: dict) -> tuple[str, dict]:
    """A format-1 model config -> (family name, format-2 config)."""
    config = dict(config)
    for key, before in _ADDED_OPTIONS.get(name, {}).items():
        config.setdefault(key, before)
    dim = config.pop("dim")
    config["event_shape"] = [dim]
    if name in ("flow_matching", "flow_matching_fast", "diffusion"):
        net = {k: config.pop(k) for k in _NETWORK_KEYS if k in config}
        net.setdefault("conditioning", "add")
        net["max_frequency"] = 30.0 if name == "diffusion" else 100.0
        config["network"] = {
            "name": "residual_mlp",
            "config": {"in_features": dim, "out_features": dim, "context_features": config["context_dim"], **net},
        }
        name = "diffusion" if name == "diffusion" else "flow_matching"
    return name, config


def _upgrade_1(tensors: dict[str, Tensor], config: dict) -> tuple[dict[str, Tensor], dict]:
    """A format-1 posterior -> format 2 (renamed buffers, event-shaped model config)."""
    renames = {
        "u_shift": "target_shift",
        "u_scale": "target_scale",
        "x_shift": "context_shift",
        "x_scale": "context_scale",
    }
    name, model_config = _upgrade_model_1(config["model"]["name"], config["model"]["config"])
    tensors = {renames.get(k, k): v for k, v in tensors.items()}
    if name in ("flow_matching", "diffusion") and not model_config["gaussian_base"]:
        tensors = {k: v for k, v in tensors.items() if not k.startswith("model.gaussian.")}
    new = {
        "format": 2,
        "target_shape": [config["theta_dim"]],
        "context_shape": list(config["x_shape"]),
        "target_standardization": "feature",
        "model": {"name": name, "config": model_config},
        "encoder": config["encoder"],
        "transform": config["transform"],
        "prior": config.get("prior"),
    }
    return tensors, new


def load(path: str | Path) -> Posterior | Emulator:
    """Load a saved Posterior or Emulator (any format this version reads). Nothing is unpickled.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not an estimator, a format this version cannot read (named), or weights that do not
            match the saved architecture.
    """
    tensors, meta = load_file(path)
    kind = meta.get("kind")
    if kind not in ROLES:
        raise CheckpointError(f"{path} holds a {kind!r}; physgen.load reads {sorted(ROLES)} files")
    config = meta["config"]
    version = config.get("format", 1)
    if version == 1 and kind == "posterior":
        tensors, config = _upgrade_1(tensors, config)
    elif version != FORMAT:
        raise CheckpointError(
            f"{path} is a {kind} in estimator format {version}; this physgen reads formats 1 (posteriors) and {FORMAT}: "
            "upgrade physgen to read it"
        )
    try:
        model = build_model(config["model"]["name"], **config["model"]["config"])
        encoder = build_encoder_from(config["encoder"]["name"], config["encoder"]["config"])
        estimator = ROLES[kind].from_config(model, encoder, config)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot rebuild the saved {kind} (format {version}): {err}") from None
    _load_state(estimator, tensors, path)
    estimator.eval()
    return estimator


def _load_state(module: nn.Module, tensors: dict[str, Tensor], path) -> None:
    try:
        missing, unexpected = module.load_state_dict(tensors, strict=False)
    except RuntimeError as err:  # a tensor of the wrong shape
        raise CheckpointError(f"{path} does not match its architecture: {err}") from None
    if missing or unexpected:
        raise CheckpointError(f"{path} does not match its architecture (missing {missing}, unexpected {unexpected})")
