"""Broken glacier files give an ``InputDataError`` that names the file, variable and fix."""

from __future__ import annotations

import netCDF4
import numpy as np
import pytest
import xarray as xr

from glacier.domains import build_domain
from glacier.errors import ConfigError, InputDataError
from glacier.io.readers import read_glacier_file

NY, NX, DX = 6, 7, 50.0


def make_dataset(**overrides) -> xr.Dataset:
    """A small valid glacier: a tilted plane, a 4 x 4 glacier with two observed cells."""
    x = 500_000.0 + DX * np.arange(NX)
    y = 5_000_000.0 + DX * np.arange(NY)
    X, Y = np.meshgrid(x - x[0], y - y[0])
    surface = 3000.0 - 0.1 * Y + 0.02 * X
    mask = np.zeros((NY, NX), dtype=np.int8)
    mask[1:5, 1:5] = 1
    obs = np.full((NY, NX), np.nan)
    obs[2, 2], obs[3, 3] = 80.0, 60.0
    smb = np.where(mask == 1, 0.005 * (surface - 2800.0), np.nan)
    grid = ("y", "x")
    ds = xr.Dataset(
        dict(surface=(grid, surface, dict(units="m")), mask=(grid, mask),
             thickness_obs=(grid, obs, dict(units="m")),
             smb=(grid, smb, dict(units="m w.e. a-1")),
             clim_temp_annual=("clim_year", np.array([-5.0, -6.0, -4.0]))),
        coords=dict(x=("x", x, dict(units="m")), y=("y", y, dict(units="m")),
                    clim_year=np.arange(2000, 2003)),
        attrs=dict(glacier_name="Tiny", crs="EPSG:32632"),
    )
    return ds.assign(**overrides)


def write(tmp_path, ds: xr.Dataset, name: str = "broken.nc"):
    path = tmp_path / name
    ds.to_netcdf(path)
    return path


def expect_error(path, *words):
    """Loading ``path`` raises InputDataError whose message has the file name and ``words``."""
    with pytest.raises(InputDataError) as info:
        build_domain("netcdf", path=str(path))
    message = str(info.value)
    for word in (path.name, *words):
        assert word in message, f"{word!r} not in: {message}"
    assert "Fix:" in message or "Check" in message
    return message


def test_the_valid_template_loads(tmp_path):
    d = build_domain("netcdf", path=str(write(tmp_path, make_dataset(), "tiny.nc")))
    assert d.name == "Tiny" and d.grid.shape == (NY, NX)
    assert d.attrs["initial_thickness"] == "estimate"
    assert d.temperature == pytest.approx(-5.0)


def test_missing_surface(tmp_path):
    msg = expect_error(write(tmp_path, make_dataset().drop_vars("surface")), "'surface'",
                       "missing")
    assert "mask" in msg and "thickness_obs" in msg  # lists what the file has


def test_nan_in_surface(tmp_path):
    ds = make_dataset()
    ds["surface"][2, 4] = np.nan
    ds["surface"][5, 0] = np.nan
    expect_error(write(tmp_path, ds), "'surface'", "2 cell(s)", "x = 500200.0 m",
                 "y = 5000100.0 m", "finite everywhere")


def test_mismatched_shapes(tmp_path):
    path = tmp_path / "shapes.nc"
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("y", NY)
        nc.createDimension("x", NX)
        nc.createDimension("x_mask", NX + 1)
        nc.createVariable("x", "f8", ("x",))[:] = DX * np.arange(NX)
        nc.createVariable("y", "f8", ("y",))[:] = DX * np.arange(NY)
        nc.createVariable("surface", "f4", ("y", "x"))[:] = np.full((NY, NX), 2500.0)
        nc.createVariable("mask", "i1", ("y", "x_mask"))[:] = np.ones((NY, NX + 1))
    expect_error(path, "'mask'", f"shape ({NY}, {NX + 1})", f"({NY}, {NX})", "('y', 'x')")


def test_transposed_variable(tmp_path):
    ds = make_dataset()
    ds["smb"] = ds["smb"].transpose("x", "y")
    expect_error(write(tmp_path, ds), "'smb'", "transpose")


def test_non_uniform_x(tmp_path):
    ds = make_dataset()
    x = ds["x"].values.copy()
    x[4:] += 10.0
    expect_error(write(tmp_path, ds.assign_coords(x=("x", x, dict(units="m")))), "'x'",
                 "not uniformly spaced", "60")


def test_descending_y(tmp_path):
    ds = make_dataset()
    ds = ds.assign_coords(y=("y", ds["y"].values[::-1], dict(units="m")))
    expect_error(write(tmp_path, ds), "'y'", "strictly ascending", "descending", "sortby")


def test_dx_differs_from_dy(tmp_path):
    ds = make_dataset()
    y = ds["y"].values[0] + 2 * DX * np.arange(NY)
    expect_error(write(tmp_path, ds.assign_coords(y=("y", y, dict(units="m")))),
                 "x (50 m)", "y (100 m)", "square")


