"""The benchmark's ten observations per task: sbibm's own x_o and true θ, read from sbibm 1.1.0's files.

``sbibm_observations.json`` (next to this module) holds, for each of the ten tasks and
``num_observation`` = 1..10, sbibm's observation seed, true parameters and observation, copied from the
sbibm 1.1.0 wheel (``sbibm/tasks/<task>/files/num_observation_<k>/``: ``observation.csv``, for
slcp_distractors ``observation_distractors.csv``, for bernoulli_glm_raw ``observation_raw.csv``, and
``true_parameters.csv``). sbibm is MIT-licensed.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["observation", "observations", "true_parameters", "NUM_OBSERVATIONS"]

NUM_OBSERVATIONS = 10
_FILE = Path(__file__).with_name("sbibm_observations.json")


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    return json.loads(_FILE.read_text())


def _entries(task: str) -> list[dict[str, Any]]:
    tasks = _table()["tasks"]
    if task not in tasks:
        raise ValueError(f"no sbibm observations for task {task!r}; known: {sorted(tasks)}")
    return tasks[task]


def _entry(task: str, num_observation: int) -> dict[str, Any]:
    if not 1 <= int(num_observation) <= NUM_OBSERVATIONS:
        raise ValueError(f"num_observation must be 1..{NUM_OBSERVATIONS} (sbibm's numbering); got {num_observation}")
    return _entries(task)[int(num_observation) - 1]


def observation(task: str, num_observation: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """sbibm's x_o number ``num_observation`` (1..10) of ``task``: ``(F,)``."""
    return torch.tensor(_entry(task, num_observation)["x"], dtype=dtype)


def true_parameters(task: str, num_observation: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """The θ sbibm simulated x_o number ``num_observation`` from: ``(D,)``."""
    return torch.tensor(_entry(task, num_observation)["theta"], dtype=dtype)


def observations(task: str, dtype: torch.dtype = torch.float32) -> Tensor:
    """All ten x_o of ``task``, in sbibm's order: ``(10, F)``."""
    return torch.tensor([e["x"] for e in _entries(task)], dtype=dtype)
