"""glacier-train over two processes (``train.distributed``, CPU collectives) equals one process.

Two ``glacier-train`` processes on this machine, one CPU device each, join through a
coordinator on a local port, with the same command line and run directory (as the tasks of a
SLURM job step do); the glaciers are sharded over both devices and the parameters replicated.
The two-process run stops half-way (``train.stop_after``), and is resumed by two processes
that both read the checkpoint process 0 wrote. The first two processes get their coordinator,
count and rank from the config (``train.distributed.coordinator`` ...); the resumed pair is
launched by ``scripts/slurm_train.sh`` through a stand-in ``srun`` (tests/cli/fake_slurm/srun:
two tasks on this machine with a job step's environment), so JAX finds them from SLURM_*.
Its loss history and learned law must equal those of a single process on one device run
straight through (to round-off: the cross-process sum adds in another order), and only
process 0 writes the outputs.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import random
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from _scripts import console_script  # tests/cli/_scripts.py

TINY = ["experiment.n_valleys=3", "experiment.real=[]", "experiment.years=2",
        "experiment.spinup_years=20", "train.epochs=4", "optimizer.lbfgs_steps=0",
        "train.checkpoint_every=2", "network.hidden=[4]"]


ROOT = Path(__file__).resolve().parents[2]
FAKE_SLURM = Path(__file__).resolve().parent / "fake_slurm"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slurm_job_id() -> int:
    """A job id whose port (JAX: 61440 + id mod 4096) is free on this machine."""
    for _ in range(100):
        job = random.randrange(4096)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", 61440 + job))
            except OSError:
                continue
        return 4096 * 7 + job
    raise RuntimeError("no free port in 61440..65535")


def _train(args, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    return subprocess.run([*console_script("glacier-train"), *TINY, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _two(args, run_dir: Path, cwd: Path) -> list[subprocess.CompletedProcess]:
    port = _free_port()
    common = ["train.distributed.enabled=true", f"train.distributed.coordinator=127.0.0.1:{port}",
              "train.distributed.num_processes=2", "train.devices=0",
              f"hydra.run.dir={run_dir}", *args]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(_train, [*common, f"train.distributed.process_id={i}"], cwd)
                   for i in range(2)]
        return [f.result() for f in futures]


def _slurm(args, run_dir: Path, cwd: Path) -> subprocess.CompletedProcess:
    """``sbatch scripts/slurm_train.sh ARGS`` as SLURM would run it: two tasks on one node."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PATH=f"{FAKE_SLURM}:{os.environ['PATH']}",
               SLURM_JOB_ID=str(_slurm_job_id()), SLURM_NTASKS="2", SLURM_NNODES="1",
               GLACIER_RUN_DIR=str(run_dir),
               GLACIER_TRAIN=" ".join(console_script("glacier-train")))
    env.pop("XLA_FLAGS", None)
    return subprocess.run(["bash", str(ROOT / "scripts" / "slurm_train.sh"), *TINY, *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _tasks(proc: subprocess.CompletedProcess) -> list[subprocess.CompletedProcess]:
    """The labelled output of the stand-in srun, split by task (as from two processes)."""
    out = []
    for rank in range(2):
        lines = [line[len(f"{rank}: "):] for line in proc.stdout.splitlines()
                 if line.startswith(f"{rank}: ")]
        out.append(subprocess.CompletedProcess(proc.args, proc.returncode, "\n".join(lines),
                                               proc.stderr))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("distributed")
    single, two = cwd / "single", cwd / "two"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        one = pool.submit(_train, [f"hydra.run.dir={single}"], cwd)
        stopped = _two(["train.stop_after=2"], two, cwd)
        one = one.result()
    after_stop = sorted(p.name for p in (two / "checkpoints").iterdir())
    resumed = _tasks(_slurm(["train.resume=true"], two, cwd))
    return dict(one=one, stopped=stopped, resumed=resumed, single=single, two=two,
                after_stop=after_stop)


def _ok(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_two_processes_train_as_one(runs):
    _ok(runs["one"])
    for proc in runs["stopped"] + runs["resumed"]:
        _ok(proc)
    assert runs["after_stop"] == ["epoch_000002", "latest"]  # written once, by process 0
    a = xr.open_dataset(runs["single"] / "training.nc")
    b = xr.open_dataset(runs["two"] / "training.nc")
    with a, b:
        assert b.attrs["processes"] == 2 and b.attrs["devices"] == 2
        assert a.attrs["processes"] == 1 and a.attrs["devices"] == 1
        assert b.attrs["status"] == "completed" and b.attrs["epochs_completed"] == 4
        np.testing.assert_allclose(b.loss.values, a.loss.values, rtol=1e-10)
        n = a.sizes.get("glacier", 3)
        np.testing.assert_allclose(b.loss_glacier.values[..., :n], a.loss_glacier.values,
                                   rtol=1e-10)
    la = xr.open_dataset(runs["single"] / "law.nc")
    lb = xr.open_dataset(runs["two"] / "law.nc")
    with la, lb:
        np.testing.assert_allclose(lb.A_learned.values, la.A_learned.values, rtol=1e-10)


def test_only_process_zero_writes(runs):
    for stage in ("stopped", "resumed"):
        main, other = runs[stage]
        assert "process 1 of 2" in other.stdout and "process 0 writes" in other.stdout
        assert "process 1 of 2" not in main.stdout
    record = json.loads((runs["two"] / "provenance.json").read_text())
    assert record["processes"] == 2 and record["resumed_from_epoch"] == 2
