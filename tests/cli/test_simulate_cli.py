"""glacier-simulate end to end: outputs, error handling, reruns from a run directory.

Everything that reaches the Hydra job goes through the installed console script in a
subprocess (the cases that fail in the job run concurrently); command lines that the check
before Hydra rejects are run in-process through the same entry point (``cli.simulate``) to
keep the suite fast.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from _scripts import console_script  # tests/cli/_scripts.py

from glacier import cli

SMALL = ["glacier=halfar", "glacier.dx=200000", "solver.t_end=2000", "solver.save_every=500"]
CONTRACT_VARIABLES = {"thickness", "surface", "bed", "velocity", "smb", "volume", "area"}


def simulate(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*console_script("glacier-simulate"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cli")
    run_dir = cwd / "run1"
    proc = simulate(*SMALL, f"hydra.run.dir={run_dir}", cwd=cwd)
    return proc, run_dir


def test_simulate_writes_the_contract_outputs(first_run):
    proc, run_dir = first_run
    assert proc.returncode == 0, proc.stderr
    nc = run_dir / "simulation.nc"
    assert nc.is_file() and (run_dir / "provenance.json").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("glacier-simulate: halfar: ") and line.endswith(f"-> {nc}")
    assert " steps, V = " in line and " km3, mass-budget error " in line and ", wall " in line
    ds = xr.open_dataset(nc)
    assert CONTRACT_VARIABLES <= set(ds.data_vars)
    np.testing.assert_array_equal(ds.time.values, [0.0, 500.0, 1000.0, 1500.0, 2000.0])
    assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["domain"] == "halfar"
    assert "A: 1.0e-16" in ds.attrs["config"]  # the domain default actually used
    assert "glacier.dx=200000" in ds.attrs["history"]
    assert ds.attrs["source_commit"] and ds.attrs["glacier_version"]
    record = json.loads((run_dir / "provenance.json").read_text())
    assert record["status"] == "completed" and record["seed"] == 0
    assert record["steps"] == int(ds.steps.sum())
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def test_rerun_from_the_saved_config_is_bit_identical(first_run, tmp_path):
    proc, run_dir = first_run
    assert proc.returncode == 0, proc.stderr
    rerun_dir = tmp_path / "rerun"
    again = simulate(f"--config-path={run_dir / '.hydra'}", "--config-name=config",
                     f"hydra.run.dir={rerun_dir}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    a = xr.open_dataset(run_dir / "simulation.nc")
    b = xr.open_dataset(rerun_dir / "simulation.nc")
    for name in ("thickness", "velocity", "volume", "smb_volume", "outflow_volume", "steps"):
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    assert a.attrs["config"] == b.attrs["config"]
    assert ((run_dir / ".hydra" / "config.yaml").read_text()
            == (rerun_dir / ".hydra" / "config.yaml").read_text())
    assert (rerun_dir / "simulate.log").exists()


def test_typo_in_the_console_script_fails_before_any_output(tmp_path):
    run_dir = tmp_path / "run"
    proc = simulate(*SMALL, "solver.cfll=0.1", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 2
    err = " ".join(proc.stderr.split())
    assert err.startswith("glacier-simulate: error: solver.cfll=0.1")
    assert "Did you mean solver.cfl?" in err and "Valid keys of solver:" in err
    assert "Traceback" not in proc.stderr
    assert not run_dir.exists()


def in_process(args: list[str], monkeypatch) -> tuple[int, str, str]:
    """Run ``glacier-simulate args`` in this process; (exit status, stdout, stderr).

    Only for command lines that fail in the check before Hydra runs: a Hydra job run inside
    pytest with redirected output breaks pytest's capturing (Hydra's log handlers keep the
    redirected stream), so command lines that reach the job run as subprocesses.
    """
    monkeypatch.setattr(sys, "argv", ["glacier-simulate"])

    def hydra_job():
        raise AssertionError(f"the check let {args} through to the Hydra job")

    monkeypatch.setattr(cli, "_simulate_app", hydra_job)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.simulate(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return code, out.getvalue(), " ".join(err.getvalue().split())


@pytest.mark.parametrize("bad, expected", [
    ("glacier.dxx=5", ["glacier.dxx=5", "glacier=halfar has no key 'dxx'",
                       "Valid keys of glacier=halfar: name, dx, half_width, H0, R0",
                       "Did you mean glacier.dx?"]),
    ("glacier=nope", ["glacier=nope", "no option 'nope' in the config group glacier",
                      "halfar", "synthetic_valley", "e.g. glacier=synthetic_valley"]),
    ("solver.cfl=abc", ["solver.cfl=abc", "could not be converted to Float",
                        "solver.cfl is a number", "solver.cfl=0.124 (the default)"]),
    ("solver.dtype=float16", ["solver.dtype=float16", "float64, float32"]),
    ("+solver.foo=1", ["+solver.foo=1", "solver has no key 'foo'", "Valid keys of solver"]),
    ("seedd=1", ["seedd=1", "Did you mean seed?"]),
])
def test_bad_overrides_fail_at_compose_time(bad, expected, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    code, _, err = in_process([*SMALL, bad, f"hydra.run.dir={run_dir}"], monkeypatch)
    assert code == 2
    assert err.startswith("glacier-simulate: error: ")
    for text in expected:
        assert text in err
    assert not run_dir.exists()


def test_multirun_sweeps_are_checked_value_by_value(monkeypatch):
    for bad, words in ((["-m", "physics.A=1e-16,abc"], ["physics.A", "abc", "-m sweep"]),
                       (["-m", "solver.cfll=0.1,0.2"], ["cfll", "Did you mean solver.cfl"]),
                       (["--multirun", "glacier=halfar,nowhere"], ["nowhere"])):
        code, _, err = in_process([*SMALL[1:], *bad], monkeypatch)
        text = " ".join(err.split())
        assert code == 2 and "Traceback" not in err, err
        for word in words:
            assert word in text, (word, text)
    ok = cli.check_command_line(["-m", "physics.A=1e-16,2e-16", "glacier=halfar,eismint_fixed",
                                 "solver.t_end=10"], primary="simulate",
                                command="glacier-simulate")
    assert ok is None


def test_a_run_directory_that_cannot_be_created_is_refused_before_hydra(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for run_dir in (blocker, blocker / "run"):
        code, _, err = in_process([*SMALL, f"hydra.run.dir={run_dir}"], monkeypatch)
        assert code == 2 and "hydra.run.dir=" in err and "Traceback" not in err, err
        assert "file" in err or "cannot be created" in err


def test_netcdf_without_path_says_how_to_fix(tmp_path, monkeypatch):
    code, _, err = in_process(["glacier=netcdf", f"hydra.run.dir={tmp_path / 'run'}"],
                              monkeypatch)
    assert code == 2 and "glacier.path" in err and "glacier.path=..." in err
    assert not (tmp_path / "run").exists()


TASK_CASES = {
    "physics.A=-1": ["physics.A=-1", "outside the physically possible range", "Pa^-3 a^-1"],
    "physics.A=1e-6": ["A=1e-06", "strain rate", "plausible", "per year, not per second"],
    "solver.t_end=-5": ["solver.t_end=-5", "positive number", "e.g. solver.t_end=100"],
    "solver.cfl=0.5": ["cfl must be in (0, 0.25]", "solver.cfl"],
    "solver.max_steps=3": ["step budget exhausted", "solver.max_steps"],
}
"""Command lines that compose but fail in the job: each runs as its own process, two at a time."""


@pytest.fixture(scope="module")
def task_failures(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("bad")

    def one(i, bad):
        args = ["--cfg", "job"] if bad == "--cfg" else [bad, f"hydra.run.dir={cwd / str(i)}"]
        proc = simulate(*SMALL, *args, cwd=cwd)
        return bad, (proc.returncode, proc.stdout, " ".join(proc.stderr.split()), cwd / str(i))

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, *zip(*enumerate([*TASK_CASES, "--cfg"]), strict=True)))


@pytest.mark.parametrize("bad", [b for b in TASK_CASES if "max_steps" not in b])
def test_impossible_values_fail_without_output(bad, task_failures):
    code, _, err, run_dir = task_failures[bad]
    assert code == 2, err
    assert err.startswith("glacier-simulate: error: ") and "Traceback" not in err
    for text in TASK_CASES[bad]:
        assert text in err
    assert not (run_dir / "simulation.nc").exists()
    assert not list(run_dir.glob("*.tmp")) and not list(run_dir.glob(".*.tmp"))
    assert not run_dir.exists()  # Hydra made it; the refused run removes it (only .hydra)


def test_numerical_failure_keeps_good_states_and_exits_3(task_failures):
    code, out, err, run_dir = task_failures["solver.max_steps=3"]
    assert code == 3, err
    for text in TASK_CASES["solver.max_steps=3"]:
        assert text in err
    ds = xr.open_dataset(run_dir / "simulation.nc")
    assert ds.sizes["time"] >= 1 and ds.attrs["status"].startswith("failed")
    assert json.loads((run_dir / "provenance.json").read_text())["status"].startswith("failed")
    assert out.startswith("glacier-simulate: halfar: ")
    # the job log keeps the summary line and the error, not only Hydra's own lines
    log = (run_dir / "simulate.log").read_text()
    assert "glacier-simulate: halfar: " in log and "step budget exhausted" in log


def test_hydra_flags_pass_through(task_failures):
    code, out, err, _ = task_failures["--cfg"]
    assert code == 0, err
    assert "name: halfar" in out and "cfl: 0.124" in out


def test_relative_config_path_is_taken_from_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = cli._absolute_config_path(["--config-path=run/.hydra", "-cp", "x", "a=1"])
    assert args == [f"--config-path={tmp_path / 'run/.hydra'}", "-cp", str(tmp_path / "x"),
                    "a=1"]
    assert cli._absolute_config_path(["--config-path=pkg://glacier.configs"]) == [
        "--config-path=pkg://glacier.configs"]
