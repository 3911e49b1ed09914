"""glacier-invert end to end on a glacier file with observations but no bed or gridded
thickness (the twin valley written in data/README.md's conventions), and its bad inputs.

Runs that reach the Hydra job go through the console script in subprocesses (see
test_train_cli.py); command lines rejected before Hydra runs go through ``cli.invert``.
"""

from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from _scripts import console_script  # tests/cli/_scripts.py

from glacier import cli, experiments

FAST = ["invert.iterations=6", "invert.A_warmup=3", "invert.relax_years=2",
        "invert.cv_folds=2", "invert.cv_block=600"]


def glacier_invert(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*console_script("glacier-invert"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def twin_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "twin.nc"
    twin = experiments.twin_inversion()
    ds = twin.dataset()
    # an independent product to compare with: the truth 10 % too thick, none on the west half
    ref = np.where(twin.domain.mask > 0, 1.1 * twin.thickness_true, np.nan)
    ref[:, : ref.shape[1] // 2] = np.nan
    ds["thickness_reference"] = (("y", "x"), ref, dict(units="m", long_name="a product"))
    ds.to_netcdf(path)
    return path


@pytest.fixture(scope="module")
def run(twin_file, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("invert")
    out = cwd / "run"
    proc = glacier_invert("glacier=netcdf", f"glacier.path={twin_file}", *FAST,
                          "invert.sliding=field", f"hydra.run.dir={out}", cwd=cwd)
    return proc, out


def test_writes_inversion_nc_as_the_contract_says(run, twin_file):
    proc, out = run
    assert proc.returncode == 0, proc.stderr
    assert "held-out RMSE" in proc.stdout and "baseline" in proc.stdout
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_dataset(out / "inversion.nc")
    with ds, xr.open_dataset(twin_file) as src:
        for name in ("thickness", "bed", "thickness_std", "thickness_obs", "residual"):
            assert ds[name].dims == ("y", "x") and ds[name].attrs["units"] == "m", name
        assert ds["A"].ndim == 0 and float(ds["A"]) > 0
        # invert.sliding=field: the sliding field, non-negative, none outside the glacier
        assert ds["fs"].dims == ("y", "x") and ds["fs"].attrs["units"] == "Pa-3 m2 a-1"
        assert ds["fs"].values.min() >= 0 and "sliding" in proc.stdout
        assert 0 <= ds.attrs["sliding_fraction"] <= 1
        for key in ("cv_rmse", "cv_bias", "baseline_cv_rmse", "cv_within_spread", "config",
                    "warnings", "A_prior", "A_prior_source", "balance_band_explained",
                    "balance_flux_ratio", "balance_contour", "balance_flux"):
            assert key in ds.attrs, key
        assert ds.attrs["A_prior_source"].startswith("the default of glacier=netcdf")
        assert ds.attrs["compile_time_s"] > 0 and ds.attrs["programs_compiled"] >= 1
        assert "compiling" in proc.stdout
        assert np.isfinite(ds.attrs["balance_flux_ratio"]) and ds.attrs["balance_flux"] > 0
        assert 0 < ds.attrs["cv_rmse"] < ds.attrs["baseline_cv_rmse"]
        # the file's product scored on the held-out cells where it has values
        ref, obs = src["thickness_reference"].values, src["thickness_obs"].values
        on = np.isfinite(ref) & np.isfinite(obs)
        assert ds.attrs["reference_cells"] == on.sum() > 0
        assert ds.attrs["reference_cv_rmse"] == pytest.approx(
            np.sqrt(np.mean((ref - obs)[on] ** 2)))
        assert ds.attrs["reference_source"] == "the file's thickness_reference"
        held = ds["cv_prediction"].values
        assert ds.attrs["cv_rmse_on_reference_cells"] == pytest.approx(
            np.sqrt(np.mean((held - obs)[on] ** 2)))
        assert "reference (the file's thickness_reference)" in proc.stdout
        H = ds["thickness"].values
        mask = src["mask"].values > 0
        assert H.min() >= 0 and np.all(H[~mask] == 0)
        np.testing.assert_allclose(ds["bed"].values, src["surface"].values - H)
        seen = np.isfinite(src["thickness_obs"].values)
        np.testing.assert_array_equal(np.isfinite(ds["residual"].values), seen)
        np.testing.assert_allclose(ds["residual"].values[seen],
                                   H[seen] - src["thickness_obs"].values[seen])
        assert np.all(ds["cv_fold"].values[seen] >= 0)
        assert np.all(np.isfinite(ds["cv_prediction"].values[seen]))
        assert ds["cost_total"].dims == ("iteration",) and ds.sizes["iteration"] == 9
        assert {"cost_obs", "cost_surface", "cost_smooth_thickness",
                "cost_smooth_sliding"} <= set(ds.data_vars)
        assert "relax_years: 2.0" in ds.attrs["config"]
    assert (out / "inversion.png").stat().st_size > 10_000
    record = json.loads((out / "provenance.json").read_text())
    assert record["seed"] == 0 and record["cv_rmse"] == pytest.approx(
        xr.open_dataset(out / "inversion.nc").attrs["cv_rmse"])


def test_rerun_from_saved_config_is_identical(run, tmp_path):
    _, out = run
    again = tmp_path / "again"
    proc = glacier_invert(f"--config-path={out / '.hydra'}", "--config-name=config",
                          f"hydra.run.dir={again}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with xr.open_dataset(out / "inversion.nc") as a, xr.open_dataset(
            again / "inversion.nc") as b:
        np.testing.assert_array_equal(a["thickness"].values, b["thickness"].values)
        assert a.attrs["cv_rmse"] == b.attrs["cv_rmse"]


def edit(twin_file, tmp_path, name, change):
    with xr.open_dataset(twin_file) as ds:
        ds = change(ds.load())
    path = tmp_path / name
    ds.to_netcdf(path)
    return path


def far_outside(ds):
    obs = ds["thickness_obs"].values.copy()
    mask = ds["mask"].values
    j, i = np.argwhere(mask == 0)[-1]  # a corner far from the ice
    obs[j, i] = 50.0
    return ds.assign(thickness_obs=(("y", "x"), obs, ds["thickness_obs"].attrs))


def all_nan(ds):
    return ds.assign(thickness_obs=ds["thickness_obs"] * np.nan,
                     thickness_obs_count=ds["thickness_obs_count"] * 0)


def negative(ds):
    obs = ds["thickness_obs"].values.copy()
    obs[np.isfinite(obs).nonzero()[0][0], np.isfinite(obs).nonzero()[1][0]] = -20.0
    return ds.assign(thickness_obs=(("y", "x"), obs, ds["thickness_obs"].attrs))


def mismatched(ds):
    obs = ds["thickness_obs"].values[:-1, :]
    return ds.drop_vars("thickness_obs").assign(
        thickness_obs=(("y2", "x"), obs, dict(units="m")))


@pytest.mark.parametrize("name,change,words", [
    ("outside.nc", far_outside, ["thickness_obs", "mask"]),
    ("allnan.nc", all_nan, ["thickness_obs", "all NaN"]),
    ("negative.nc", negative, ["thickness_obs"]),
    ("mismatch.nc", mismatched, ["thickness_obs"]),
])
def test_bad_input_fails_cleanly(twin_file, tmp_path, name, change, words):
    path = edit(twin_file, tmp_path, name, change)
    out = tmp_path / "run"
    proc = glacier_invert("glacier=netcdf", f"glacier.path={path}", *FAST,
                          f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    err = " ".join(proc.stderr.split())
    assert err.startswith("glacier-invert: error:")
    for word in words:
        assert word in err, (word, err)
    assert not (out / "inversion.nc").exists()
    assert not list(out.glob("*.nc")) and not list(out.glob(".*.tmp"))


@pytest.mark.parametrize("override,words", [
    ("invert.itrations=5", ["invert.itrations", "Did you mean invert.iterations"]),
    ("invert.A=fields", ["invert.A", "scalar"]),
    ("invert.cv_folds=1", ["cv_folds", "at least 2"]),
    ("invert.obs_error=-1", ["obs_error", "positive"]),
    ("invert.A=law law=cuffey_paterson", ["cuffey_paterson", "no parameters"]),
])
def test_bad_config_fails_before_running(override, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        cli.invert([*override.split(), f"hydra.run.dir={tmp_path / 'run'}"])
    assert e.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    for word in words:
        assert word in err, (word, err)
    assert not (tmp_path / "run").exists()


def test_glacier_without_observations_is_refused(tmp_path):
    out = tmp_path / "run"
    proc = glacier_invert("glacier=hintereisferner", f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 2 and "thickness_obs is all NaN" in " ".join(proc.stderr.split())
    assert not (out / "inversion.nc").exists()


def test_invert_yaml_matches_the_schema():
    import dataclasses
    import importlib.resources

    import hydra
    import yaml

    from glacier import config
    from glacier import invert as iv

    text = (importlib.resources.files("glacier.configs") / "invert.yaml").read_text()
    assert "invert" not in yaml.safe_load(text)  # no copy: the schema is InvertOptions
    with hydra.initialize_config_module(config_module="glacier.configs", version_base=None):
        cfg = config.typed(hydra.compose(config_name="invert"), "invert")
    assert config.build.invert_options(cfg) == iv.InvertOptions()
    # scheme and dt of the relaxation run are solver.scheme and solver.dt.
    assert {f.name for f in dataclasses.fields(iv.InvertOptions)} == set(cfg.invert) | {
        "scheme", "dt"}


@pytest.mark.parametrize("overrides, source", [
    ([], "Cuffey & Paterson (2010) at the glacier's -8.24 degC"),
    (["physics.A=1e-17"], "physics.A"),
])
def test_the_prior_of_A_is_cuffey_paterson_at_the_glacier_temperature(overrides, source):
    """Without physics.A, A's prior (and start) on a glacier with a climate series is Cuffey
    & Paterson's at its mean temperature (South Glacier: -8.24 degC, 1.7e-17 Pa-3 a-1, not
    the temperate 7.6e-17); a physics.A the user sets is kept. The source is recorded."""
    from hydra import compose, initialize_config_module

    from glacier.config import build, checks
    from glacier.laws import cuffey_paterson_A

    with initialize_config_module(config_module="glacier.configs", version_base=None):
        cfg = compose(config_name="invert", overrides=["glacier=south_glacier", *overrides])
    job = build.invert_job(checks.typed_checked(cfg, "invert"))
    expected = 1e-17 if overrides else float(cuffey_paterson_A(-8.24))
    assert job.physics.A == pytest.approx(expected, rel=1e-3)
    assert job.A_prior_source.startswith(source.split(" at ")[0])
    import yaml

    assert yaml.safe_load(job.config_yaml)["physics"]["A"] == pytest.approx(job.physics.A)
