"""Command-line facts the console scripts check before Hydra runs (no JAX; Hydra only for
its override parser).

- ``sweep_values``: the values of a ``-m`` sweep override, each checked like a single run;
- ``run_dir_problem``: a ``hydra.run.dir`` that cannot be created or written (exit 2 before
  Hydra would fail with a traceback);
- ``run_record``: the ``.hydra/`` files of an existing run directory, so that a refused resume
  can put back what Hydra rewrote;
- ``remove_if_only_record``: the run directory Hydra made for a run that was then refused.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def sweep_values(override: str) -> list[str] | None:
    """The single-run overrides of a ``-m`` override, parsed as Hydra's basic sweeper does:
    ``key=a,b`` -> ["key=a", "key=b"], ``network.hidden=[16,16],[32,32]`` -> its two lists,
    ``seed=range(0,3)`` and ``choice(...)`` -> their values; a plain override -> [it]; a sweep
    that cannot be enumerated (``interval(...)``, for other sweepers) -> None. An override that
    does not parse is returned as is: composing it explains the error."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_override(override)
    except HydraException:
        return [override]
    if not parsed.is_sweep_override():
        return [override]
    if not parsed.is_discrete_sweep():
        return None
    key = parsed.get_key_element()
    return [f"{key}={value}" for value in parsed.sweep_string_iterator()]


def run_dir_problem(args: list[str]) -> str | None:
    """Why the ``hydra.run.dir`` of the command line cannot be created or written, or None."""
    for arg in args:
        key, _, value = arg.partition("=")
        if key.lstrip("+") != "hydra.run.dir" or not value or "${" in value:
            continue
        path = Path(value).expanduser().absolute()
        if path.exists() and not path.is_dir():
            return f"hydra.run.dir={value} is a file, not a directory. Choose another run " \
                   "directory."
        parent = path
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            return f"hydra.run.dir={value} cannot be created or written: {parent} is not a " \
                   "writable directory. Choose a run directory you can write to."
    return None


def run_record(args: list[str]) -> dict[Path, bytes]:
    """The files of ``.hydra/`` in an existing ``hydra.run.dir`` named on the command line."""
    for arg in args:
        key, _, value = arg.partition("=")
        if key.lstrip("+") == "hydra.run.dir" and value:
            folder = Path(value).expanduser() / ".hydra"
            if folder.is_dir():
                return {p: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    return {}


def remove_if_only_record(out_dir: Path) -> bool:
    """Remove ``out_dir`` when it holds nothing but Hydra's record (``.hydra/``, ``*.log``):
    a run refused after Hydra created its directory leaves no empty run folder. True if
    removed."""
    out_dir = Path(out_dir)
    try:
        contents = list(out_dir.iterdir())
    except OSError:
        return False
    if any(not (p.name == ".hydra" or (p.suffix == ".log" and p.is_file())) for p in contents):
        return False
    shutil.rmtree(out_dir, ignore_errors=True)
    return True
