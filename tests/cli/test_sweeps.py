"""Sweeps (``-m``): the launchers ``hydra/launcher=joblib`` (local, parallel) and
``hydra/launcher=slurm`` (submitit), every value of a sweep checked before anything runs, and a
real two-job joblib sweep of glacier-train on a directory of glacier files
(``experiment=files``), each job in its own run directory."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess

import numpy as np
import pytest
import xarray as xr
import yaml
from _glacier_files import write_glacier  # tests/cli/_glacier_files.py
from _scripts import console_script  # tests/cli/_scripts.py
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from glacier import cli
from glacier.config import command_line

README_SWEEP = ["-m", "optimizer.lr=0.01,0.003", "network.hidden=[16,16],[32,32]",
                "hydra/launcher=joblib"]
"""The sweep of the README's section "Sweeps and many glaciers"."""


def _launcher(option: str, *overrides: str):
    with initialize_config_module(config_module="glacier.configs", version_base=None):
        cfg = compose(config_name="train", overrides=[f"hydra/launcher={option}", *overrides],
                      return_hydra_config=True)
    return cfg.hydra.launcher


def test_the_launcher_configs_compose():
    joblib = _launcher("joblib")
    assert joblib._target_ == "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert joblib.n_jobs == -1 and joblib.prefer == "processes"  # backend None: loky
    slurm = _launcher("slurm", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=1")
    assert slurm._target_ == ("hydra_plugins.hydra_submitit_launcher.submitit_launcher."
                              "SlurmLauncher")
    assert (slurm.timeout_min, slurm.cpus_per_task, slurm.mem_gb, slurm.tasks_per_node) == (
        240, 4, 16, 1)
    assert slurm.partition == "gpu" and slurm.gpus_per_node == 1 and slurm.max_num_timeout == 0
    assert slurm.submitit_folder.endswith("/.submitit/%j")  # in the sweep directory
    assert _launcher("slurm").partition is None  # the cluster's default partition
    for launcher in (joblib, slurm):  # what Hydra builds from them (nothing is submitted)
        assert type(instantiate(launcher)).__name__ in ("JoblibLauncher", "SlurmLauncher")
    with pytest.raises(Exception, match="timeout_mn"):  # the keys are checked
        _launcher("slurm", "hydra.launcher.timeout_mn=10")


def test_sweep_values_are_parsed_as_hydra_does():
    assert command_line.sweep_values("optimizer.lr=0.01,0.003") == [
        "optimizer.lr=0.01", "optimizer.lr=0.003"]
    assert command_line.sweep_values("network.hidden=[16,16],[32,32]") == [
        "network.hidden=[16,16]", "network.hidden=[32,32]"]
    assert command_line.sweep_values("seed=range(0,3)") == ["seed=0", "seed=1", "seed=2"]
    assert command_line.sweep_values("network.hidden=[16,16]") == ["network.hidden=[16,16]"]
    assert command_line.sweep_values("experiment.real=[]") == ["experiment.real=[]"]
    assert command_line.sweep_values("+x=1,2") == ["+x=1", "+x=2"]
    assert command_line.sweep_values("optimizer.lr=interval(0,1)") is None  # left to Hydra


def test_the_readme_sweep_passes_the_check():
    assert cli.check_command_line(README_SWEEP, primary="train", command="glacier-train") is None


@pytest.mark.parametrize("args, words", [
    (["optimizer.lr=0.01,-1"], "optimizer.lr=-1.0 must be a positive number"),
    (["network.hidden=[4],[0]"], "network.hidden=[0] must list positive layer widths"),
    (["optimizer.lrr=0.01,0.02"], "optimizer has no key 'lrr'"),
    (["optimizer.lr=0.01,abc"], "optimizer.lr=abc"),
    (["law=nn_A_of_T,nn_A_of_TT"], "nn_A_of_TT"),
    (["optimizer.lr=0.01,0.02", "train.epochs=5,-3"], "train.epochs=-3"),
    (["train.batch_size=4,0", "optimizer.lbfgs_steps=0"], "train.batch_size=0 must be a "
                                                           "positive number of glaciers"),
    (["train.batch_size=8,16"], "optimizer.lbfgs_steps=50 needs the whole batch"),
    (["train.batch_update=step,sgd", "train.batch_size=4", "optimizer.lbfgs_steps=0"],
     "train.batch_update"),
])
def test_a_bad_value_in_a_sweep_fails_before_any_job(tmp_path, args, words):
    sweep_dir = tmp_path / "sweep"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as e:
        cli.train(["-m", *args, "hydra/launcher=joblib", f"hydra.sweep.dir={sweep_dir}"])
    text = " ".join(err.getvalue().split())
    assert e.value.code == 2
    assert text.startswith("glacier-train: error: ") and words in text, text
    assert "(in a -m sweep, every value is checked)" in text
    assert not sweep_dir.exists()


def test_a_joblib_sweep_of_glacier_files_runs_each_job_in_its_own_directory(tmp_path):
    """Two jobs at once (joblib), each a glacier-train run of experiment=files on a directory
    of two glacier files (100 m and 200 m cells, trained on 200 m), in mini-batches of one
    glacier (train.batch_size=1)."""
    folder = tmp_path / "glaciers"
    folder.mkdir()
    write_glacier(folder / "a.nc", dhdt=-0.5, velocity=10.0)
    write_glacier(folder / "b.nc", dx=200.0, nx=8, ny=10, temperature=-12.0)
    sweep_dir = tmp_path / "sweep"
    proc = subprocess.run(
        [*console_script("glacier-train"), "-m", "experiment=files",
         f"experiment.glaciers={folder}", "experiment.years=1", "train.epochs=1",
         "optimizer.lbfgs_steps=0", "network.hidden=[4],[4,4]", "train.batch_size=1",
         "hydra/launcher=joblib",
         "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]
    hidden = []
    for job in jobs:
        for name in ("training.nc", "law.nc", "simulation.nc", "provenance.json",
                     ".hydra/config.yaml", "train.log"):
            assert (job / name).is_file(), f"{job.name}/{name}"
        record = json.loads((job / "provenance.json").read_text())
        assert record["status"] == "completed" and record["experiment"] == "files"
        hidden.append(yaml.safe_load((job / ".hydra/config.yaml").read_text())
                      ["network"]["hidden"])
        with xr.open_dataset(job / "training.nc") as ds:
            assert list(ds.glacier.values) == ["a", "b"] and ds.attrs["experiment"] == "files"
            assert ds.sizes["epoch"] == 1 and np.all(np.isfinite(ds.loss))
            # one glacier per mini-batch: two groups, one Adam step each
            assert ds.attrs["batch_size"] == 1 and ds.attrs["batch_groups"] == 2
            assert ds.attrs["batch_update"] == "step"
        with xr.open_dataset(job / "simulation.nc") as ds:
            assert "thickness_obs" in ds and "thickness_true" not in ds  # no truth: files
    assert hidden == [[4], [4, 4]]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("glacier-train: ")]
    assert len(lines) == 2 and all(line.startswith("glacier-train: files, law=nn_A_of_T: 1/1 "
                                                   "epochs, loss ") for line in lines)
    assert {line.rsplit(" -> ", 1)[1] for line in lines} == {str(job) for job in jobs}
    assert (sweep_dir / "multirun.yaml").is_file()
