"""Read and validate glacier NetCDF files (the conventions of ``data/README.md``).

A glacier file holds fields on a regular projected grid:

- dims ``(y, x)``; ``x``, ``y`` are cell centres in metres, strictly ascending, uniformly spaced
  with the same spacing along x and y (row 0 = south);
- ``surface`` [m a.s.l.] is required and finite everywhere;
- optional grids: ``bed`` [m], ``thickness`` [m] (NaN outside the glacier), ``mask`` (1 glacier,
  0 not), ``mask_fraction`` [1], ``smb`` [m w.e. a^-1], ``thickness_obs`` [m] (NaN = not
  observed), ``thickness_obs_count`` [1], ``bed_obs`` [m], ``velocity_obs`` [m a^-1] (observed
  surface speed, NaN = not observed), ``dhdt`` [m a^-1] (surface-elevation change, NaN =
  unknown), ``thickness_reference`` [m] (an independent thickness product, e.g. a consensus
  estimate, for comparison only; NaN = none);
- optional series: ``mb_profile(mb_year, mb_altitude)`` [m w.e. a^-1], ``ela(mb_year)`` [m],
  ``clim_temp_annual(clim_year)`` and ``clim_temp_jja(clim_year)`` [degC],
  ``clim_prec_annual(clim_year)`` [mm a^-1];
- global attributes: ``crs``, ``title``, ``glacier_name``, ``rgi60_id``, ``raw_source``,
  ``license``, ``references``, ``clim_reference_elevation_m`` (elevation of the climate series).

``read_glacier_file`` checks all of this and raises ``InputDataError`` naming the file, the
variable, what is wrong and how to fix it. It returns plain NumPy float64 arrays; this module and
its siblings in ``glacier.io`` are the only places that import xarray / netCDF4.
"""

from __future__ import annotations

import importlib.resources
import math
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..errors import InputDataError
from . import units as un

GRID_VARIABLES = ("surface", "bed", "thickness", "mask", "mask_fraction", "smb", "thickness_obs",
                  "thickness_obs_count", "bed_obs", "velocity_obs", "dhdt", "thickness_reference")
"""Optional (y, x) fields read from a glacier file (``surface`` is required)."""

SERIES_VARIABLES = {
    "mb_profile": ("mb_year", "mb_altitude"),
    "ela": ("mb_year",),
    "clim_temp_annual": ("clim_year",),
    "clim_temp_jja": ("clim_year",),
    "clim_prec_annual": ("clim_year",),
}
"""Optional non-grid variables and the dims they must have."""

UNIT_KINDS = {
    "x": "length", "y": "length", "surface": "length", "bed": "length", "thickness": "length",
    "thickness_obs": "length", "thickness_reference": "length", "bed_obs": "length",
    "ela": "length", "mb_altitude": "length",
    "mask": "dimensionless", "mask_fraction": "dimensionless",
    "thickness_obs_count": "dimensionless", "smb": "mass_balance",
    "mb_profile": "mass_balance", "velocity_obs": "speed", "dhdt": "speed",
    "clim_temp_annual": "temperature",
    "clim_temp_jja": "temperature", "clim_prec_annual": "precipitation",
}
"""Variable -> quantity kind of ``glacier.io.units``: its ``units`` are converted to the
model's (m, m w.e. a^-1, m a^-1, degC, mm a^-1) or refused."""

DX_RANGE = (1.0, 10_000.0)
"""Plausible grid spacing [m]."""

ELEVATION_RANGE = (-500.0, 9000.0)
"""Plausible elevations [m a.s.l.] of surface, bed and ELA."""

MAX_SPEED = 20000.0
"""Largest plausible surface speed [m a^-1] (the fastest outlet glaciers flow about 17 km/a)."""

MAX_DHDT = 50.0
"""Largest plausible surface-elevation change [m a^-1] either way (the fastest-thinning
tidewater termini lose about 20 m a^-1; surge fronts thicken by tens of metres a year)."""

MAX_THICKNESS = 5000.0
"""Largest plausible ice thickness [m] (thickest ice on Earth is about 4.8 km)."""

SMB_RANGE = (-30.0, 30.0)
"""Plausible surface mass balance [m w.e. a^-1]."""

