"""Provenance of a run: what ran, on what, from which source, when.

``collect`` gathers the package version, the git commit of the source tree (when the package
runs from a git checkout), library versions, the JAX backend and devices, the platform, the
command line and the seed; ``write_json`` stores the record atomically next to the outputs.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from .cf import write_text

LIBRARIES = ("jax", "jaxlib", "flax", "optax", "numpy", "xarray", "netCDF4", "hydra-core",
             "omegaconf")
"""Distributions whose versions are recorded."""


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git(*args: str, cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def source_commit() -> tuple[str, bool | None]:
    """(commit, dirty) of the git checkout the package is imported from.

    ("unknown", None) when the package does not run from a git checkout of this project (e.g.
    an installed wheel), or git is missing. ``dirty`` tells whether tracked files differ from
    the commit.
    """
    package = Path(__file__).resolve().parents[1]
    top = _git("rev-parse", "--show-toplevel", cwd=package)
    if not top:
        return "unknown", None
    init = Path(top) / "glacier" / "__init__.py"
    if not (init.is_file() and init.samefile(package / "__init__.py")):
        return "unknown", None
    commit = _git("rev-parse", "HEAD", cwd=package)
    if not commit:
        return "unknown", None
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=package)
    return commit, (None if status is None else bool(status))


def collect(argv: list[str], seed: int) -> dict[str, Any]:
    """A JSON-serialisable provenance record of the current process.

    Args:
        argv: the command line (``sys.argv``), recorded shell-quoted.
        seed: the run's seed.
    """
    import jax

    from ..version import __version__

    commit, dirty = source_commit()
    try:
        backend = jax.default_backend()
        devices = [str(d) for d in jax.devices()]
    except RuntimeError as e:  # no usable backend
        backend, devices = f"unavailable ({e})", []
    return {
        "glacier_version": __version__,
        "source_commit": commit,
        "source_dirty": dirty,
        "versions": {dist: _version(dist) for dist in LIBRARIES},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "jax_backend": backend,
        "jax_devices": devices,
        "jax_enable_x64": bool(jax.config.jax_enable_x64),
        "command_line": shlex.join([Path(argv[0]).name, *argv[1:]]) if argv else "",
        "working_directory": os.getcwd(),
        "seed": int(seed),
        "timestamp_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def write_json(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Write ``record`` as indented JSON; the file appears complete or not at all."""
    write_text(path, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
