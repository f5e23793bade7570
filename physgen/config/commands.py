"""Which schema each command reads: the registry behind :func:`physgen.config.load_config`.

``simulate``, ``train`` and ``sample`` share the run config; a new command (``run``, ``validate``,
``emulate``) registers its schema here.
"""

from __future__ import annotations

from physgen.config.emulate import EmulateConfig
from physgen.config.run import RunConfig
from physgen.config.tomography import TomographyConfig
from physgen.config.vmc import VMCConfig
from physgen.config.workflow import WorkflowConfig

__all__ = ["SCHEMAS", "MINIMAL"]

SCHEMAS: dict[str, type] = {
    "simulate": RunConfig,
    "train": RunConfig,
    "sample": RunConfig,
    "vmc": VMCConfig,
    "tomography": TomographyConfig,
    "run": WorkflowConfig,
    "validate": WorkflowConfig,
    "emulate": EmulateConfig,
}

_RUN_MINIMAL = '[simulator] name = "two_moons"  [simulation] n = 10000  [model] name = "nsf"'

# the smallest useful config of each command, quoted by the error for an empty file (one line: tables run on)
MINIMAL: dict[str, str] = {
    "simulate": '[simulator] name = "two_moons"  [simulation] n = 10000 (see examples/two_moons.toml)',
    "train": f"{_RUN_MINIMAL} (see examples/two_moons.toml)",
    "sample": f"{_RUN_MINIMAL}  [sample] n = 1000 (see examples/two_moons.toml)",
    "run": f"{_RUN_MINIMAL}  [validate] num_test = 200 (see examples/workflows/two_moons.toml)",
    "validate": f"{_RUN_MINIMAL} (see examples/workflows/two_moons.toml)",
    "emulate": '[simulator] name = "gaussian_linear"  [simulation] n = 10000  [model] name = "flow_matching" (see '
    "examples/emulate/)",
    "vmc": '[lattice] type = "chain"  n = 10  [hamiltonian] type = "tfim" (see examples/quantum/vmc_tfim.toml)',
    "tomography": '[state] kind = "ghz"  n_sites = 6  [measurement] z_shots = 10000 (see '
    "examples/quantum/tomography_ghz.toml)",
}