TEMPERATURE_RANGE = (-80.0, 40.0)
"""Plausible air temperatures [degC]."""

_GLOBAL_ATTRS = ("title", "glacier_name", "rgi60_id", "crs", "raw_source", "license", "references",
                 "clim_reference_elevation_m", "Conventions")


def data_path(name: str) -> Path:
    """Path of a bundled data file, e.g. ``data_path("south_glacier.nc")``.

    Looks in the package ``glacier.data`` (the top-level ``data/`` folder as shipped in the wheel)
    when it is importable, else in the repository's ``data/`` next to the package.
    """
    candidates = []
    try:
        candidates.append(Path(str(importlib.resources.files("glacier.data") / name)))
    except (ModuleNotFoundError, TypeError):
        pass
    candidates.append(Path(__file__).resolve().parents[2] / "data" / name)
    for path in candidates:
        if path.is_file():
            return path
    raise InputDataError(
        f"Bundled data file {name!r} not found (looked in: "
        f"{', '.join(str(p) for p in candidates)}). Reinstall the package (pip install .) or "
        "copy the file into the repository's data/ folder.")


def read_glacier_file(path) -> dict[str, Any]:
    """Read and validate a glacier NetCDF file.

    Args:
        path: file path (str or Path); ``~`` is expanded, relative paths are taken from the
            current directory.

    Returns:
        A dict with
        ``path`` (absolute, str), ``x`` (nx,) and ``y`` (ny,) cell centres [m], ``dx`` [m];
        grids of shape (ny, nx), float64, ``None`` when absent: ``surface``, ``bed``,
        ``thickness``, ``mask``, ``mask_fraction``, ``smb`` [m w.e. a^-1], ``thickness_obs``
        (NaN = not observed; all-NaN means no observations), ``thickness_obs_count``
        (0 where not observed; 1 per observed cell when the file has no counts), ``bed_obs``;
        series, float64 or ``None``: ``mb_profile`` (years, altitudes), ``mb_altitude``,
        ``mb_year``, ``ela``, ``clim_temp_annual``, ``clim_temp_jja``, ``clim_prec_annual``,
        ``clim_year``;
        ``attrs``: global attributes (provenance strings; numbers as float);
        ``variable_attrs``: {variable: its attributes}.

    Raises:
        InputDataError: the file is missing or not NetCDF, or a variable is missing, has the
            wrong dims, shape or coordinates, or holds NaN or implausible values.
    """
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = Path.cwd() / p
    if p.is_dir():
        raise InputDataError(
            f"Glacier file {str(p)!r} is a directory, not a NetCDF file. Set glacier.path to "
            "the .nc file itself (e.g. glacier.path=DIR/my_glacier.nc).")
    if not p.is_file():
        raise InputDataError(
            f"Glacier file {str(p)!r} does not exist. Check glacier.path (relative paths are "
            "taken from the directory the command was started in) or give an absolute path.")
    try:
        with xr.open_dataset(p, engine="netcdf4", decode_times=False) as ds:
            ds = ds.load()
    except (OSError, ValueError, RuntimeError) as err:
        raise InputDataError(
            f"Glacier file {str(p)!r} could not be opened as NetCDF ({type(err).__name__}: "
            f"{err}). It must be a NetCDF-3 or NetCDF-4 file following data/README.md; check "
            "it with `ncdump -h FILE`.") from err
    return _read(ds, str(p))


class _Ctx:
    """Formats errors about one file: 'File F, variable V: what. Fix: how.'"""

    def __init__(self, path: str, x=None, y=None):
        self.path, self.x, self.y = path, x, y

    def fail(self, var: str | None, what: str, fix: str):
        where = f"Glacier file {self.path!r}" + (f", variable {var!r}" if var else "")
        raise InputDataError(f"{where}: {what} Fix: {fix}")

    def locate(self, bad: np.ndarray) -> str:
        """'N cells, first at x = ..., y = ... m' for a boolean (ny, nx) array."""
        j, i = np.argwhere(bad)[0]
        return (f"{int(bad.sum())} cell(s), the first at x = {self.x[i]:.1f} m, "
                f"y = {self.y[j]:.1f} m (index y={j}, x={i})")


