"""glacier-train end to end: outputs, bit-for-bit resuming, bad configs, config files.

Runs that reach the Hydra job go through the installed console script in subprocesses (a Hydra
job inside pytest breaks pytest's output capturing; flax's absl logging makes it worse). The
straight run and the run stopped half-way run concurrently; the resumed run follows. Command
lines that the check before Hydra rejects run in-process through ``cli.train``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import importlib.resources
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from _scripts import console_script  # tests/cli/_scripts.py

from glacier import cli, config
from glacier.config import build, schemas

TINY = ["experiment.n_valleys=2", "experiment.real=[]", "experiment.years=3",
        "experiment.spinup_years=30", "train.epochs=6", "optimizer.lbfgs_steps=2",
        "train.checkpoint_every=3",
        "network.hidden=[4]"]
CONFIGS = importlib.resources.files("glacier.configs")



def glacier_train(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*console_script("glacier-train"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(straight run, stopped run, resumed run): processes and run directories."""
    cwd = tmp_path_factory.mktemp("train")
    straight, split = cwd / "straight", cwd / "split"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        a = pool.submit(glacier_train, *TINY, f"hydra.run.dir={straight}", cwd=cwd)
        b = pool.submit(glacier_train, *TINY, "train.stop_after=3", f"hydra.run.dir={split}",
                        cwd=cwd)
        first, stopped = a.result(), b.result()
    stopped_files = {p.name for p in split.iterdir()}
    stopped_ckpts = sorted(p.name for p in (split / "checkpoints").iterdir())
    resumed = glacier_train(*TINY, "train.resume=true", f"hydra.run.dir={split}", cwd=cwd)
    return dict(first=first, straight=straight, stopped=stopped, split=split, resumed=resumed,
                stopped_files=stopped_files, stopped_ckpts=stopped_ckpts, cwd=cwd)


def test_train_writes_the_contract_outputs(runs):
    proc, run_dir = runs["first"], runs["straight"]
    assert proc.returncode == 0, proc.stderr
    for name in ("training.nc", "law.nc", "simulation.nc", "provenance.json", "loss.png",
                 "law.png", ".hydra/config.yaml", "checkpoints/latest"):
        assert (run_dir / name).exists(), name
    assert not [p for p in run_dir.rglob("*") if ".tmp" in p.name]
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("glacier-train: twin_A_of_T, law=nn_A_of_T: 8/8 epochs, loss ")
    assert "A error max " in line and " s/epoch -> " in line and line.endswith(str(run_dir))

    with xr.open_dataset(run_dir / "training.nc") as ds:
        assert ds.sizes["epoch"] == 8 and list(ds.glacier.values) == ["valley_1", "valley_2"]
        assert {"loss", "loss_glacier", "learning_rate", "wall_time", "phase"} <= set(ds)
        assert ds.loss_glacier.dims == ("epoch", "glacier")
        assert ds.wall_time.attrs["units"] == "s" and np.all(np.diff(ds.wall_time) > 0)
        assert np.all(np.isfinite(ds.loss)) and ds.learning_rate[0] == 0.003
        assert list(ds.phase.values) == ["adam"] * 6 + ["lbfgs"] * 2
        w = ds.glacier_weight
        np.testing.assert_allclose(ds.loss, (ds.loss_glacier * w).sum("glacier") / w.sum(),
                                   rtol=1e-12)
        assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["status"] == "completed"
        assert "n_valleys: 2" in ds.attrs["config"] and "max_dt: 1.0" in ds.attrs["config"]
        assert 0 <= ds.attrs["mean_rel_error"] <= ds.attrs["max_rel_error"]
        assert ds.attrs["warnings"] == ""  # the contract's attribute; nothing to report here
    with xr.open_dataset(run_dir / "law.nc") as law:
        T = law.temperature.values
        assert T[0] == -30 and T[-1] == 5 and np.allclose(np.diff(T), 0.25)
        assert law.temperature.attrs["units"] == "degC"
        assert law.A_learned.attrs["units"] == law.A_true.attrs["units"] == "Pa-3 a-1"
        assert np.all(law.A_learned > 0) and np.all(law.A_true > 0)
        np.testing.assert_array_equal(law.glacier_temperature, [-25.0, 0.0])
        assert law.attrs["sampled_T_min"] == -25.0 and law.attrs["sampled_T_max"] == 0.0
        assert "warnings" in law.attrs
    with xr.open_dataset(run_dir / "simulation.nc") as sim:
        assert sim.thickness.dims == ("glacier", "time", "y", "x")
        assert {"thickness_obs", "thickness_true", "volume", "velocity", "bed"} <= set(sim)
        np.testing.assert_array_equal(sim.time, [0.0, 1.0, 2.0, 3.0])
        assert sim.volume.dims == ("glacier", "time")
        assert sim.thickness.attrs["standard_name"] == "land_ice_thickness"
        assert np.isnan(sim.thickness_obs[:, 0]).all()
        np.testing.assert_array_equal(sim.thickness[:, 0], sim.thickness_true[:, 0])
    record = json.loads((run_dir / "provenance.json").read_text())
    assert record["status"] == "completed" and record["epochs_completed"] == 8
    assert record["seed"] == 0
    # keep the last 3 checkpoints, plus `latest`
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "epoch_000008"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "epoch_000003", "epoch_000006", "epoch_000008", "latest"]