def test_coordinates_in_degrees(tmp_path):
    ds = make_dataset()
    ds["x"].attrs["units"] = "degrees_east"
    expect_error(write(tmp_path, ds), "'x'", "degrees_east", "metres")


def test_negative_thickness(tmp_path):
    H = np.where(make_dataset()["mask"] == 1, 50.0, np.nan)
    H[3, 2] = -5.0
    expect_error(write(tmp_path, make_dataset(thickness=(("y", "x"), H))), "'thickness'",
                 "negative", "-5")


def test_nan_bed_inside_mask(tmp_path):
    ds = make_dataset()
    bed = ds["surface"].values - 40.0
    bed[2, 3] = np.nan
    expect_error(write(tmp_path, ds.assign(bed=(("y", "x"), bed))), "'bed'", "inside the glacier")


def test_mask_values_2(tmp_path):
    ds = make_dataset()
    ds["mask"][2, 2] = 2
    expect_error(write(tmp_path, ds), "'mask'", "0", "1", "found 2")


def test_observations_outside_the_mask(tmp_path):
    ds = make_dataset()
    ds["thickness_obs"][0, 6] = 30.0  # two cells from the glacier
    expect_error(write(tmp_path, ds), "'thickness_obs'", "outside the glacier mask",
                 "x = 500300.0 m")


def test_observation_next_to_the_mask_is_accepted(tmp_path):
    ds = make_dataset()
    ds["thickness_obs"][0, 0] = 10.0  # diagonal neighbour of the glacier: a margin cell
    d = build_domain("netcdf", path=str(write(tmp_path, ds)))
    assert d.thickness_obs_count.sum() == 3


@pytest.mark.parametrize("variable, value, words", [
    ("surface", 12_000.0, ("'surface'", "implausible", "12000")),
    ("smb", -2500.0, ("'smb'", "m w.e. a-1", "1000")),
    ("thickness_obs", 6000.0, ("'thickness_obs'", "implausible")),
])
def test_absurd_values(tmp_path, variable, value, words):
    ds = make_dataset()
    ds[variable][2, 2] = value
    expect_error(write(tmp_path, ds), *words)


def test_velocity_observations(tmp_path):
    speed = np.full((NY, NX), np.nan)
    speed[2, 2] = 12.0
    ds = make_dataset(velocity_obs=(("y", "x"), speed, dict(units="m a-1")))
    d = build_domain("netcdf", path=str(write(tmp_path, ds, "speed.nc")))
    assert d.velocity_obs[2, 2] == 12.0 and np.isnan(d.velocity_obs).sum() == NY * NX - 1
    speed[3, 3] = -5.0
    ds = make_dataset(velocity_obs=(("y", "x"), speed, dict(units="m a-1")))
    expect_error(write(tmp_path, ds), "'velocity_obs'", "implausible")


def test_temperature_in_kelvin(tmp_path):
    ds = make_dataset()
    ds["clim_temp_annual"] = ds["clim_temp_annual"] + 273.15
    expect_error(write(tmp_path, ds), "'clim_temp_annual'", "degC", "kelvin")


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.nc"
    with pytest.raises(InputDataError, match=r"nowhere\.nc.*does not exist"):
        build_domain("netcdf", path=str(path))


def test_not_netcdf(tmp_path):
    path = tmp_path / "notes.nc"
    path.write_text("this is not a NetCDF file\n")
    with pytest.raises(InputDataError, match=r"notes\.nc.*could not be opened as NetCDF"):
        read_glacier_file(path)


def test_netcdf_without_path():
    with pytest.raises(ConfigError, match=r"glacier=netcdf needs glacier\.path=FILE"):
        build_domain("netcdf")


def test_unknown_option_lists_valid_ones():
    with pytest.raises(ConfigError) as info:
        build_domain("south_glacier", dxx=1)
    message = str(info.value)
    assert "dxx" in message
    for key in ("dx", "initial", "smb_gradient", "basal_stress", "t_end", "save_every"):
        assert key in message


# --------------------------------------------------------------------------------------------
# Units are read and converted, or refused (glacier.io.units)


def _domain(tmp_path, ds, name):
    return build_domain("netcdf", path=str(write(tmp_path, ds, name)))


def test_surface_in_km_is_converted(tmp_path):
    ds = make_dataset()
    ref = _domain(tmp_path, ds, "m.nc")
    km = ds.assign(surface=(("y", "x"), ds["surface"].values / 1000.0, dict(units="km")))
    d = _domain(tmp_path, km, "km.nc")
    np.testing.assert_allclose(d.bed + d.thickness, ref.bed + ref.thickness, rtol=1e-12)


def test_coordinates_in_km_are_converted_and_mislabelled_ones_refused(tmp_path):
    ds = make_dataset()
    km = ds.assign_coords(x=("x", ds["x"].values / 1000.0, dict(units="km")),
                          y=("y", ds["y"].values / 1000.0, dict(units="km")))
    assert _domain(tmp_path, km, "km.nc").grid.dx == pytest.approx(DX)
    km["x"].attrs["units"] = km["y"].attrs["units"] = "m"
    expect_error(write(tmp_path, km), "'x'", "grid spacing is 0.05 m", "units")