def _read(ds: xr.Dataset, path: str) -> dict[str, Any]:
    ctx = _Ctx(path)
    have = ", ".join(sorted(map(str, ds.variables))) or "nothing"
    if "surface" not in ds.variables:
        ctx.fail("surface", f"the required surface elevation is missing; the file has: {have}.",
                 "add a variable surface(y, x) in metres a.s.l. (see data/README.md).")
    x, dx_x = _coordinate(ds, "x", ctx)
    y, dx_y = _coordinate(ds, "y", ctx)
    if abs(dx_x - dx_y) > 1e-6 * dx_x:
        ctx.fail("x", f"the grid spacing differs along x ({dx_x:g} m) and y ({dx_y:g} m); the "
                 "model needs square cells.", "resample the file to one spacing (dx = dy).")
    ctx.x, ctx.y = x, y
    shape = (y.size, x.size)

    out: dict[str, Any] = dict(path=path, x=x, y=y, dx=float(dx_x), variable_attrs={})
    for name in GRID_VARIABLES:
        out[name] = _grid(ds, name, shape, ctx) if name in ds.variables else None
        if name in ds.variables:
            out["variable_attrs"][name] = _plain_attrs(ds[name].attrs)
    for name, dims in SERIES_VARIABLES.items():
        out[name] = _series(ds, name, dims, ctx) if name in ds.variables else None
        if name in ds.variables:
            out["variable_attrs"][name] = _plain_attrs(ds[name].attrs)
    for coord in ("mb_year", "mb_altitude", "clim_year"):
        out[coord] = None
        if coord in ds.variables:
            a = np.asarray(ds[coord].values, dtype=np.float64)
            _no_inf(a, coord, ctx)
            out[coord] = _in_model_units(ds, coord, a, ctx)
    if out["mb_profile"] is not None and out["mb_altitude"] is None:
        ctx.fail("mb_profile", "it needs the coordinate mb_altitude (band elevations in m), "
                 "which is missing.", "add mb_altitude(mb_altitude) in metres.")

    _validate(out, ctx)
    attrs = _plain_attrs(ds.attrs)
    out["attrs"] = {k: attrs[k] for k in attrs if k in _GLOBAL_ATTRS or isinstance(attrs[k], str)}
    ref = out["attrs"].get("clim_reference_elevation_m")
    if ref is not None and not (isinstance(ref, float) and math.isfinite(ref)):
        ctx.fail(None, f"global attribute clim_reference_elevation_m = {ref!r} is not a number.",
                 "set it to the elevation of the climate series in metres, or remove it.")
    return out


def _coordinate(ds: xr.Dataset, name: str, ctx: _Ctx) -> tuple[np.ndarray, float]:
    """Check a 1-D coordinate: present, metres, >= 3 values, strictly ascending, uniform."""
    if name not in ds.variables or ds[name].dims != (name,):
        ctx.fail(name, f"the 1-D coordinate {name}({name}) of cell centres is missing; the "
                 f"surface has dims {ds['surface'].dims}.",
                 "store the grid as dims (y, x) with coordinate variables x and y in metres "
                 "(projected coordinates, not longitude/latitude).")
    raw = np.asarray(ds[name].values)
    if raw.dtype.kind not in "iuf" or raw.size < 3:
        ctx.fail(name, f"must be a numeric coordinate with at least 3 values, got {raw.size} of "
                 f"type {raw.dtype}.", "use a grid of at least 3 x 3 cells.")
    c = _in_model_units(ds, name, raw.astype(np.float64), ctx)
    if not np.all(np.isfinite(c)):
        ctx.fail(name, "holds NaN or infinite values.", "give every cell centre a coordinate.")
    d = np.diff(c)
    if np.any(d == 0):
        k = int(np.argmax(d == 0))
        ctx.fail(name, f"holds duplicated coordinates ({c[k]:.3f} m appears more than once, "
                 f"{int(np.sum(d == 0))} duplicate(s)).",
                 f"remove the duplicates, e.g. ds = ds.drop_duplicates('{name}') in xarray "
                 f"(sortby does not remove them), then ds.sortby('{name}').")
    if not np.all(d > 0):
        k = int(np.argmax(d <= 0))
        order = "descending" if np.all(d < 0) else "not monotonic"
        ctx.fail(name, f"coordinates must be strictly ascending, but they are {order} "
                 f"({c[k]:.3f} m followed by {c[k + 1]:.3f} m).",
                 f"flip the axis, e.g. ds = ds.sortby('{name}') in xarray (row 0 = south).")
    spacing = (c[-1] - c[0]) / (c.size - 1)
    tol = 1e-4 * spacing + 4 * float(np.spacing(np.abs(raw).max().astype(raw.dtype)))
    if np.max(np.abs(d - spacing)) > tol:
        ctx.fail(name, f"coordinates are not uniformly spaced: spacings found range from "
                 f"{d.min():g} to {d.max():g} m (mean {spacing:g} m).",
                 "resample the data onto a regular grid before loading it.")
    if not DX_RANGE[0] <= spacing <= DX_RANGE[1]:
        ctx.fail(name, f"the grid spacing is {spacing:g} m, outside the plausible "
                 f"{DX_RANGE[0]:g} m to {DX_RANGE[1]:g} km for a glacier model.",
                 f"check the units of {name} (they say {_units_of(ds, name)!r}): coordinates "
                 "in km labelled 'm' give cells a thousand times too small.")
    return c, float(spacing)


