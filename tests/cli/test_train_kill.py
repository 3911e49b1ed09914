"""SIGKILL at a random moment of ``glacier-train``, then ``train.resume=true``: the same
parameters, bit for bit, as a run never interrupted.

A kill gives the process no chance to save: what it leaves is whatever checkpoints were complete
(the writers are atomic) and maybe a half-written temporary. Two seeds pick the moment, after
the first checkpoint exists, anywhere in the Adam or the L-BFGS phase. The runs share the test
session's JAX compilation cache (tests/conftest.py), so only the first one compiles.
"""

from __future__ import annotations

import concurrent.futures
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from _scripts import console_script  # tests/cli/_scripts.py

ARGS = ["experiment.n_valleys=2", "experiment.real=[]", "experiment.years=3",
        "experiment.spinup_years=30", "train.epochs=60", "optimizer.lbfgs_steps=20",
        "train.checkpoint_every=1", "network.hidden=[4]"]
FINAL = "epoch_000080"
SEEDS = (0, 1)  # two kills run side by side on two cores; more seeds: add them here


def _train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*console_script("glacier-train"), *ARGS, *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def _killed_then_resumed(seed: int, cwd: Path) -> dict:
    run_dir = cwd / f"killed_{seed}"
    proc = subprocess.Popen([*console_script("glacier-train"), *ARGS, f"hydra.run.dir={run_dir}"],
                            cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 400
        while not (run_dir / "checkpoints" / "latest").exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no checkpoint within 400 s"
            time.sleep(0.05)
        time.sleep(random.Random(seed).uniform(0.0, 1.5))
        running = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    latest = (run_dir / "checkpoints" / "latest").read_text().strip()
    resumed = _train("train.resume=true", f"hydra.run.dir={run_dir}", cwd=cwd)
    return dict(run_dir=run_dir, running=running, latest=latest, resumed=resumed)


@pytest.fixture(scope="module")
def kills(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("kill")
    straight = _train(f"hydra.run.dir={cwd / 'straight'}", cwd=cwd)  # fills the cache
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runs = dict(zip(SEEDS, pool.map(lambda s: _killed_then_resumed(s, cwd), SEEDS),
                        strict=True))
    return dict(straight=straight, straight_dir=cwd / "straight", runs=runs)


@pytest.mark.slow  # ~120 s on 2 cores (a straight run and killed runs): run with -m slow
@pytest.mark.parametrize("seed", SEEDS)
def test_sigkill_at_a_random_moment_resumes_to_the_same_parameters(kills, seed):
    assert kills["straight"].returncode == 0, kills["straight"].stderr
    run = kills["runs"][seed]
    assert run["running"], "the run ended before the kill: lengthen the training"
    assert run["latest"] != FINAL
    assert run["resumed"].returncode == 0, run["resumed"].stderr
    assert "80/80 epochs (" in run["resumed"].stdout
    a = kills["straight_dir"] / "checkpoints" / FINAL / "state.msgpack"
    b = run["run_dir"] / "checkpoints" / FINAL / "state.msgpack"
    assert a.read_bytes() == b.read_bytes()
    assert not [p for p in run["run_dir"].rglob("*") if ".tmp" in p.name]
