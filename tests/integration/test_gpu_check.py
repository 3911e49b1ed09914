"""``scripts/gpu_check.sh --cpu``: the GPU check's smoke test on CPU (a few tests, the
benchmark suite in its quick mode), everything in one folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def gpu_check(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


def test_cpu_smoke_run_writes_everything_into_one_folder(tmp_path):
    out = tmp_path / "check"
    proc = gpu_check("--cpu", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("machine.txt", "summary.txt", "tests.log", "tests.xml", "benchmark.log",
                 "benchmark/benchmark.json", "benchmark/forward.json",
                 "benchmark/gradient.json"):
        assert (out / name).is_file(), name
    summary = (out / "summary.txt").read_text()
    assert "tests: passed" in summary and "benchmark: passed" in summary
    assert "backend cpu" in (out / "machine.txt").read_text()
    report = json.loads((out / "benchmark" / "benchmark.json").read_text())
    assert report["meta"]["backend"] == "cpu" and report["meta"]["cpu"]
    kinds = [r["kind"] for r in report["summary"]]
    assert "ratio" in kinds and kinds.index("ratio") < kinds.index("abs")  # ratios first
    scaling = report["parts"]["scaling"]["rows"]
    assert [r["n"] for r in scaling] == [32, 64]
    assert all(0 < r["fraction_of_copy"] and r["cell_updates_per_s"] > 0 for r in scaling)
    assert report["parts"]["implicit"] == {"skipped": "--quick"}


def test_bad_arguments_and_no_gpu_are_refused(tmp_path):
    proc = gpu_check("--gpus", "2")
    assert proc.returncode == 2 and "unknown argument '--gpus'" in proc.stderr
    env_cpu = dict(os.environ, PYTHON=sys.executable, JAX_PLATFORMS="cpu")
    proc = subprocess.run(["bash", str(SCRIPT), "--out", str(tmp_path / "g")],
                          capture_output=True, text=True, env=env_cpu, timeout=300, cwd=ROOT)
    assert proc.returncode == 3 and "JAX sees no GPU" in proc.stderr
