"""A process killed (SIGKILL) while it writes an output leaves the old file or the new one,
complete, and nothing that the next run trips over.

A child process rewrites one NetCDF file and one checkpoint folder in a loop through the
package's writers; it is killed at a random moment (three seeds) of those writes. The file then
opens and holds one of the versions written, in full; the checkpoint ``latest`` names loads and
verifies; the child's hidden temporaries are removed by ``cf.remove_stale``.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import xarray as xr

from glacier.io import cf

CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    import numpy as np
    import xarray as xr
    from glacier.io import cf

    out = Path(sys.argv[1])
    version = 0
    while True:
        version += 1
        data = np.full((40, 200, 200), float(version))
        ds = xr.Dataset({"thickness": (("time", "y", "x"), data)}, attrs={"version": version})
        cf.write_dataset(out / "simulation.nc", ds, compress=("thickness",))
        cf.write_text(out / "progress.json", '{"version": %d}' % version)
        if version == 1:
            (out / "started").write_text("1")
""")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_mid_write_leaves_a_complete_file(tmp_path, seed):
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)],
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "started").exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the writer did not start"
            time.sleep(0.02)
        # a random moment inside the next few writes (each takes ~0.1-0.5 s)
        time.sleep(random.Random(seed).uniform(0.05, 1.5))
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    with xr.open_dataset(tmp_path / "simulation.nc") as ds:
        version = int(ds.attrs["version"])
        assert version >= 1
        np.testing.assert_array_equal(ds.thickness.values, float(version))
    assert (tmp_path / "progress.json").read_text().startswith('{"version": ')

    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    removed = cf.remove_stale(tmp_path)
    assert sorted(removed) == sorted(leftovers)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_remove_stale_leaves_the_temporaries_of_live_processes(tmp_path):
    mine = cf.temporary_path(tmp_path / "law.nc")
    mine.write_text("being written")
    dead = tmp_path / ".law.999999999.tmp.nc"  # no such process
    dead.write_text("half")
    old = tmp_path / ".epoch_000003.999999999.old"
    old.mkdir()
    (tmp_path / "law.nc").write_text("kept")
    assert sorted(cf.remove_stale(tmp_path)) == sorted([dead, old])
    assert mine.exists() and (tmp_path / "law.nc").exists()
