"""The configuration layer: Hydra schemas, config -> typed settings, checks and error prose.

- ``schemas``: the dataclasses registered with Hydra's ConfigStore (the library's own option
  classes where the library has them);
- ``build``: ``typed`` (merge into the schemas) and config -> library objects and app jobs;
- ``checks``: value checks and ``check_overrides`` (the whole command line, before Hydra runs);
- ``explain``: a Hydra / OmegaConf error as one paragraph that says how to fix it.
"""

from .build import plain, typed
from .checks import check_overrides, check_values, typed_checked
from .explain import explain, group_options
from .schemas import (
    EXPERIMENT_SCHEMAS,
    GLACIER_SCHEMAS,
    GROUP_SCHEMAS,
    LAW_SCHEMAS,
    PRIMARY_SCHEMAS,
    TRAIN_GROUP_SCHEMAS,
    field_help,
    register,
)

__all__ = ["EXPERIMENT_SCHEMAS", "GLACIER_SCHEMAS", "GROUP_SCHEMAS", "LAW_SCHEMAS",
           "PRIMARY_SCHEMAS", "TRAIN_GROUP_SCHEMAS", "check_overrides", "check_values",
           "explain", "field_help", "group_options", "plain", "register", "typed",
           "typed_checked"]