def _units_of(ds: xr.Dataset, name: str) -> str | None:
    u = ds[name].attrs.get("units")
    return None if u is None else str(u)


def _in_model_units(ds: xr.Dataset, name: str, a: np.ndarray, ctx: _Ctx) -> np.ndarray:
    """``a`` converted from the variable's ``units`` (none: the model's unit) or refused."""
    kind = UNIT_KINDS.get(name)
    if kind is None:
        return a
    units = _units_of(ds, name)
    out = un.convert(a, units, kind)
    if out is None:
        ctx.fail(name, f"has units {units!r}, which are not a {kind.replace('_', ' ')} unit "
                 f"this reader can convert to {un.KINDS[kind]!r}.",
                 f"store it in {_HUMAN[kind]} ({un.KINDS[kind]!r}; convertible units are "
                 f"e.g. {_EXAMPLES[kind]}), or correct the units attribute.")
    return out


_HUMAN = {"length": "metres", "mass_balance": "metres water equivalent per year",
          "speed": "metres per year", "temperature": "degrees Celsius",
          "dimensionless": "plain numbers", "precipitation": "mm per year"}
_EXAMPLES = {"length": "'km', 'ft'", "mass_balance": "'mm w.e. a-1', 'kg m-2 s-1'",
             "speed": "'m d-1', 'm s-1'", "temperature": "'K'", "dimensionless": "'1'",
             "precipitation": "'kg m-2 s-1'"}


def _no_inf(a: np.ndarray, name: str, ctx: _Ctx) -> None:
    """An infinite value is corrupt data, not a gap (NaN is the gap)."""
    bad = np.isinf(a)
    if bad.any():
        where = ctx.locate(bad) if a.ndim == 2 and ctx.x is not None \
            else f"{int(bad.sum())} value(s), the first at index {tuple(np.argwhere(bad)[0])}"
        ctx.fail(name, f"holds infinite values at {where}.",
                 "use NaN for missing data (the gap marker); an Inf is usually an overflow or "
                 "a bad fill value in the conversion that made the file.")


def _grid(ds: xr.Dataset, name: str, shape: tuple[int, int], ctx: _Ctx) -> np.ndarray:
    """A (y, x) field as float64 (fill values become NaN)."""
    v = ds[name]
    if v.dims != ("y", "x") or v.shape != shape:
        hint = ("it is transposed: use ds[name].transpose('y', 'x')"
                if v.dims == ("x", "y") else
                "store it on the dims (y, x) of the surface, with the same shape")
        ctx.fail(name, f"has dims {v.dims} and shape {v.shape}, but grid variables must have "
                 f"dims ('y', 'x') and shape {shape} like surface.", hint + ".")
    if v.dtype.kind not in "iufb":
        ctx.fail(name, f"has non-numeric type {v.dtype}.", "store it as numbers.")
    a = np.asarray(v.values, dtype=np.float64)
    _no_inf(a, name, ctx)
    return _in_model_units(ds, name, a, ctx)


