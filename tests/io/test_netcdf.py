"""simulation.nc: the writer's names, units and attributes (CONTRACT.md), atomic writing."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import xarray as xr

from glacier import simulation
from glacier import solver as slv
from glacier.domains import build_domain
from glacier.io import netcdf
from glacier.schemes import ExplicitMUSCL

CONFIG = "glacier:\n  name: halfar\n  dx: 200000.0\n"
PROVENANCE = {"glacier_version": "0.1.0", "source_commit": "abc123", "command_line":
              "glacier-simulate glacier=halfar", "timestamp_utc": "2025-01-01T00:00:00+00:00"}


@pytest.fixture(scope="module")
def result():
    domain = build_domain("halfar", dx=200e3)
    return simulation.run(domain, save_at=slv.SaveAt.every(1000.0, 500.0),
                          scheme=ExplicitMUSCL(max_dt=100.0))


@pytest.fixture(scope="module")
def written(result, tmp_path_factory):
    folder = tmp_path_factory.mktemp("nc")
    path = netcdf.write_simulation(folder / "simulation.nc", result, config_yaml=CONFIG,
                                   provenance=PROVENANCE)
    return folder, path


def open_strict(path) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_dataset(path)
        ds.load()
    return ds


def test_only_the_final_file_remains(written):
    folder, path = written
    assert path == folder / "simulation.nc"
    assert sorted(p.name for p in folder.iterdir()) == ["simulation.nc"]


def test_opens_without_warnings_and_time_stays_years(written, result):
    ds = open_strict(written[1])
    assert ds.time.dtype == np.float64  # not decoded into datetimes or timedeltas
    np.testing.assert_array_equal(ds.time.values, [0.0, 500.0, 1000.0])
    assert ds.time.attrs["units"] == "a"
    assert "start of the simulation" in ds.time.attrs["long_name"]


def test_grid_and_coordinates(written, result):
    ds = open_strict(written[1])
    assert dict(ds.sizes) == {"time": 3, "y": 13, "x": 13}
    for name, axis in (("x", "X"), ("y", "Y")):
        c = ds[name]
        assert c.dtype == np.float64 and c.attrs["units"] == "m" and c.attrs["axis"] == axis
        assert c.attrs["standard_name"] == f"projection_{name}_coordinate"
        assert np.all(np.diff(c.values) > 0)
    np.testing.assert_array_equal(ds.x.values, result.domain.grid.x)


@pytest.mark.parametrize("name, dims, units, standard_name", [
    ("thickness", ("time", "y", "x"), "m", "land_ice_thickness"),
    ("surface", ("time", "y", "x"), "m", "surface_altitude"),
    ("bed", ("y", "x"), "m", "bedrock_altitude"),
    ("velocity", ("time", "y", "x"), "m a-1", None),
    ("smb", ("time", "y", "x"), "m a-1", None),
    ("volume", ("time",), "m3", None),
    ("area", ("time",), "m2", None),
    ("smb_volume", ("time",), "m3", None),
    ("outflow_volume", ("time",), "m3", None),
    ("steps", ("time",), "1", None),
])
def test_variables(written, name, dims, units, standard_name):
    ds = open_strict(written[1])
    v = ds[name]
    assert v.dims == dims
    assert v.attrs["units"] == units
    assert v.attrs["long_name"]
    assert v.attrs.get("standard_name") == standard_name


def test_values_and_dtypes(written, result):
    ds = open_strict(written[1])
    np.testing.assert_array_equal(ds.thickness.values, result.thickness)
    np.testing.assert_array_equal(ds.volume.values, result.volume)
    np.testing.assert_array_equal(ds.steps.values, result.steps)
    assert ds.thickness.dtype == result.thickness.dtype == np.float64
    assert ds.thickness.encoding["zlib"]


def test_global_attributes(written, result):
    ds = open_strict(written[1])
    a = ds.attrs
    assert a["Conventions"] == "CF-1.8"
    assert a["config"] == CONFIG
    assert a["glacier_version"] == "0.1.0" and a["source_commit"] == "abc123"
    assert a["domain"] == "halfar"
    assert "glacier-simulate glacier=halfar" in a["history"]
    assert a["status"] == "completed"
    assert a["physics_A"] == 1e-16 and a["physics_n"] == 3.0
    assert a["reference"].startswith("Bueler")  # the domain's provenance
    assert a["halfar_t0_years"] == pytest.approx(result.domain.attrs["halfar_t0_years"])
    assert json.loads(a["provenance"]) == PROVENANCE


def test_float32_fields_stay_float32(result, tmp_path):
    domain = build_domain("halfar", dx=400e3)
    res = simulation.run(domain, save_at=slv.SaveAt((0.0, 200.0)),
                         scheme=ExplicitMUSCL(max_dt=100.0),
                         dtype="float32")
    ds = open_strict(netcdf.write_simulation(tmp_path / "s.nc", res, config_yaml="",
                                             provenance={}))
    assert ds.thickness.dtype == np.float32 and ds.bed.dtype == np.float32
    assert ds.x.dtype == ds.time.dtype == ds.volume.dtype == np.float64


def test_failed_write_leaves_nothing(result, tmp_path, monkeypatch):
    def broken(self, *args, **kwargs):
        path = args[0]
        with open(path, "wb") as f:  # a partial file, then the failure
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", broken)
    with pytest.raises(OSError, match="disk full"):
        netcdf.write_simulation(tmp_path / "simulation.nc", result, config_yaml="",
                                provenance={})
    assert list(tmp_path.iterdir()) == []
