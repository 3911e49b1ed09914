"""Helper of the tests of ``experiment=files``: small synthetic glacier files that follow the
conventions of ``data/README.md`` (written with xarray, as a user would)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr


def write_glacier(path: Path, *, nx: int = 12, ny: int = 16, dx: float = 100.0,
                  temperature: float | None = -5.0, dhdt: float | None = None,
                  velocity: float | None = None, max_thickness: float = 60.0,
                  name: str | None = None, drop: tuple[str, ...] = ()) -> Path:
    """A valley glacier on a bed sloping 0.2 towards south: ``thickness`` (NaN off the ice),
    ``surface``, ``mask``, ``smb`` [m w.e. a-1], the climate series ``clim_temp_annual`` at
    ``temperature`` and, optionally, uniform ``dhdt`` [m a-1] and ``velocity_obs`` [m a-1]
    on the ice; variables in ``drop`` are left out."""
    x = 500_000.0 + dx * np.arange(nx)
    y = 5_200_000.0 + dx * np.arange(ny)
    X, Y = np.meshgrid(x - x.mean(), y - y.min())
    width, length = dx * nx, dx * ny
    bed = 2500.0 + 0.2 * Y + 200.0 * (X / (width / 2)) ** 2
    shape = 1.0 - (X / (0.3 * width)) ** 2 - ((Y - 0.5 * length) / (0.35 * length)) ** 2
    H = np.where(shape > 0, max_thickness * np.sqrt(np.clip(shape, 0, None)), np.nan)
    ice = np.isfinite(H)
    surface = bed + np.nan_to_num(H)
    ela = float(np.mean(surface[ice]))
    smb = np.clip(0.006 * (surface - ela), -4.0, 2.0)
    dims = ("y", "x")
    data = dict(
        surface=(dims, surface, dict(units="m", long_name="surface elevation")),
        thickness=(dims, H, dict(units="m", long_name="ice thickness")),
        mask=(dims, ice.astype(np.int8), dict(units="1", long_name="glacier mask")),
        smb=(dims, smb, dict(units="m w.e. a-1", long_name="surface mass balance")),
    )
    if temperature is not None:
        data["clim_temp_annual"] = (("clim_year",), np.full(10, float(temperature)),
                                    dict(units="degC", long_name="annual air temperature"))
    if dhdt is not None:
        data["dhdt"] = (dims, np.where(ice, dhdt, np.nan),
                        dict(units="m a-1", long_name="surface elevation change"))
    if velocity is not None:
        data["velocity_obs"] = (dims, np.where(ice, velocity, np.nan),
                                dict(units="m a-1", long_name="surface speed"))
    for key in drop:
        data.pop(key)
    coords = dict(x=("x", x, dict(units="m")), y=("y", y, dict(units="m")))
    if temperature is not None:
        coords["clim_year"] = ("clim_year", np.arange(2000, 2010))
    ds = xr.Dataset(data, coords=coords,
                    attrs=dict(glacier_name=name or Path(path).stem, crs="EPSG:32632"))
    ds.to_netcdf(path)
    return Path(path)
