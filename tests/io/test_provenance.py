"""provenance.json: what ran, on what, from which source."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import glacier
from glacier.io import provenance


def test_collect_and_write(tmp_path):
    record = provenance.collect(["/usr/bin/glacier-simulate", "glacier=halfar", "a b=1"], 7)
    assert record["glacier_version"] == glacier.__version__
    assert record["seed"] == 7
    assert record["command_line"] == "glacier-simulate glacier=halfar 'a b=1'"
    assert record["jax_backend"] and record["jax_devices"]
    assert set(record["versions"]) >= {"jax", "jaxlib", "flax", "numpy", "xarray"}
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", record["timestamp_utc"])
    path = tmp_path / "provenance.json"
    provenance.write_json(path, record)
    assert json.loads(path.read_text()) == record
    assert [p.name for p in tmp_path.iterdir()] == ["provenance.json"]


def test_source_commit_is_the_checkout_head():
    commit, dirty = provenance.source_commit()
    top = Path(glacier.__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=top, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head = "unknown"
    assert commit == head
    if commit != "unknown":
        assert isinstance(dirty, bool)
