"""``scripts/benchmark_forward.py --rkl2``: the RKL2 scheme beside the explicit one on the same
case (the OGGM side is skipped when its interpreter is missing), and bad --rkl2 values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "benchmark_forward.py"


def test_rkl2_runs_beside_the_explicit_scheme(tmp_path):
    out = tmp_path / "forward.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--cases", "valley", "--repeat", "1",
                           "--rkl2", "valley=1", "--oggm-python", str(tmp_path / "none"),
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "skipping the OGGM comparison" in proc.stderr
    r = json.loads(out.read_text())["cases"]["valley"]
    c = r["rkl2_comparison"]
    assert r["rkl2"]["max_dt"] == 1.0 and r["rkl2"]["steps"] < r["glacier"]["steps"] / 5
    assert abs(c["volume_rel_diff"]) < 0.01 and c["rms_rel_diff"] < 0.02  # equal accuracy
    assert "oggm_over_rkl2" not in c
    assert "against our explicit run" in proc.stdout


def test_bad_rkl2_values_are_refused():
    for bad, words in (("moon=1", "unknown case"), ("valley", "CASE=YEARS")):
        proc = subprocess.run([sys.executable, str(SCRIPT), "--rkl2", bad], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2 and words in proc.stderr, proc.stderr
