"""The applications run without Hydra: a job built by hand, a directory, the outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

import glacier as gl
from glacier import experiments
from glacier import invert as iv
from glacier.apps import invert as invert_app
from glacier.apps import simulate as simulate_app


def test_simulate_job_by_hand(tmp_path, capsys):
    domain = gl.build_domain("synthetic_valley", nx=12, ny=16, dx=200.0)
    job = simulate_app.SimulateJob(domain=domain, physics=domain.physics.replace(A=1e-16),
                                   save_at=gl.SaveAt.every(20.0, 10.0),
                                   scheme=gl.ExplicitMUSCL(max_dt=0.1), seed=3,
                                   config_yaml="by: hand\n", argv=("notebook",))
    assert simulate_app.run(job, tmp_path) == 0
    assert "glacier-simulate: synthetic_valley" in capsys.readouterr().out
    with xr.open_dataset(tmp_path / "simulation.nc") as ds:
        assert list(ds.time.values) == [0.0, 10.0, 20.0]
        assert ds.attrs["physics_A"] == 1e-16 and ds.attrs["config"] == "by: hand\n"
        assert ds.attrs["status"] == "completed"
        # the same as the library call
        ref = gl.run(domain, save_at=job.save_at, scheme=job.scheme, physics=job.physics)
        np.testing.assert_allclose(ds.thickness.values, ref.thickness, rtol=0, atol=1e-9)
    record = json.loads((tmp_path / "provenance.json").read_text())
    assert record["seed"] == 3 and record["outputs"] == ["simulation.nc"]


@pytest.mark.slow  # ~60 s on 2 cores; the CLI tests run the same app through Hydra
def test_invert_job_by_hand(tmp_path, capsys):
    twin = experiments.twin_inversion(nx=9, ny=13, years=50.0)
    job = invert_app.InvertJob(domain=twin.domain, physics=twin.physics,
                               options=iv.InvertOptions(iterations=2, A_warmup=1,
                                                        relax_years=1.0, cv_folds=0))
    assert invert_app.run(job, tmp_path) == 0
    assert "fit RMSE" in capsys.readouterr().out
    with xr.open_dataset(tmp_path / "inversion.nc") as ds:
        assert ds.thickness.shape == twin.domain.grid.shape
        assert np.all(ds.thickness.values >= 0)
    assert (tmp_path / "inversion.png").is_file()
