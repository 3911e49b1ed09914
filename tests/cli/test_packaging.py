"""The wheel carries the configs and the data, and glacier-simulate runs from it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``python -m build --wheel`` of a copy of the source tree (no build files left in it)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("glacier", "configs", "data"):
        shutil.copytree(ROOT / name, src / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out),
                           str(src)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (whl,) = out.glob("glacier-*.whl")
    return whl


def test_wheel_holds_configs_and_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {p.relative_to(ROOT / "configs").as_posix()
               for p in (ROOT / "configs").rglob("*.yaml")}
    assert configs and {f"glacier/configs/{c}" for c in configs} <= names
    for name in ("south_glacier.nc", "hintereisferner.nc", "README.md"):
        assert f"glacier/data/{name}" in names
    assert "glacier/cli.py" in names and "glacier/io/netcdf.py" in names
    from glacier.physics import native
    for source in native.SOURCES:  # the native kernels' sources (built on use)
        assert f"glacier/physics/{source.name}" in names
    assert "glacier/physics/sia_kernels.h" in names  # and the header its sources include


@pytest.mark.slow
def test_simulate_runs_from_an_installed_wheel(wheel, tmp_path):
    """Install the wheel into a fresh virtual environment (dependencies from this one) and run
    glacier-simulate from an unrelated directory: the configs and the data come from the
    wheel, not from the source tree."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, timeout=300)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, timeout=300)
    where = subprocess.run([str(py), "-c", "import glacier; print(glacier.__file__)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path)
    assert str(venv) in where.stdout
    for args in (["glacier=halfar", "glacier.dx=200000", "solver.t_end=1000"],
                 ["glacier=south_glacier", "glacier.dx=100", "solver.t_end=1"]):
        run_dir = tmp_path / args[0].split("=")[1]
        proc = subprocess.run([str(venv / "bin" / "glacier-simulate"), *args,
                               f"hydra.run.dir={run_dir}"], capture_output=True, text=True,
                              cwd=tmp_path, timeout=600)
        assert proc.returncode == 0, proc.stderr
        assert (run_dir / "simulation.nc").is_file()
        assert '"source_commit": "unknown"' in (run_dir / "provenance.json").read_text()
