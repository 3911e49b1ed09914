"""Real-glacier domains (Hintereisferner, South Glacier) and the ``netcdf`` loader."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import xarray as xr

from glacier.constants import GRAVITY
from glacier.domains import build_domain, options
from glacier.domains.real import (
    LAPSE_RATE,
    estimate_thickness,
    fill_smb,
    fit_smb_gradient,
    mean_temperature,
    smooth_surface,
)
from glacier.errors import ConfigError
from glacier.io.readers import data_path, read_glacier_file

# name: (shape, glacier area km^2 from data/README.md)
BUNDLED = {"south_glacier": ((120, 99), 5.34), "hintereisferner": ((97, 140), 8.04)}


@pytest.fixture(scope="module")
def south():
    return build_domain("south_glacier")


@pytest.fixture(scope="module")
def hef():
    return build_domain("hintereisferner")


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_glaciers_build_with_sane_fields(name):
    shape, area_km2 = BUNDLED[name]
    d = build_domain(name)
    assert d.grid.shape == shape and d.grid.dx == 50.0
    np.testing.assert_allclose(d.grid.x[0], read_glacier_file(data_path(f"{name}.nc"))["x"][0])
    area = (d.mask == 1).sum() * d.grid.cell_area / 1e6
    assert area == pytest.approx(area_km2, rel=0.02)
    for field in (d.bed, d.thickness, d.surface, d.mask, d.thickness_obs_count):
        assert field.shape == shape and np.all(np.isfinite(field))
    assert np.all(d.thickness >= 0)
    assert np.all(d.thickness[d.mask == 0] == 0)
    assert 20.0 < d.thickness[d.mask == 1].mean() < 150.0 and d.thickness.max() < 200.0
    b = np.asarray(d.smb(d.surface, 0.0))
    assert b.shape == shape and np.all(np.isfinite(b)) and -8.0 < b.min() < b.max() < 3.0
    assert np.all(b[d.mask == 0] <= 0.0)  # no ice grows outside the outline
    assert -20.0 < d.temperature < 5.0
    assert d.physics.n == 3.0 and d.physics.rho == 900.0
    assert d.solver == dict(t_end=100.0, save_every=10.0, max_dt=0.1)
    assert d.attrs["rgi60_id"].startswith("RGI60-") and d.attrs["crs"].startswith("EPSG:")
    assert "license" in d.attrs and d.attrs["input_file"].endswith(f"{name}.nc")
    for value in d.attrs.values():
        assert isinstance(value, str | int | float)


def test_south_glacier_observations_and_estimate(south):
    assert south.thickness_obs_count.sum() == 9619
    observed = np.isfinite(south.thickness_obs)
    assert observed.sum() == 900
    assert np.all(south.thickness_obs_count[~observed] == 0)
    assert south.attrs["initial_thickness"] == "estimate"
    # the perfect-plasticity estimate is within ~10 m of the radar mean (74 m) on observed cells
    assert south.thickness[observed].mean() == pytest.approx(
        np.nanmean(south.thickness_obs), abs=15.0)
    # no clim_reference_elevation_m: the CRU mean is used as is
    assert south.temperature == pytest.approx(-8.24, abs=0.01)


def test_hintereisferner_observed_thickness_and_fitted_gradient(hef):
    raw = read_glacier_file(data_path("hintereisferner.nc"))
    assert hef.attrs["initial_thickness"] == "observed"
    assert hef.thickness.max() == pytest.approx(190.3, abs=0.1)
    np.testing.assert_allclose(hef.surface, raw["surface"])  # bed = surface - H
    assert np.all(np.isnan(hef.thickness_obs)) and np.all(hef.thickness_obs_count == 0)
    # smb inside the mask is the file's, in ice equivalent (rho = 900)
    inside = hef.mask == 1
    np.testing.assert_allclose(np.asarray(hef.smb.base)[inside],
                               raw["smb"][inside] * 1000.0 / 900.0, rtol=1e-12)
    # mean profile: about 5 mm w.e. per m over the glacier's elevations
    assert hef.smb.gradient == pytest.approx(5.0e-3 * 1000.0 / 900.0, rel=0.1)
    S_mean = raw["surface"][inside].mean()
    expected = raw["clim_temp_annual"].mean() + LAPSE_RATE * (S_mean - 3160.0)
    assert hef.temperature == pytest.approx(expected)


def test_elevation_feedback_changes_balance(hef):
    b0 = np.asarray(hef.smb(hef.surface))
    b1 = np.asarray(hef.smb(hef.surface + 10.0))
    np.testing.assert_allclose(b1 - b0, 10.0 * hef.smb.gradient, rtol=1e-5, atol=1e-6)
    flat = build_domain("hintereisferner", smb_gradient=0.0)
    np.testing.assert_allclose(np.asarray(flat.smb(flat.surface + 10.0)),
                               np.asarray(flat.smb(flat.surface)))


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_resampling_to_100m_halves_the_shape(name):
    (ny, nx), area_km2 = BUNDLED[name]
    d = build_domain(name, dx=100.0)
    native = build_domain(name)
    assert d.grid.shape == (ny // 2, nx // 2) and d.grid.dx == 100.0
    assert d.grid.x0 == pytest.approx(native.grid.x0 + 25.0)
    area = (d.mask == 1).sum() * d.grid.cell_area / 1e6
    assert area == pytest.approx(area_km2, rel=0.05)
    assert d.thickness_obs_count.sum() == native.thickness_obs_count.sum()
    if d.attrs["initial_thickness"] == "observed":  # block means conserve the volume
        assert d.thickness.sum() * 1e4 == pytest.approx(native.thickness.sum() * 2500.0)


def test_dx_that_is_not_a_multiple_is_refused():
    with pytest.raises(ConfigError, match=r"glacier\.dx=75.*50, 100, 150"):
        build_domain("south_glacier", dx=75.0)


def test_netcdf_copy_gives_the_same_domain(tmp_path, south):
    copy = tmp_path / "copy.nc"
    shutil.copy(data_path("south_glacier.nc"), copy)
    d = build_domain("netcdf", path=str(copy))
    assert d.grid == south.grid
    for field in ("bed", "thickness", "mask", "thickness_obs", "thickness_obs_count"):
        np.testing.assert_array_equal(getattr(d, field), getattr(south, field))
    np.testing.assert_array_equal(np.asarray(d.smb.base), np.asarray(south.smb.base))
    assert d.temperature == south.temperature
    assert d.name == "South Glacier (Yukon)" and d.attrs["input_file"] == str(copy)
    assert set(options("netcdf")) == set(options("south_glacier")) | {"path"}


def test_file_with_observations_but_no_thickness_uses_the_estimate(tmp_path):
    with xr.open_dataset(data_path("hintereisferner.nc")) as ds:
        ds = ds.load()
    obs = ds["thickness"].where(ds["thickness"] > 100.0)  # pseudo-observations on thick cells
    ds = ds.drop_vars(["thickness", "bed"]).assign(thickness_obs=obs)
    path = tmp_path / "hef_obs_only.nc"
    ds.to_netcdf(path)
    d = build_domain("netcdf", path=str(path))
    assert d.attrs["initial_thickness"] == "estimate"
    assert np.isfinite(d.thickness_obs).sum() == int(obs.notnull().sum())
    assert d.thickness_obs_count.sum() == np.isfinite(d.thickness_obs).sum()
    assert np.all(d.thickness[d.mask == 0] == 0) and d.thickness.max() > 100.0
    with pytest.raises(ConfigError, match="initial=observed needs a thickness or bed"):
        build_domain("netcdf", path=str(path), initial="observed")


def test_initial_zero_and_invalid_choice(south):
    d = build_domain("south_glacier", initial="zero")
    assert np.all(d.thickness == 0) and np.array_equal(d.bed, south.surface)
    with pytest.raises(ConfigError, match="auto, observed, zero, estimate"):
        build_domain("south_glacier", initial="guess")


def test_estimate_on_a_plane():
    ny, nx, dx, slope = 20, 30, 50.0, 0.1
    X = np.arange(nx) * dx
    S = 3000.0 - slope * np.broadcast_to(X, (ny, nx))
    mask = np.zeros((ny, nx))
    mask[5:15, 5:25] = 1
    H = estimate_thickness(S, mask, dx, basal_stress=1e5, rho=900.0, g=GRAVITY)
    np.testing.assert_allclose(H[mask == 1], 1e5 / (900.0 * GRAVITY * slope), rtol=1e-10)
    assert np.all(H[mask == 0] == 0)
    flat = estimate_thickness(np.full((ny, nx), 3000.0), mask, dx, basal_stress=1e5)
    np.testing.assert_allclose(flat[mask == 1], 1e5 / (900.0 * GRAVITY * 0.03))


def test_smb_helpers():
    S = np.array([[1000.0, 2000.0, 3000.0, 4000.0]])
    smb = np.array([[np.nan, -1.0, 1.0, np.nan]])
    np.testing.assert_allclose(fill_smb(smb, S), [[-1.0, -1.0, 1.0, 1.0]])  # clipped line
    mask = np.array([[0, 1, 1, 0]])
    np.testing.assert_allclose(fill_smb(smb, S, mask), [[-1.0, -1.0, 1.0, 0.0]])  # no growth
    profile = np.array([[-2.0, 0.0, np.nan], [-4.0, np.nan, 2.0]])
    g = fit_smb_gradient(profile, np.array([2000.0, 2500.0, 3000.0]), np.linspace(2000, 3000, 11))
    assert g == pytest.approx(5e-3)
    assert fit_smb_gradient(None, None, S.ravel()) is None
    assert mean_temperature(np.array([-5.0, -7.0]), 3000.0, 2000.0) == pytest.approx(0.5)
    assert mean_temperature(None, None, 0.0) is None


def test_smoothing_the_surface_keeps_planes_and_lowers_the_roughness(south):
    """``smooth_surface`` (``invert.slope_smoothing``): a plane is unchanged, 0 m is the DEM
    itself, and 100 m halve South Glacier's cell-scale roughness (RMS of the discrete
    Laplacian over the glacier: 8.7 m -> 4.0 m)."""
    jj, ii = np.indices((30, 40))
    plane = 2000.0 + 0.1 * ii * 50.0 - 0.05 * jj * 50.0
    np.testing.assert_allclose(smooth_surface(plane, 50.0, 150.0), plane, atol=1e-9)
    np.testing.assert_array_equal(smooth_surface(plane, 50.0, 0.0), plane)
    S, glacier = south.surface, south.mask[1:-1, 1:-1] > 0

    def roughness(a):
        lap = a[1:-1, 2:] + a[1:-1, :-2] + a[2:, 1:-1] + a[:-2, 1:-1] - 4 * a[1:-1, 1:-1]
        return np.sqrt(np.mean(lap[glacier] ** 2))

    assert roughness(smooth_surface(S, south.grid.dx, 100.0)) < 0.5 * roughness(S)