def test_the_outputs_open_without_warnings(runs, recwarn):
    assert runs["first"].returncode == 0, runs["first"].stderr
    for name in ("training.nc", "law.nc", "simulation.nc"):
        xr.open_dataset(runs["straight"] / name).load().close()
    assert not [w for w in recwarn if "xarray" in str(w.filename) or "netCDF" in str(w.message)]


def test_stop_after_then_resume_is_bit_identical(runs):
    stopped, resumed = runs["stopped"], runs["resumed"]
    assert stopped.returncode == 0, stopped.stderr
    assert "train.resume=true" in " ".join(stopped.stderr.split())
    assert runs["stopped_ckpts"] == ["epoch_000003", "latest"]
    assert {"training.nc", "law.nc", "simulation.nc"} <= runs["stopped_files"]
    assert resumed.returncode == 0, resumed.stderr
    assert "8/8 epochs (5 this session)" in resumed.stdout

    a = runs["straight"] / "checkpoints" / "epoch_000008"
    b = runs["split"] / "checkpoints" / "epoch_000008"
    assert (a / "state.msgpack").read_bytes() == (b / "state.msgpack").read_bytes()
    with xr.open_dataset(runs["straight"] / "law.nc") as la, \
            xr.open_dataset(runs["split"] / "law.nc") as lb:
        np.testing.assert_array_equal(la.A_learned.values, lb.A_learned.values)
    with xr.open_dataset(runs["straight"] / "training.nc") as ta, \
            xr.open_dataset(runs["split"] / "training.nc") as tb:
        np.testing.assert_array_equal(ta.loss.values, tb.loss.values)
        np.testing.assert_array_equal(ta.loss_glacier.values, tb.loss_glacier.values)
        np.testing.assert_array_equal(ta.learning_rate.values, tb.learning_rate.values)
        assert np.all(np.diff(tb.wall_time) > 0)  # the clock continues across the resume
        assert tb.attrs["status"] == "completed"
    record = json.loads((runs["split"] / "provenance.json").read_text())
    assert record["resumed_from_epoch"] == 3


def test_resume_needs_the_same_config_and_a_checkpoint(runs, tmp_path):
    assert runs["first"].returncode == 0, runs["first"].stderr
    record = {p.name: p.read_bytes() for p in (runs["straight"] / ".hydra").iterdir()}
    other = glacier_train(*TINY, "optimizer.lr=0.03", "train.resume=true",
                          f"hydra.run.dir={runs['straight']}", cwd=tmp_path)
    assert other.returncode == 2
    err = " ".join(other.stderr.split())
    assert "another config: optimizer.lr (0.003 there, 0.03 now)" in err
    assert "Traceback" not in other.stderr
    # the refused resume leaves the run's record (.hydra/config.yaml, overrides.yaml) as it was
    assert {p.name: p.read_bytes() for p in (runs["straight"] / ".hydra").iterdir()} == record

    fresh = glacier_train(*TINY, "train.resume=true", f"hydra.run.dir={tmp_path / 'new'}",
                          cwd=tmp_path)
    assert fresh.returncode == 2
    assert "holds no checkpoint" in " ".join(fresh.stderr.split())
    assert not (tmp_path / "new" / "training.nc").exists()

    again = glacier_train(*TINY, f"hydra.run.dir={runs['straight']}", cwd=tmp_path)
    assert again.returncode == 2
    assert "train.resume=true to continue it" in " ".join(again.stderr.split())


