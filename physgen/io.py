"""Files: tensors in safetensors with a JSON header, and the one atomic write every writer uses.

A physgen file is one ``.safetensors`` file whose header metadata holds the key
``"physgen"``: a JSON document ``{"format": "physgen", "format_version": 1, "kind": ...,
"version": <physgen version>, "config": {...}, "checksum": ...}``. ``checksum`` is a blake2b digest of
every tensor (name, dtype, shape, bytes), checked on load: a flipped bit anywhere in the file is a
:class:`CheckpointError`, never silently wrong weights (files written before it are read unchecked).
One file means one atomic write (:func:`atomic_write`): the bytes go to a temporary file in the same folder, are flushed to disk
and renamed over the target, so a crash never leaves a half-written file. Nothing is ever
unpickled: safetensors reads raw tensor bytes and the JSON is parsed with ``json``.

Functions:
    atomic_write(path, data): write bytes or text atomically (every file physgen writes goes through it).
    save_file(path, tensors, kind, config): a physgen file, written atomically.
    load_file(path, kind=None) -> (tensors, meta): read and validate.
    read_meta(path) -> meta: the JSON header only.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "CheckpointError",
    "save_file",
    "load_file",
    "read_meta",
    "FORMAT_VERSION",
    "atomic_write",
    "to_inference_data",
    "tensors_digest",
]

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file is not a readable physgen checkpoint (corrupted, foreign or from a newer version)."""


def _version() -> str:
    from physgen import __version__

    return __version__


def atomic_write(path: str | os.PathLike, data: bytes | str, *, encoding: str = "utf-8") -> Path:
    """Write ``data`` (bytes, or text encoded with ``encoding``) to ``path`` atomically.

    The data go to a temporary file in the same folder (created with mode 0o666 less the umask, like
    ``open``), are flushed and fsync'ed, and the file is renamed over ``path``; the folder is then
    fsync'ed so that the rename survives a power cut. Readers see the old file or the new one, never
    a mix; a failed write leaves the old file and no temporary file. Missing parent folders are created.

    Returns:
        the path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = data.encode(encoding) if isinstance(data, str) else bytes(data)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms without directory handles (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_file(path: str | os.PathLike, tensors: dict[str, Tensor], kind: str, config: dict) -> Path:
    """Save tensors and a JSON-serialisable config atomically to ``path`` (a .safetensors file).

    Args:
        path: target file.
        tensors: name -> tensor (moved to CPU, made contiguous; shared storage is copied).
        kind: what the file holds (e.g. "posterior", "checkpoint"); checked on load.
        config: JSON-serialisable dict needed to rebuild the object.
    """
    from safetensors.torch import save as st_save

    path = Path(path)
    cpu = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    meta = {
        "format": "physgen",
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "version": _version(),
        "config": config,
        "checksum": tensors_digest(cpu),
    }
    blob = st_save(cpu, metadata={"physgen": json.dumps(meta)})
    atomic_write(path, blob)
    return path


def tensors_digest(tensors: dict[str, Tensor]) -> str:
    """blake2b (128-bit, hex) of every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _parse(path: Path, data: bytes) -> tuple[dict[str, Tensor], dict]:
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    hint = "It must be a file written by physgen (Posterior.save or a fit() checkpoint); nothing was unpickled."
    if len(data) < 8:
        raise CheckpointError(f"{path} is too short to be a physgen checkpoint. {hint}")
    header_len = int.from_bytes(data[:8], "little")
    if header_len <= 0 or header_len > len(data) - 8:
        raise CheckpointError(f"{path} is not a safetensors file (corrupted or foreign, e.g. a pickle). {hint}")
    try:
        header = json.loads(data[8 : 8 + header_len])
        tensors = st_load(data)
    except (SafetensorError, ValueError, UnicodeDecodeError, RuntimeError) as err:
        raise CheckpointError(f"{path} is corrupted or not a safetensors file ({err}). {hint}") from None
    raw = (header.get("__metadata__") or {}).get("physgen")
    if raw is None:
        raise CheckpointError(f"{path} is a safetensors file without physgen metadata (a foreign file). {hint}")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: its physgen metadata is not valid JSON ({err}).") from None
    if meta.get("format") != "physgen" or not isinstance(meta.get("format_version"), int):
        raise CheckpointError(f"{path}: metadata does not declare the physgen format. {hint}")
    if "checksum" in meta and tensors_digest(tensors) != meta["checksum"]:
        raise CheckpointError(
            f"{path} is damaged: its tensors do not match the checksum recorded when it was written (flipped or "
            "truncated bytes). Restore a good copy; a training checkpoint can also be started afresh (--restart, "
            "or resume=False)."
        )
    if meta["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {meta['format_version']}, newer than this physgen reads ({FORMAT_VERSION}); "
            "upgrade physgen."
        )
    return tensors, meta


def load_file(path: str | os.PathLike, kind: str | None = None) -> tuple[dict[str, Tensor], dict]:
    """Load a physgen file. Returns ``(tensors, meta)``; ``meta["config"]`` is the saved config.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: corrupted, foreign, wrong kind or too new.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    tensors, meta = _parse(path, path.read_bytes())
    if kind is not None and meta.get("kind") != kind:
        raise CheckpointError(f"{path} holds a {meta.get('kind')!r}, not a {kind!r}.")
    return tensors, meta


def read_meta(path: str | os.PathLike) -> dict:
    """The JSON metadata of a physgen file (validated like :func:`load_file`)."""
    return load_file(path)[1]


def to_inference_data(samples, names: list[str] | None = None, *, observation=None, attrs: dict | None = None):
    """Posterior samples as arviz ``InferenceData`` (posterior group), ready for ``az.summary``.

    Args:
        samples: ``(n, D)`` (one chain) or ``(chains, draws, D)``; Tensor or array.
        names: parameter names (default theta_0, theta_1, ...).
        observation: the observed x (stored in the ``observed_data`` group).
        attrs: extra attributes (e.g. the model and the C2ST).
    """
    from physgen.deps import az
    import numpy as np

    arr = samples.detach().cpu().numpy() if torch.is_tensor(samples) else np.asarray(samples)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"samples must be (n, D) or (chains, draws, D); got shape {arr.shape}")
    names = names or [f"theta_{i}" for i in range(arr.shape[-1])]
    if len(names) != arr.shape[-1]:
        raise ValueError(f"{len(names)} names for {arr.shape[-1]} parameters")
    posterior = {name: arr[..., i] for i, name in enumerate(names)}
    observed = None
    if observation is not None:
        obs = observation.detach().cpu().numpy() if torch.is_tensor(observation) else np.asarray(observation)
        observed = {"x": obs}
    return az.from_dict(posterior=posterior, observed_data=observed, attrs=attrs or {})
