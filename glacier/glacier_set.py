"""A set of the user's own glacier files as training data (``experiment=files``).

``experiment.glaciers`` names NetCDF files of the conventions of ``data/README.md`` (a
directory: its ``*.nc`` files; a glob such as ``/data/alps/*.nc``; a file; or a list of any of
these). Each file is one glacier with its own geometry, mass balance and climate:

- **initial state**: the file's gridded ``thickness`` (or surface - ``bed``), resampled to the
  common ``experiment.dx`` (an integer multiple of every file's spacing; block averages, see
  ``domains.real.resample``);
- **observations** at the save times t (every ``experiment.obs_every`` years up to
  ``experiment.years``; only the end by default): H_obs(t) = max(H0 + dhdt t, 0) on the cells
  where the file has ice (thickness > 0) or its mask is 1. ``dhdt`` is the file's
  surface-elevation change [m a-1] (the bed is fixed, so dH/dt = dS/dt); where the file has
  none (no ``dhdt`` variable, or NaN) ``experiment.dhdt`` is used (default 0: the glacier is
  taken to be in balance), or with ``experiment.dhdt=null`` such cells are observed at t = 0
  only (they drop out of the loss);
- ``velocity_obs`` where the file has it (for ``loss.velocity``), at every save time, on the
  observed cells;
- **temperature**: the file's ``clim_temp_annual`` (height-corrected as in
  ``domains.real.domain_from_fields``), else ``experiment.temperature``.

All glaciers are stacked on one padded grid with ``train.stack_domains``. Every problem with
the files or the set (nothing matched, a file missing, not a glacier file, without thickness,
mass balance or temperature, spacings that do not fit ``experiment.dx``) is a ``ConfigError``
naming the file and what to do.
"""

from __future__ import annotations

import dataclasses
import glob
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import solver as slv
from . import train as tr
from .domains import Domain, build_domain
from .errors import ConfigError, InputDataError
from .options import option
from .schemes import ExplicitMUSCL, Scheme

GLOB_CHARACTERS = "*?["


@dataclasses.dataclass(frozen=True)
class FilesOptions:
    """``experiment=files``: train on the user's own glacier files (``glacier_set``)."""

    glaciers: Any = option(None, "the glacier files (data/README.md conventions): a directory "
                           "(its *.nc), a glob (/data/*.nc), a file, or a list of these; "
                           "relative paths from the current directory", required=True)
    dx: float | None = option(None, "common grid spacing [m], an integer multiple of every "
                              "file's; null = the coarsest file's")
    years: float = option(10.0, "simulated years; the observations are H0 + dhdt t")
    obs_every: float | None = option(None, "years between observations; null = only at the "
                                     "end (experiment.years)")
    dhdt: float | None = option(0.0, "surface-elevation change [m a-1] where a file has no "
                                "dhdt (0: in balance); null = such cells are not observed")
    temperature: float | None = option(None, "mean air temperature [degC] of files without "
                                       "clim_temp_annual; null = such files are refused")


@dataclasses.dataclass(frozen=True)
class GlacierSet:
    """The glaciers of ``experiment=files`` ready for training.

    Attributes:
        domains: one per file (names unique), on the common grid spacing.
        paths: the files, in the order of ``domains``.
        batch: the padded batch with observations (``train.GlacierBatch``).
        problem: grid, save times, scheme, physics, names.
        H_true: (G, nt, ny, nx) the observed thickness at the save times, H0 first, 0 where
            not observed: what the outputs show in place of a twin's truth.
        truth: None (there is no known law).
    """

    domains: tuple[Domain, ...]
    paths: tuple[str, ...]
    batch: tr.GlacierBatch
    problem: tr.Problem
    H_true: np.ndarray
    truth: None = None


def _as_list(glaciers) -> list[str]:
    if glaciers is None or (isinstance(glaciers, str) and not glaciers.strip()):
        raise ConfigError("experiment=files needs experiment.glaciers: a directory of glacier "
                          "files, a glob or a list, e.g. experiment.glaciers=/data/alps or "
                          "'experiment.glaciers=/data/alps/*.nc'.")
    if isinstance(glaciers, str | Path):
        return [str(glaciers)]
    items = [str(g) for g in glaciers]
    if not items:
        raise ConfigError("experiment.glaciers=[] lists no glacier files. Give a directory, a "
                          "glob or files, e.g. experiment.glaciers=[a.nc,b.nc].")
    return items


