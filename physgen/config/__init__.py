"""Configuration files: one strict TOML loader and one typed schema per command.

    cfg = load_config("examples/two_moons.toml", "train")   # -> RunConfig
    cfg = load_config("examples/quantum/vmc_tfim.toml", "vmc")  # -> VMCConfig

Every problem (a missing file, invalid TOML, an unknown key, a wrong type, a value outside the allowed
set) is a :class:`ConfigError` whose one-line message names the file, the table, the key and the
allowed keys or values. Only the command-line and pipeline layers read configs; library modules never
import this package, and the schemas import nothing heavier than the standard library.

Modules: ``errors`` (ConfigError), ``schema`` (the type rules), ``loader`` (load_config), ``commands``
(the command -> schema registry), ``run`` (simulate/train/sample), ``workflow`` (run/validate: the run
config and ``[validate]``), ``vmc``, ``tomography``,
``simulators`` (simulator short names).
"""

from physgen.config.commands import SCHEMAS
from physgen.config.errors import ConfigError
from physgen.config.loader import load_config
from physgen.config.run import RunConfig
from physgen.config.schema import check_choice
from physgen.config.simulators import SIMULATORS, resolve_simulator
from physgen.config.tomography import TomographyConfig
from physgen.config.vmc import VMCConfig
from physgen.config.workflow import ValidateSection, WorkflowConfig

__all__ = [
    "load_config",
    "ConfigError",
    "SCHEMAS",
    "RunConfig",
    "VMCConfig",
    "TomographyConfig",
    "WorkflowConfig",
    "ValidateSection",
    "check_choice",
    "SIMULATORS",
    "resolve_simulator",
]
