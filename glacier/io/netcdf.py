"""Write ``simulation.nc``: a forward run in the layout of CONTRACT.md, following CF-1.8.

Dimensions ``time``, ``y``, ``x``; ``x``, ``y`` are cell centres in metres (ascending), ``time``
is in years since the start of the simulation. ``time`` has units ``a`` (annum) and no
``since`` clause on purpose: it is a model time, not a calendar date, so xarray keeps it as
plain float64 years instead of trying to decode it into datetimes.

The file is written next to its final name and moved into place when complete, so a reader
never sees a half-written ``simulation.nc``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from .cf import attr_value, common_attrs, write_dataset

if TYPE_CHECKING:
    from ..simulation import SimulationResult

FIELD_ATTRS: dict[str, dict[str, str]] = {
    "thickness": dict(units="m", long_name="ice thickness", standard_name="land_ice_thickness"),
    "surface": dict(units="m", long_name="ice surface elevation",
                    standard_name="surface_altitude"),
    "velocity": dict(units="m a-1", long_name="surface speed of the ice (shallow-ice "
                                               "approximation, at cell centres)"),
    "smb": dict(units="m a-1", long_name="surface mass balance rate in metres of ice per year "
                                         "(on the surface at this time)"),
}
"""(time, y, x) variables. CF standard names only where they exist with these units: the CF
mass-balance names are in kg m-2 s-1, and CF has no name for the SIA surface speed."""

SERIES_ATTRS: dict[str, dict[str, str]] = {
    "volume": dict(units="m3", long_name="ice volume"),
    "area": dict(units="m2", long_name="ice-covered area (thickness above "
                                      "solver.area_threshold)"),
    "smb_volume": dict(units="m3", long_name="cumulative applied surface mass balance since "
                                             "the start (ablation limited to the ice present)"),
    "outflow_volume": dict(units="m3", long_name="cumulative ice volume lost through the domain "
                                                 "edges and ice-free cells since the start"),
    "steps": dict(units="1", long_name="time steps taken in the interval ending at this save"),
    "newton_iterations": dict(units="1", long_name="Newton iterations of the implicit scheme in "
                                                   "the interval ending at this save (0: "
                                                   "explicit)"),
}
"""(time,) diagnostics. volume(t) - volume(0) = smb_volume(t) - outflow_volume(t) to round-off."""

RESERVED = ("Conventions", "title", "history", "config", "glacier_version", "source_commit",
            "domain", "provenance", "status", "scheme", "warnings", "solve_wall_time_s")


def to_dataset(result: SimulationResult, *, config_yaml: str = "",
               provenance: dict[str, Any] | None = None,
               wall_time_s: float | None = None) -> xr.Dataset:
    """The ``simulation.nc`` dataset of ``result``.

    Args:
        result: a finished (or stopped) forward run.
        config_yaml: the resolved config as YAML text (the values actually used).
        provenance: the record of ``glacier.io.provenance.collect``.
        wall_time_s: the run's wall time so far [s] (as ``provenance.json``'s ``wall_time_s``);
            None: the solve's. ``solve_wall_time_s`` is always the solve's.
    """
    provenance = {} if provenance is None else provenance
    grid = result.domain.grid
    coords = {
        "time": ("time", np.asarray(result.times, np.float64),
                 dict(units="a", long_name="time since the start of the simulation",
                      axis="T", comment="model years counted from the initial state")),
        "y": ("y", np.asarray(grid.y, np.float64),
              dict(units="m", long_name="y coordinate of cell centres",
                   standard_name="projection_y_coordinate", axis="Y")),
        "x": ("x", np.asarray(grid.x, np.float64),
              dict(units="m", long_name="x coordinate of cell centres",
                   standard_name="projection_x_coordinate", axis="X")),
    }
    data_vars: dict[str, Any] = {}
    for name, attrs in FIELD_ATTRS.items():
        data_vars[name] = (("time", "y", "x"), np.asarray(getattr(result, name)), attrs)
    fdt = np.asarray(result.thickness).dtype
    data_vars["bed"] = (("y", "x"), np.asarray(result.domain.bed, fdt),
                        dict(units="m", long_name="bed elevation",
                             standard_name="bedrock_altitude"))
    for name, attrs in SERIES_ATTRS.items():
        if name == "newton_iterations":
            values = np.zeros(len(result.times), np.int32) if result.iterations is None \
                else np.asarray(result.iterations, np.int32)
        else:
            values = np.asarray(getattr(result, name))
            values = values.astype(np.int32) if name == "steps" else values.astype(np.float64)
        data_vars[name] = (("time",), values, attrs)

    common = common_attrs(f"glacier-simulate: shallow-ice simulation of {result.domain.name}",
                          config_yaml, provenance)
    attrs: dict[str, Any] = {
        "Conventions": common["Conventions"],
        "title": common["title"],
        "domain": result.domain.name,
        "glacier_version": common["glacier_version"],
        "source_commit": common["source_commit"],
        "history": common["history"],
        "status": "completed" if result.failure is None else f"failed: {result.failure}",
        "scheme": result.scheme,
        "warnings": "; ".join(result.warnings),
        "mass_budget_error": float(result.budget_error),
        "wall_time_s": float(result.wall_time if wall_time_s is None else wall_time_s),
        "solve_wall_time_s": float(result.wall_time),
        "config": common["config"],
        "provenance": common["provenance"],
    }
    for key, value in sorted(result.physics.as_dict().items()):
        attrs[f"physics_{key}"] = float(value)
    for key, value in sorted(result.domain.attrs.items()):
        name = f"domain_{key}" if key in RESERVED or key in attrs else str(key)
        attrs[name] = attr_value(value)
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def write_simulation(path: str | os.PathLike, result: SimulationResult, *,
                     config_yaml: str = "", provenance: dict[str, Any] | None = None,
                     wall_time_s: float | None = None) -> Path:
    """Write ``result`` to ``path`` (``simulation.nc``) atomically and return the path.

    The dataset is written to a hidden temporary file in the same directory and renamed to
    ``path`` only when complete; on any error the temporary file is removed and ``path`` is
    left as it was. Fields keep the run's dtype (float32 or float64), compressed with zlib;
    coordinates and time series are float64.
    """
    ds = to_dataset(result, config_yaml=config_yaml, provenance=provenance,
                    wall_time_s=wall_time_s)
    return write_dataset(path, ds, compress=(*FIELD_ATTRS, "bed"))