def resolve_paths(glaciers) -> list[Path]:
    """The files of ``experiment.glaciers`` (absolute, in order, each once); ConfigError when
    an entry matches nothing."""
    out: list[Path] = []
    for item in _as_list(glaciers):
        path = Path(item).expanduser()
        if any(c in item for c in GLOB_CHARACTERS):
            found = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
            found = [p for p in found if p.is_file()]
            if not found:
                raise ConfigError(f"experiment.glaciers: {item!r} matches no file. Check the "
                                  "pattern (relative paths are taken from the directory the "
                                  "command was started in), e.g. "
                                  "'experiment.glaciers=/data/alps/*.nc'.")
        elif path.is_dir():
            found = sorted(p for p in path.glob("*.nc") if p.is_file())
            if not found:
                raise ConfigError(f"experiment.glaciers: the directory {str(path)!r} holds no "
                                  "*.nc file. Point it at the folder of the glacier files, or "
                                  "give a glob or the files.")
        elif path.is_file():
            found = [path]
        else:
            raise ConfigError(f"experiment.glaciers: {item!r} does not exist (neither a file "
                              "nor a directory). Check the path; relative paths are taken "
                              "from the directory the command was started in.")
        for p in found:
            p = p.absolute()
            if p not in out:
                out.append(p)
    return out


def _read(path: Path, dx: float | None, where: str) -> Domain:
    """The domain of one file (``glacier=netcdf``), its errors as a ConfigError naming it."""
    try:
        return build_domain("netcdf", path=str(path), dx=dx)
    except (ConfigError, InputDataError, ValueError) as e:
        raise ConfigError(f"experiment.glaciers: {where} {path}: {e} (Fix or remove this file "
                          "from the set.)") from e


def _check(d: Domain, path: Path, o: FilesOptions) -> None:
    """ConfigError unless a file's domain has what training needs."""
    if d.attrs.get("initial_thickness") != "observed":
        raise ConfigError(f"experiment.glaciers: {path} has no thickness(y, x) or bed(y, x): "
                          "experiment=files starts from and compares with the file's ice "
                          "thickness. Add a gridded thickness (e.g. a consensus estimate) "
                          "or remove the file from the set.")
    if str(d.attrs.get("smb_source", "")).startswith("none"):
        raise ConfigError(f"experiment.glaciers: {path} has neither smb(y, x) nor mb_profile: "
                          "training needs the mass balance that drives the glacier. Add one "
                          "(m w.e. a-1) or remove the file from the set.")
    if d.temperature is None and o.temperature is None:
        raise ConfigError(f"experiment.glaciers: {path} has no clim_temp_annual, so its "
                          "temperature is unknown. Add the climate series, or set "
                          "experiment.temperature=T [degC] for the files without one.")
    if not np.any(d.thickness > 0):
        raise ConfigError(f"experiment.glaciers: {path} has no ice (thickness 0 everywhere) "
                          f"on the {d.grid.dx:g} m grid. Remove it from the set or use a "
                          "finer experiment.dx.")


def _common_dx(native: Sequence[float], paths: Sequence[Path], dx: float | None) -> float:
    """``experiment.dx`` (null: the coarsest spacing), checked against every file's."""
    target = float(max(native) if dx is None else dx)
    for h, path in zip(native, paths, strict=True):
        k = target / h
        if abs(k - round(k)) > 1e-6 * k or round(k) < 1:
            hint = ("set experiment.dx to a common multiple of the files' spacings (" +
                    ", ".join(f"{s:g}" for s in sorted(set(native))) + " m)")
            raise ConfigError(f"experiment.glaciers: {path} has cells of {h:g} m, and "
                              f"experiment.dx={target:g} m is not an integer multiple of it: "
                              f"{hint}, or resample the file.")
    return target


def _unique_names(domains: Sequence[Domain], paths: Sequence[Path]) -> list[str]:
    names = [d.name for d in domains]
    if len(set(names)) == len(names):
        return names
    names = [p.stem for p in paths]
    if len(set(names)) == len(names):
        return names
    return [f"{p.stem}_{i + 1}" for i, p in enumerate(paths)]


def _padded(domains: Sequence[Domain], fields: Sequence[np.ndarray], multiple_of: int,
            dtype: str) -> np.ndarray:
    """Fields (one per domain, >= 0, on its grid) placed on the padded grid exactly as
    ``train.stack_domains`` places the glaciers (as the initial thickness of a copy)."""
    copies = [dataclasses.replace(d, thickness=np.asarray(f, np.float64))
              for d, f in zip(domains, fields, strict=True)]
    batch, _ = tr.stack_domains(copies, dtype=dtype, multiple_of=multiple_of)
    return np.asarray(batch.H0, np.float64)


def observations(d: Domain, times: Sequence[float], o: FilesOptions):
    """(H_obs, observed, speed or None) of one glacier at ``times`` after 0, each (nt, ny,
    nx); NaN-free (observed: 1 where a value counts)."""
    H0 = np.asarray(d.thickness, np.float64)
    glacier = H0 > 0
    if d.mask is not None:
        glacier |= np.asarray(d.mask) > 0
    rate = np.full(H0.shape, np.nan) if d.dhdt is None else np.asarray(d.dhdt, np.float64)
    known = np.isfinite(rate)
    if o.dhdt is not None:
        rate = np.where(known, rate, float(o.dhdt))
        known = np.ones_like(known)
    t = np.asarray(times, np.float64)[:, None, None]
    H = np.maximum(H0[None] + np.nan_to_num(rate)[None] * t, 0.0)
    observed = np.broadcast_to(glacier & known, H.shape).astype(np.float64)
    speed = None
    if d.velocity_obs is not None:
        v = np.asarray(d.velocity_obs, np.float64)
        speed = np.broadcast_to(np.where(glacier & np.isfinite(v), v, np.nan), H.shape)
    return H * observed, observed, speed


