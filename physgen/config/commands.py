"""Which schema each command reads: the registry behind :func:`physgen.config.load_config`.

``simulate``, ``train`` and ``sample`` share the run config; a new command (``run``, ``validate``,
``emulate``) registers its schema here.
"""

from __future__ import annotations

from physgen.config.run import RunConfig
from physgen.config.tomography import TomographyConfig
from physgen.config.vmc import VMCConfig
from physgen.config.workflow import WorkflowConfig

__all__ = ["SCHEMAS"]

SCHEMAS: dict[str, type] = {
    "simulate": RunConfig,
    "train": RunConfig,
    "sample": RunConfig,
    "vmc": VMCConfig,
    "tomography": TomographyConfig,
    "run": WorkflowConfig,
    "validate": WorkflowConfig,
}
