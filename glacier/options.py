"""``option``: a dataclass field with a default and its help text.

The option dataclasses of the library (domain options, ``InvertOptions``, the schemes) carry
their help in ``metadata["help"]``; the config layer registers those same classes with Hydra,
so defaults and help exist once.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any


def option(default: Any, help: str, *, required: bool = False, **kwargs) -> Any:
    """A dataclass field with ``default`` (copied per instance when mutable) and ``help``.

    ``required``: the command line must set it (its config schema has no default; the
    library's ``default`` stands for "not given" and its builder says what to do).
    """
    metadata = {"help": help, "required": required}
    if isinstance(default, list | dict) or dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default),
                                 metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def field_help(cls: type) -> dict[str, str]:
    """Field name -> help text of an option dataclass."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}
