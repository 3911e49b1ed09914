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
        assert 0 < ds.attrs["solve_wall_time_s"] <= ds.attrs["wall_time_s"]
        # the same as the library call
        ref = gl.run(domain, save_at=job.save_at, scheme=job.scheme, physics=job.physics)
        np.testing.assert_allclose(ds.thickness.values, ref.thickness, rtol=0, atol=1e-9)
    record = json.loads((tmp_path / "provenance.json").read_text())
    assert record["seed"] == 3 and record["outputs"] == ["simulation.nc"]


def test_implausible_results_are_flagged_in_the_summary_and_the_file(tmp_path, capsys):
    """Warnings (stderr, the file's ``warnings``, provenance), not errors: a Halfar dome with
    A ten thousand times too large flows at more than 20 km/a; the valley's ice reaches the
    domain edge at its head; the plausible Halfar run has none."""
    halfar = gl.build_domain("halfar", dx=100e3)
    runs = {}
    for name, domain, A, save_at, max_dt in (
            ("fast", halfar, 1e-12, gl.SaveAt.every(20.0, 10.0), 0.01),
            ("edge", gl.build_domain("synthetic_valley", nx=12, ny=16, dx=200.0), None,
             gl.SaveAt.every(2.0, 1.0), 0.1),
            ("fine", halfar, None, gl.SaveAt.every(1000.0, 500.0), 100.0)):
        physics = domain.physics if A is None else domain.physics.replace(A=A)
        job = simulate_app.SimulateJob(domain=domain, physics=physics, save_at=save_at,
                                       scheme=gl.ExplicitMUSCL(max_dt=max_dt))
        assert simulate_app.run(job, tmp_path / name) == 0
        err = " ".join(capsys.readouterr().err.split())
        with xr.open_dataset(tmp_path / name / "simulation.nc") as ds:
            runs[name] = (err, ds.attrs["warnings"], ds.attrs["status"])
        record = json.loads((tmp_path / name / "provenance.json").read_text())
        assert record["warnings"] == ([] if name == "fine" else record["warnings"])
    err, warnings, status = runs["fast"]
    assert "warning: surface speed reaches" in err and "physics.A" in err
    assert "surface speed reaches" in warnings and status == "completed"
    err, warnings, _ = runs["edge"]
    assert "warning: ice reaches the domain edge" in err and "domain edge" in warnings
    assert runs["fine"][:2] == ("", "")


def test_an_output_that_is_a_directory_is_a_config_error(tmp_path):
    from glacier.errors import ConfigError

    (tmp_path / "simulation.nc").mkdir()
    domain = gl.build_domain("halfar", dx=200e3)
    job = simulate_app.SimulateJob(domain=domain, physics=domain.physics,
                                   save_at=gl.SaveAt.every(100.0, 50.0),
                                   scheme=gl.ExplicitMUSCL(max_dt=10.0))
    with pytest.raises(ConfigError, match="simulation.nc is a directory") as info:
        simulate_app.run(job, tmp_path)
    assert info.value.exit_code == 2
    assert not (tmp_path / "provenance.json").exists()


def test_ctrl_c_in_simulate_keeps_the_saves_already_made(tmp_path, capsys, monkeypatch):
    """Ctrl-C during the third save interval: the two completed intervals are written, the
    status says interrupted, exit status 130 (as glacier-train)."""
    from glacier import simulation

    domain = gl.build_domain("synthetic_valley", nx=12, ny=16, dx=200.0)
    job = simulate_app.SimulateJob(domain=domain, physics=domain.physics,
                                   save_at=gl.SaveAt.every(40.0, 10.0),
                                   scheme=gl.ExplicitMUSCL(max_dt=0.1))
    real, calls = simulation.run, []

    def interrupted_run(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(simulation, "run", interrupted_run)
    assert simulate_app.run(job, tmp_path) == 130
    err = " ".join(capsys.readouterr().err.split())
    assert "interrupted by Ctrl-C" in err and "t = 20 a" in err
    with xr.open_dataset(tmp_path / "simulation.nc") as ds:
        assert list(ds.time.values) == [0.0, 10.0, 20.0]
        assert ds.attrs["status"].startswith("failed: interrupted by Ctrl-C")
    record = json.loads((tmp_path / "provenance.json").read_text())
    assert "interrupted" in record["status"]


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


def test_a_blow_up_names_the_place_and_the_likely_causes():
    """A law whose output turns NaN where the ice is thicker than 40 m: the run stops at the
    save before, keeps the good states, and says where the last good state flowed fastest."""
    import dataclasses

    import jax
    import jax.numpy as jnp

    domain = gl.build_domain("synthetic_valley", nx=12, ny=16, dx=200.0)
    glen = gl.glen_law(domain.physics)

    @jax.tree_util.register_static
    @dataclasses.dataclass(frozen=True)
    class Exploding:
        def diffusivity(self, H, slope2, axis):
            return jnp.where(H > 40.0, jnp.nan, glen.diffusivity(H, slope2, axis))

        def surface_speed(self, H, slope2):
            return glen.surface_speed(H, slope2)

    result = gl.run(domain, save_at=gl.SaveAt.every(200.0, 10.0), rheology=Exploding())
    assert result.failure is not None and "non-finite" in result.failure
    assert "flows fastest at x = " in result.failure and "physics.A" in result.failure
    assert np.all(np.isfinite(result.thickness)) and result.thickness.max() <= 40.0 + 1e-9
    assert 1 < len(result.times) < 21