def test_sigterm_saves_a_checkpoint_and_the_outputs(tmp_path):
    """SIGTERM during training: the epoch in progress finishes, a checkpoint and the outputs are
    written, exit status 143. The signal is sent once the first checkpoint exists, i.e. once
    training (and the signal handlers) has started."""
    run_dir = tmp_path / "run"
    args = [*TINY, "train.epochs=100000", "train.checkpoint_every=1", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen([*console_script("glacier-train"), *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (run_dir / "checkpoints" / "latest").exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM" in " ".join(err.split()) and "train.resume=true" in err
    with xr.open_dataset(run_dir / "training.nc") as ds:
        assert ds.attrs["status"].startswith("stopped by SIGTERM at epoch ")
        epochs = ds.sizes["epoch"]
    assert 1 <= epochs < 100000
    latest = (run_dir / "checkpoints" / "latest").read_text().strip()
    assert latest == f"epoch_{epochs:06d}"
    assert {"law.nc", "simulation.nc", "loss.png", "law.png"} <= {p.name for p in run_dir.iterdir()}


def in_process(args: list[str], monkeypatch) -> tuple[int, str]:
    """Run ``glacier-train args`` in this process (only for command lines that the check
    before Hydra rejects); (exit status, stderr as one line)."""
    monkeypatch.setattr(sys, "argv", ["glacier-train"])

    def hydra_job():
        raise AssertionError(f"the check let {args} through to the Hydra job")

    monkeypatch.setattr(cli, "_train_app", hydra_job)
    err = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            cli.train(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return code, " ".join(err.getvalue().split())


@pytest.mark.parametrize("bad, expected", [
    ("optimizer.lrr=0.1", ["optimizer has no key 'lrr'", "Did you mean optimizer.lr?",
                           "Valid keys of optimizer: lr, schedule, decay, lbfgs_steps"]),
    ("law=cuffey_paterson", ["law=cuffey_paterson has nothing to train", "law=nn_A_of_T"]),
    ("optimizer.lr=-1", ["optimizer.lr=-1", "must be a positive number"]),
    ("law=nope", ["no option 'nope' in the config group law", "constant_A", "nn_diffusivity",
                  "e.g. law=nn_A_of_T"]),
    ("law.T_mea=0", ["law=nn_A_of_T has no key 'T_mea'", "Did you mean law.T_mean?"]),
    ("network.hidden=[a]", ["network.hidden=[a]", "network.hidden is a list (each an integer)"]),
    ("optimizer.schedule=linear", ["cosine, constant, exponential"]),
    ("experiment=nope", ["no option 'nope' in the config group experiment", "twin_A_of_T"]),
    ("experiment.real=[atlantis]", ["'atlantis' is not a bundled glacier"]),
    ("train.epoch=3", ["Did you mean train.epochs?"]),
    ("solver.t_end=10", ["does not apply to glacier-train", "experiment.years"]),
    ("solver.cfll=0.1", ["Did you mean solver.cfl?"]),
])
def test_bad_config_fails_before_anything_runs(bad, expected, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    code, err = in_process([*TINY, bad, f"hydra.run.dir={run_dir}"], monkeypatch)
    assert code == 2
    assert err.startswith("glacier-train: error: ")
    for text in expected:
        assert text in err, err
    assert not run_dir.exists()


def test_bad_config_from_the_console_script(tmp_path):
    run_dir = tmp_path / "run"
    proc = glacier_train(*TINY, "law=cuffey_paterson", f"hydra.run.dir={run_dir}",
                         cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("glacier-train: error: law=cuffey_paterson has nothing")
    assert "Traceback" not in proc.stderr and not run_dir.exists()


def test_contract_experiment_option_composes(monkeypatch):
    assert config.check_overrides(["experiment=twin_A_of_T"], primary="train",
                                  command="glacier-train") is None
    for law in ("constant_A", "nn_A_of_T", "nn_diffusivity"):
        assert config.check_overrides([f"law={law}"], primary="train",
                                      command="glacier-train") is None


# --------------------------------------------------------------------------------------------
# The config files agree with their schemas.


def _defaults(schema) -> dict:
    out = {}
    for f in dataclasses.fields(schema):
        value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out[f.name] = value.value if hasattr(value, "value") else value
    return out


def test_train_yaml_matches_the_schema():
    data = yaml.safe_load((CONFIGS / "train.yaml").read_text())
    assert "train" not in data  # defaults and help: schemas.TrainLoopConfig, once
    assert _defaults(schemas.TrainLoopConfig)["epochs"] == 20
    assert data["seed"] == 0
    assert data["defaults"][0] == "train_schema"
    choices = {k: v for d in data["defaults"][1:] if isinstance(d, dict) for k, v in d.items()}
    assert choices == {"law": "nn_A_of_T", "network": "default", "optimizer": "default",
                       "loss": "default", "experiment": "twin_A_of_T", "solver": "default"}
    help_text = data["hydra"]["help"]["template"]
    for group, options in config.TRAIN_GROUP_SCHEMAS.items():
        assert group in help_text
        for option in options:
            assert option in help_text, (group, option)


def test_every_train_group_option_has_a_schema():
    for group, options in config.TRAIN_GROUP_SCHEMAS.items():
        assert config.group_options(group) == sorted(options)


def test_schema_choices_match_the_library():
    from glacier import laws, nn, train

    assert {a.value for a in schemas.Activation} == set(nn.ACTIVATIONS)
    for s in schemas.Schedule:
        train.make_schedule(s.value, 0.1, 10)
    assert build.law_bounds({"A_min": None, "A_max": None}) == laws.PRIOR_BOUNDS
    assert config.LAW_SCHEMAS["nn_A_of_T"]().T_mean == laws.NeuralAofT.T_mean


@pytest.mark.slow  # ~140 s on 2 cores; nn_D's learning: tests/integration/test_twin_diffusivity.py
def test_twin_diffusivity_writes_the_law_map_and_the_held_out_errors(tmp_path):
    """experiment=twin_diffusivity through the console script (tiny): law.nc holds D_learned,
    D_true and state_density on (thickness, slope); training.nc the held-out errors of the
    learned law and of the constant-A Glen fit; the summary line says both."""
    run_dir = tmp_path / "twin_d"
    proc = glacier_train("experiment=twin_diffusivity", "experiment.n_valleys=3",
                         "experiment.real=[]", "experiment.test_glaciers=1",
                         "experiment.years=2", "experiment.spinup_years=20", "train.epochs=2",
                         "optimizer.lbfgs_steps=1", "network.hidden=[4]",
                         f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("glacier-train: twin_diffusivity, law=nn_D: 3/3 epochs")
    assert "D error median " in line and "held-out thickness RMSE " in line
    with xr.open_dataset(run_dir / "law.nc") as law:
        assert law.D_learned.dims == law.D_true.dims == ("thickness", "slope")
        assert law.D_learned.attrs["units"] == law.D_true.attrs["units"] == "m2 a-1"
        assert law.thickness.attrs["units"] == "m" and law.slope.attrs["units"] == "1"
        assert float(law.state_density.sum()) == pytest.approx(1.0)
        assert 0 <= law.attrs["D_median_rel_error"] < 10
        assert law.attrs["test_glaciers"] == "valley_2"
    with xr.open_dataset(run_dir / "training.nc") as ds:
        for key in ("test_thickness_rmse", "test_thickness_rmse_constant_A",
                    "test_speed_rmse", "test_speed_rmse_constant_A", "constant_A_fit",
                    "A_ref"):
            assert np.isfinite(ds.attrs[key]), key
        assert ds.attrs["A_ref"] == ds.attrs["constant_A_fit"]  # the network started there
        assert list(ds.glacier.values) == ["valley_1", "valley_3"]
        assert "cfl: 0.06" in ds.attrs["config"]
    assert (run_dir / "law.png").stat().st_size > 0