def _series(ds: xr.Dataset, name: str, dims: tuple[str, ...], ctx: _Ctx) -> np.ndarray:
    v = ds[name]
    if v.dims != dims:
        ctx.fail(name, f"has dims {v.dims}, expected {dims}.",
                 f"store it as {name}({', '.join(dims)}) (see data/README.md).")
    a = np.asarray(v.values, dtype=np.float64)
    _no_inf(a, name, ctx)
    return _in_model_units(ds, name, a, ctx)


def _plain_attrs(attrs) -> dict[str, Any]:
    """Attributes as str / float / int / list, so they can be written back to NetCDF."""
    out = {}
    for k, v in attrs.items():
        if isinstance(v, np.ndarray) and v.size == 1:
            v = v.item()
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, bool):
            v = int(v)
        elif isinstance(v, float | int) and not isinstance(v, bool):
            v = float(v)
        elif isinstance(v, np.ndarray):
            v = v.tolist()
        out[str(k)] = v
    return out


def _check_finite(a: np.ndarray, name: str, where: np.ndarray, ctx: _Ctx, region: str, fix: str):
    bad = where & ~np.isfinite(a)
    if bad.any():
        ctx.fail(name, f"is NaN or infinite at {ctx.locate(bad)} {region}.", fix)


def _check_range(a, name: str, lo: float, hi: float, units: str, ctx: _Ctx, fix: str):
    """Finite values of ``a`` must lie in [lo, hi]."""
    a = np.asarray(a)
    with np.errstate(invalid="ignore"):
        bad = np.isfinite(a) & ((a < lo) | (a > hi))
    if bad.any():
        found = f"values from {np.nanmin(a):g} to {np.nanmax(a):g} {units}"
        loc = ctx.locate(bad) if a.ndim == 2 else f"{int(bad.sum())} value(s)"
        ctx.fail(name, f"has implausible values outside [{lo:g}, {hi:g}] {units} at {loc}; "
                 f"found {found}.", fix)


def _validate(f: dict[str, Any], ctx: _Ctx) -> None:
    """Physical plausibility and consistency between variables."""
    everywhere = np.ones(f["surface"].shape, dtype=bool)
    _check_finite(f["surface"], "surface", everywhere, ctx, "(it must be finite everywhere "
                  "on the grid)", "fill the gaps (e.g. interpolate the DEM) or crop the grid to "
                  "where the surface is known.")
    _check_range(f["surface"], "surface", *ELEVATION_RANGE, "m", ctx,
                 "surface must be in metres above sea level (not feet, not a fill value).")

    mask = f["mask"]
    if mask is not None:
        bad = ~np.isin(mask, (0.0, 1.0))
        if bad.any():
            vals = ", ".join(f"{v:g}" for v in np.unique(mask[bad])[:5])
            ctx.fail("mask", f"must hold only 0 (no glacier) and 1 (glacier); found {vals} at "
                     f"{ctx.locate(bad)}.", "set mask = 1 on the glacier and 0 elsewhere.")
        if not mask.any():
            ctx.fail("mask", "has no glacier cells (all 0).",
                     "set mask = 1 on the glacier, or remove the variable.")
    inside = mask == 1 if mask is not None else everywhere
    region = "inside the glacier mask" if mask is not None else "(there is no mask, so it must "\
        "be finite everywhere)"

    if f["bed"] is not None:
        _check_finite(f["bed"], "bed", inside, ctx, region,
                      "give the bed elevation on every glacier cell (bed = surface - thickness).")
        _check_range(f["bed"], "bed", *ELEVATION_RANGE, "m", ctx,
                     "bed must be in metres above sea level.")
    if f["thickness"] is not None:
        H = f["thickness"]
        if mask is not None:
            _check_finite(H, "thickness", inside, ctx, region,
                          "give the thickness on every glacier cell (NaN only outside).")
        with np.errstate(invalid="ignore"):
            if (H < 0).any():
                ctx.fail("thickness", f"is negative at {ctx.locate(H < 0)} (minimum "
                         f"{np.nanmin(H):g} m).", "thickness must be >= 0 m (NaN = no ice).")
        _check_range(H, "thickness", 0.0, MAX_THICKNESS, "m", ctx,
                     "thickness must be in metres (the thickest ice on Earth is ~4.8 km).")
    ref = f["thickness_reference"]
    if ref is not None:
        with np.errstate(invalid="ignore"):
            if (ref < 0).any():
                ctx.fail("thickness_reference", f"is negative at {ctx.locate(ref < 0)}.",
                         "thickness_reference must be >= 0 m (NaN = no estimate).")
        _check_range(ref, "thickness_reference", 0.0, MAX_THICKNESS, "m", ctx,
                     "thickness_reference must be in metres.")
    for name in ("smb", "mb_profile"):
        if f[name] is not None:
            _check_range(f[name], name, *SMB_RANGE, "m w.e. a-1", ctx,
                         "mass balance must be in metres water equivalent per year "
                         "(divide mm w.e. or kg m-2 by 1000).")
    if f["mask_fraction"] is not None:
        _check_range(f["mask_fraction"], "mask_fraction", 0.0, 1.0, "", ctx,
                     "mask_fraction is the glacier area fraction of a cell, from 0 to 1.")
    if f["ela"] is not None:
        _check_range(f["ela"], "ela", *ELEVATION_RANGE, "m", ctx, "ela must be in metres a.s.l.")
    if f["mb_altitude"] is not None:
        _check_range(f["mb_altitude"], "mb_altitude", *ELEVATION_RANGE, "m", ctx,
                     "mb_altitude must be in metres a.s.l.")
    for name in ("clim_temp_annual", "clim_temp_jja"):
        if f[name] is not None:
            _check_range(f[name], name, *TEMPERATURE_RANGE, "degC", ctx,
                         "temperatures must be in degrees Celsius (subtract 273.15 from kelvin).")
    _validate_observations(f, ctx, mask)
    speed = f["velocity_obs"]
    if speed is not None:
        _check_range(speed, "velocity_obs", 0.0, MAX_SPEED, "m a-1", ctx,
                     "observed surface speed must be >= 0 in metres per year (NaN = not "
                     "observed).")
    if f["dhdt"] is not None:
        _check_range(f["dhdt"], "dhdt", -MAX_DHDT, MAX_DHDT, "m a-1", ctx,
                     "dhdt is the surface-elevation change in metres per year (negative: "
                     "thinning; NaN = unknown).")