def load(options: FilesOptions, *, velocity: bool = False) -> tuple[list[Domain], list[Path]]:
    """The glaciers of ``options`` (domains on the common grid spacing, unique names, each with
    a temperature) and their files, every file read and checked; no arrays are stacked, so
    this is what the command line's check calls before anything runs.

    ``velocity``: ``loss.velocity`` is on, so at least one file must have ``velocity_obs``.
    """
    o = options
    if not (o.years > 0 and math.isfinite(o.years)):
        raise ConfigError(f"experiment.years={o.years} must be a positive number of years.")
    if o.obs_every is not None and not o.obs_every > 0:
        raise ConfigError(f"experiment.obs_every={o.obs_every} must be > 0 (or null: only at "
                          "the end).")
    paths = resolve_paths(o.glaciers)
    where = lambda i: f"file {i + 1} of {len(paths)},"
    domains = [_read(p, None, where(i)) for i, p in enumerate(paths)]
    dx = _common_dx([d.grid.dx for d in domains], paths, o.dx)
    domains = [d if math.isclose(d.grid.dx, dx) else _read(p, dx, where(i))
               for i, (d, p) in enumerate(zip(domains, paths, strict=True))]
    for d, p in zip(domains, paths, strict=True):
        _check(d, p, o)
    names = _unique_names(domains, paths)
    domains = [dataclasses.replace(d, name=n, temperature=float(
        d.temperature if d.temperature is not None else o.temperature))
        for d, n in zip(domains, names, strict=True)]
    if velocity and all(d.velocity_obs is None for d in domains):
        raise ConfigError("loss.velocity > 0, but none of the files of experiment.glaciers "
                          "has velocity_obs(y, x). Add observed surface speeds to the files, "
                          "or set loss.velocity=0.")
    return domains, paths


def build(options: FilesOptions, *, dtype: str = "float64", devices: int = 1,
          scheme: Scheme | None = None, velocity: bool = False) -> GlacierSet:
    """The training set of ``options`` (see the module docstring and ``load``).

    Args:
        options: ``experiment.*``.
        dtype: precision of the batch; devices: the batch is padded to a multiple of this
            number of glaciers (zero-weight copies of the first).
        scheme: the training scheme (default: the explicit one).
        velocity: ``loss.velocity`` is on: at least one file must have ``velocity_obs``.
    """
    o = options
    domains, paths = load(o, velocity=velocity)
    names = [d.name for d in domains]
    physics = domains[0].physics
    batch, grid = tr.stack_domains(domains, dtype=dtype, multiple_of=devices)
    save_at = slv.SaveAt.every(float(o.years), None if o.obs_every is None
                               else float(o.obs_every))
    times = save_at.times[1:]
    per = [observations(d, times, o) for d in domains]
    nt = len(times)
    obs = np.stack([_padded(domains, [p[0][k] for p in per], devices, dtype)
                    for k in range(nt)], axis=1)
    seen = np.stack([_padded(domains, [p[1][k] for p in per], devices, dtype)
                     for k in range(nt)], axis=1) > 0.5
    vel = None
    if any(p[2] is not None for p in per):
        v = [np.nan_to_num(p[2][0]) if p[2] is not None else np.zeros(d.grid.shape)
             for p, d in zip(per, domains, strict=True)]
        has = [np.isfinite(p[2][0]).astype(np.float64) if p[2] is not None
               else np.zeros(d.grid.shape) for p, d in zip(per, domains, strict=True)]
        v_pad = _padded(domains, v, devices, dtype)
        has_pad = _padded(domains, has, devices, dtype) > 0.5
        vel = np.where(seen & has_pad[:, None], v_pad[:, None], np.nan)
    if not seen.any():
        raise ConfigError("experiment.glaciers: no cell of any file is observed after t = 0: "
                          "with experiment.dhdt=null only cells with a finite dhdt in the file "
                          "count. Set experiment.dhdt=0 (in balance) or add dhdt to the files.")
    H_obs = np.where(seen, obs, np.nan)
    batch = tr.with_observations(batch, H_obs, vel)
    problem = tr.Problem(grid=grid, save_at=save_at, scheme=scheme or ExplicitMUSCL(),
                         physics=physics, names=tuple(names))
    H_true = np.concatenate([np.asarray(batch.H0, np.float64)[:, None],
                             np.nan_to_num(H_obs)], axis=1)
    return GlacierSet(domains=tuple(domains), paths=tuple(str(p) for p in paths), batch=batch,
                      problem=problem, H_true=H_true)
