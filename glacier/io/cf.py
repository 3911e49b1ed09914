"""What every output file shares: CF global attributes, attribute values, one atomic writer.

``write_atomic`` is the one way the package writes a file: into a hidden temporary file beside
the final name, renamed into place only when complete, so a reader never sees a half-written
output and a failed write leaves the old file (or none) behind. A process killed mid-write
(SIGKILL, power loss) leaves only its hidden temporary, which ``remove_stale`` deletes the next
time a run writes into that folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

# `.NAME.PID.tmp[.suffix]` (files being written) and `.NAME.PID.old` (checkpoints replaced)
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.(?:tmp|old)(?:\.[A-Za-z0-9]+)?$")


def temporary_path(path: str | os.PathLike, kind: str = "tmp") -> Path:
    """The hidden name beside ``path`` that this process writes ``path`` under (the suffix
    kept, so that writers that choose the format from it, such as matplotlib, still can)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{os.getpid()}.{kind}{path.suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporaries that processes no longer running left in ``directory`` (killed
    mid-write); the removed paths. Temporaries of live processes are left alone."""
    directory = Path(directory)
    removed = []
    if not directory.is_dir():
        return removed
    for p in directory.iterdir():
        m = _TEMPORARY.match(p.name)
        if not m or _alive(int(m.group("pid"))):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a hidden temporary path beside ``path``, then rename it to
    ``path``; on any error the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def write_dataset(path: str | os.PathLike, ds: xr.Dataset,
                  compress: tuple[str, ...] = ()) -> Path:
    """Write ``ds`` to ``path`` as NetCDF-4 atomically.

    No ``_FillValue`` on numeric variables (NaN stays NaN); ``compress`` names the variables to
    store with zlib (level 4, shuffle).
    """
    encoding: dict[str, dict[str, Any]] = {}
    for name, var in ds.variables.items():
        if var.dtype.kind in "fiu":
            encoding[name] = {"_FillValue": None}
    for name in compress:
        encoding.setdefault(name, {}).update(zlib=True, complevel=4, shuffle=True)
    return write_atomic(path, lambda tmp: ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4",
                                                       encoding=encoding))


def attr_value(value: Any) -> Any:
    """A value netCDF can store as an attribute: numbers, strings and 1-D numeric arrays as
    they are, booleans as 0/1, anything else as its text."""
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, int | float | str | np.integer | np.floating):
        return value
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "if":
        return value
    return str(value)


def common_attrs(title: str, config_yaml: str, provenance: dict[str, Any]) -> dict[str, Any]:
    """The global attributes of every output file: conventions, title, version, commit,
    history (when and how it was made), the resolved config and the provenance record."""
    return {
        "Conventions": "CF-1.8",
        "title": title,
        "glacier_version": str(provenance.get("glacier_version", "unknown")),
        "source_commit": str(provenance.get("source_commit", "unknown")),
        "history": (f"{provenance.get('timestamp_utc', '')}: "
                    f"{provenance.get('command_line', '')}").strip(": "),
        "config": config_yaml,
        "provenance": json.dumps(provenance, sort_keys=True, default=str),
    }