def _validate_observations(f: dict[str, Any], ctx: _Ctx, mask) -> None:
    obs, count = f["thickness_obs"], f["thickness_obs_count"]
    if obs is None:
        if count is not None:
            ctx.fail("thickness_obs_count", "is present but thickness_obs is missing.",
                     "add thickness_obs(y, x) or remove the counts.")
        return
    observed = ~np.isnan(obs)
    if (obs[observed] < 0).any():
        ctx.fail("thickness_obs", f"is negative at {ctx.locate(observed & (obs < 0))}.",
                 "observed thickness must be >= 0 m (NaN = not observed).")
    _check_range(obs, "thickness_obs", 0.0, MAX_THICKNESS, "m", ctx,
                 "observed thickness must be in metres.")
    if mask is not None:
        # The outline is rasterised (e.g. cell glacier fraction >= 0.5), so radar points in a
        # partly glacierised cell next to the mask are legitimate (South Glacier has 6 such
        # cells). Observations farther than one cell from the mask are an error.
        far = observed & ~_dilate(mask == 1)
        if far.any():
            ctx.fail("thickness_obs", f"has observations outside the glacier mask (more than "
                     f"one cell from it) at {ctx.locate(far)}.",
                     "check that thickness_obs and mask use the same grid and projection, or "
                     "set those cells to NaN.")
    if count is None:
        f["thickness_obs_count"] = observed.astype(np.float64)
        return
    if not np.all(np.isfinite(count)) or (count < 0).any() or (count != np.round(count)).any():
        ctx.fail("thickness_obs_count", "must hold whole numbers >= 0.",
                 "store the number of observations per cell (0 where none).")
    if (count[~observed] > 0).any():
        ctx.fail("thickness_obs_count", f"is > 0 where thickness_obs is NaN, at "
                 f"{ctx.locate(~observed & (count > 0))}.",
                 "set the count to 0 where nothing was observed.")


def _dilate(m: np.ndarray) -> np.ndarray:
    """Boolean mask grown by one cell in all 8 directions."""
    p = np.pad(m, 1)
    ny, nx = m.shape
    out = np.zeros_like(m)
    for dj in range(3):
        for di in range(3):
            out |= p[dj:dj + ny, di:di + nx]
    return out
