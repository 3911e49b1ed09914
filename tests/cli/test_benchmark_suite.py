"""``scripts/benchmark.py``'s inversion part: its command is the user's (``python -m glacier
invert glacier=south_glacier``), its report the run's ``provenance.json``, its rows the wall
and compile times and the held-out error. (The suite itself runs in ``--quick`` form in
``tests/integration/test_gpu_check.py``; the inversion takes a minute, so it is not run here.)"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "benchmark.py"


def _suite():
    spec = importlib.util.spec_from_file_location("benchmark_suite", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_inversion_part_reads_the_runs_provenance(tmp_path):
    suite = _suite()
    args = suite.argparse.Namespace(out=str(tmp_path), repeat=1, quick=False,
                                    oggm_python="/nonexistent")
    cmd = suite.part_commands(args)["inversion"]
    assert cmd[1:5] == ["-m", "glacier", "invert", "glacier=south_glacier"]
    assert cmd[5] == f"hydra.run.dir={tmp_path / 'inversion_run'}"
    # A stand-in run that writes what glacier-invert writes there.
    report = dict(wall_time_s=61.2, compile_time_s=13.6, cv_rmse=18.7)
    stand_in = [sys.executable, "-c",
                "import json, pathlib, sys; p = pathlib.Path(sys.argv[1]); "
                "p.mkdir(parents=True); (p / 'provenance.json').write_text(sys.argv[2])",
                str(tmp_path / "inversion_run"), json.dumps(report)]
    part = suite.run_part("inversion", stand_in, tmp_path)
    assert part["returncode"] == 0 and part["report"] == report
    rows = {r["what"]: r for r in suite.summary_rows({"inversion": part})}
    wall = [r for w, r in rows.items() if w.startswith("inversion South Glacier") and
            "wall time" in w]
    assert len(wall) == 1 and wall[0]["value"] == 61.2 and wall[0]["unit"] == "s"
    assert rows["inversion South Glacier: held-out RMSE"]["value"] == 18.7


def test_a_failed_part_keeps_its_error(tmp_path):
    suite = _suite()
    part = suite.run_part("inversion", [sys.executable, "-c", "import sys; sys.exit('boom')"],
                          tmp_path)
    assert part["returncode"] == 1 and "boom" in part["error"]
    assert (tmp_path / "inversion.log").is_file()
    assert suite.summary_rows({"inversion": part}) == []