@pytest.mark.parametrize("units, scale", [
    ("kg m-2 s-1", 1000.0 / (365.25 * 86400.0)), ("mm w.e. a-1", 1000.0),
    ("kg m-2 a-1", 1000.0), ("m w.e./yr", 1.0)])
def test_mass_balance_units_are_converted(tmp_path, units, scale):
    ds = make_dataset()
    ref = _domain(tmp_path, ds, "ref.nc")
    conv = ds.assign(smb=(("y", "x"), ds["smb"].values * scale, dict(units=units)))
    d = _domain(tmp_path, conv, "conv.nc")
    S = ref.bed + ref.thickness
    np.testing.assert_allclose(np.asarray(d.smb(S, 0.0)), np.asarray(ref.smb(S, 0.0)),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("variable, units", [
    ("smb", "m a-1"),             # ice or water equivalent? refused, not guessed
    ("smb", "W m-2"), ("surface", "degrees"), ("thickness_obs", "s")])
def test_unconvertible_units_are_refused(tmp_path, variable, units):
    ds = make_dataset()
    ds[variable].attrs["units"] = units
    expect_error(write(tmp_path, ds), f"'{variable}'", repr(units), "units attribute")


def test_infinite_values_are_corrupt_not_gaps(tmp_path):
    ds = make_dataset()
    bed = ds["surface"].values - 40.0
    bed[0, 6] = np.inf  # outside the mask, where NaN would be a legitimate gap
    expect_error(write(tmp_path, ds.assign(bed=(("y", "x"), bed, dict(units="m")))),
                 "'bed'", "infinite", "x = 500300.0 m", "NaN")
    ds = make_dataset()
    ds["clim_temp_annual"][1] = -np.inf
    expect_error(write(tmp_path, ds), "'clim_temp_annual'", "infinite")
    ds = make_dataset()
    ds["smb"][0, 0] = np.inf
    expect_error(write(tmp_path, ds), "'smb'", "infinite")


def test_duplicated_coordinates_name_the_right_fix(tmp_path):
    ds = make_dataset()
    x = ds["x"].values.copy()
    x[3] = x[2]
    message = expect_error(write(tmp_path, ds.assign_coords(x=("x", x, dict(units="m")))),
                           "'x'", "duplicated", "drop_duplicates")
    assert "500100.000 m" in message


def test_a_directory_as_glacier_path(tmp_path):
    with pytest.raises(InputDataError, match="is a directory, not a NetCDF file"):
        build_domain("netcdf", path=str(tmp_path))


def test_thickness_change_observations(tmp_path):
    """``dhdt`` [m a-1] is optional, converted from other speed units, NaN = unknown, and
    refused when implausible (more than 50 m a-1 either way)."""
    rate = np.full((NY, NX), np.nan)
    rate[2, 2] = -120.0
    ds = make_dataset(dhdt=(("y", "x"), rate, dict(units="cm a-1")))
    d = build_domain("netcdf", path=str(write(tmp_path, ds, "dhdt.nc")))
    assert d.dhdt[2, 2] == pytest.approx(-1.2) and np.isnan(d.dhdt).sum() == NY * NX - 1
    rate[3, 3] = -80.0
    ds = make_dataset(dhdt=(("y", "x"), rate, dict(units="m a-1")))
    expect_error(write(tmp_path, ds), "'dhdt'", "implausible")


def test_a_thickness_product_to_compare_with(tmp_path):
    """``thickness_reference`` [m] is optional (NaN = no estimate), converted from other length
    units and refused when negative; without it, a file with radar and a gridded ``thickness``
    offers the latter as the reference; without radar there is nothing to score."""
    ref = np.full((NY, NX), np.nan)
    ref[1:5, 1:5] = 7000.0  # cm
    ds = make_dataset(thickness_reference=(("y", "x"), ref, dict(units="cm")))
    d = build_domain("netcdf", path=str(write(tmp_path, ds, "ref.nc")))
    assert d.thickness_reference[2, 2] == pytest.approx(70.0)
    assert d.attrs["thickness_reference_source"] == "the file's thickness_reference"
    ref[2, 3] = -1.0
    ds = make_dataset(thickness_reference=(("y", "x"), ref, dict(units="m")))
    expect_error(write(tmp_path, ds), "'thickness_reference'", "negative")
    H = np.where(make_dataset()["mask"].values == 1, 65.0, np.nan)
    ds = make_dataset(thickness=(("y", "x"), H, dict(units="m")))
    d = build_domain("netcdf", path=str(write(tmp_path, ds, "thick.nc")))
    assert d.attrs["thickness_reference_source"] == "the file's thickness"
    assert d.thickness_reference[2, 2] == 65.0 and np.isnan(d.thickness_reference[0, 0])
    assert build_domain("netcdf", path=str(write(tmp_path, make_dataset(), "plain.nc"))
                        ).thickness_reference is None
