"""``experiment=files``: a set of glacier files as training data (``glacier.glacier_set``).

Sets built in-process from small synthetic files (tests/cli/_glacier_files.py): directory,
glob and list forms, the observations (H0 + dhdt t on the ice, velocity_obs), and the errors
for bad input; one glacier-train run on such a directory through the console script.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
from _glacier_files import write_glacier  # tests/cli/_glacier_files.py

from glacier import cli, config
from glacier import glacier_set as gs
from glacier.errors import ConfigError


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """a.nc: 100 m cells, thinning 0.5 m a-1, speeds 10 m a-1; b.nc: 200 m cells, colder,
    no dhdt, no speeds; notes.txt: not a glacier file (ignored in a directory)."""
    d = tmp_path_factory.mktemp("glaciers")
    write_glacier(d / "a.nc", dhdt=-0.5, velocity=10.0, temperature=-5.0)
    write_glacier(d / "b.nc", dx=200.0, nx=8, ny=10, temperature=-12.0)
    (d / "notes.txt").write_text("not a glacier")
    return d


def test_directory_glob_and_list_give_the_same_set(folder):
    forms = [str(folder), str(folder / "*.nc"), [str(folder / "a.nc"), str(folder / "b.nc")],
             [str(folder / "a.nc"), str(folder / "*.nc")]]  # duplicates are taken once
    sets = [gs.build(gs.FilesOptions(glaciers=f, years=2.0)) for f in forms]
    for s in sets:
        assert s.problem.names == ("a", "b") and s.problem.grid.dx == 200.0
        assert s.paths == (str(folder / "a.nc"), str(folder / "b.nc"))
        np.testing.assert_array_equal(np.asarray(s.batch.obs), np.asarray(sets[0].batch.obs))
    s = sets[0]
    np.testing.assert_allclose(np.asarray(s.batch.temperature), [-5.0, -12.0])
    assert s.problem.times == (0.0, 2.0) and s.batch.obs.shape[:2] == (2, 1)
    assert s.truth is None and s.H_true.shape == (2, 2, *s.batch.H0.shape[1:])


def test_observations_are_the_thickness_plus_dhdt_on_the_ice(folder):
    s = gs.build(gs.FilesOptions(glaciers=str(folder), years=4.0, obs_every=2.0))
    H0, obs = np.asarray(s.batch.H0), np.asarray(s.batch.obs)
    assert obs.shape[1] == 2  # t = 2 and 4
    for g, rate in ((0, -0.5), (1, 0.0)):
        ice = H0[g] > 0
        seen = np.isfinite(obs[g, -1])
        assert np.array_equal(seen, ice)  # observed on the file's ice, NaN elsewhere
        for k, t in enumerate((2.0, 4.0)):
            np.testing.assert_allclose(obs[g, k][ice], np.maximum(H0[g][ice] + rate * t, 0))
    v = np.asarray(s.batch.vel_obs)
    assert np.nanmax(v[0]) == pytest.approx(10.0) and np.all(np.isnan(v[1]))  # b has none
    # experiment.dhdt fills files without dhdt; null leaves their cells unobserved
    fill = gs.build(gs.FilesOptions(glaciers=str(folder), years=2.0, dhdt=1.0))
    ice = H0[1] > 0
    np.testing.assert_allclose(np.asarray(fill.batch.obs)[1, 0][ice], H0[1][ice] + 2.0)
    none = gs.build(gs.FilesOptions(glaciers=str(folder), years=2.0, dhdt=None))
    assert np.all(np.isnan(np.asarray(none.batch.obs)[1]))
    assert np.isfinite(np.asarray(none.batch.obs)[0]).any()


def test_padding_for_devices_and_unique_names(tmp_path):
    write_glacier(tmp_path / "one.nc", name="same")
    write_glacier(tmp_path / "two.nc", name="same", nx=10)
    s = gs.build(gs.FilesOptions(glaciers=str(tmp_path), years=1.0), devices=3)
    assert s.problem.names == ("one", "two")  # the glacier_name twice: the file names
    assert s.batch.size == 3 and list(np.asarray(s.batch.weight)) == [1.0, 1.0, 0.0]
    assert s.batch.obs.shape[0] == 3


def _error(tmp_path, glaciers, **options) -> str:
    with pytest.raises(ConfigError) as e:
        gs.build(gs.FilesOptions(glaciers=glaciers, **options))
    return " ".join(str(e.value).split())


def test_bad_sets_are_refused_naming_the_file(tmp_path, folder):
    assert "matches no file" in _error(tmp_path, str(tmp_path / "*.nc"))
    assert "holds no *.nc file" in _error(tmp_path, str(tmp_path))
    missing = str(tmp_path / "missing.nc")
    assert f"{missing!r} does not exist" in _error(tmp_path, [str(folder / "a.nc"), missing])
    assert "lists no glacier files" in _error(tmp_path, [])
    bad = {"no_thickness.nc": dict(drop=("thickness",)), "no_smb.nc": dict(drop=("smb",)),
           "no_climate.nc": dict(temperature=None)}
    for name, kwargs in bad.items():
        write_glacier(tmp_path / name, **kwargs)
    text = _error(tmp_path, [str(folder / "a.nc"), str(tmp_path / "no_thickness.nc")])
    assert "no_thickness.nc has no thickness(y, x) or bed(y, x)" in text
    assert "no_smb.nc has neither smb(y, x) nor mb_profile" in _error(
        tmp_path, str(tmp_path / "no_smb.nc"))
    text = _error(tmp_path, str(tmp_path / "no_climate.nc"))
    assert "no_climate.nc has no clim_temp_annual" in text and "experiment.temperature" in text
    s = gs.build(gs.FilesOptions(glaciers=str(tmp_path / "no_climate.nc"), temperature=-3.0))
    assert float(s.batch.temperature[0]) == -3.0
    (tmp_path / "text.nc").write_text("not NetCDF")
    text = _error(tmp_path, [str(folder / "a.nc"), str(tmp_path / "text.nc")])
    assert "file 2 of 2" in text and "text.nc" in text and "NetCDF" in text
    text = _error(tmp_path, str(folder), dx=150.0)
    assert "a.nc has cells of 100 m" in text and "experiment.dx=150" in text
    with pytest.raises(ConfigError, match="velocity_obs"):
        gs.build(gs.FilesOptions(glaciers=str(folder / "b.nc")), velocity=True)


def _rejected(*args: str) -> str:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as e:
        cli.train(list(args))
    assert e.value.code == 2
    return " ".join(err.getvalue().split())


def test_the_command_line_check_reads_the_files(tmp_path, folder):
    ok = config.check_overrides(["experiment=files", f"experiment.glaciers={folder}"],
                                primary="train", command="glacier-train")
    assert ok is None
    listed = config.check_overrides(
        ["experiment=files", f"experiment.glaciers=[{folder / 'a.nc'},{folder / 'b.nc'}]"],
        primary="train", command="glacier-train")
    assert listed is None
    run_dir = tmp_path / "run"
    text = _rejected("experiment=files", f"experiment.glaciers={tmp_path / 'none' / '*.nc'}",
                     f"hydra.run.dir={run_dir}")
    assert text.startswith("glacier-train: error: experiment.glaciers:") and "matches no" in text
    assert not run_dir.exists()
    text = _rejected("experiment=files")
    assert "experiment.glaciers has no value and must be set for experiment=files" in text
    text = _rejected("experiment=files", f"experiment.glaciers={folder / 'b.nc'}",
                     "loss.velocity=1")
    assert "none of the files of experiment.glaciers has velocity_obs" in text
