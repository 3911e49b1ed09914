"""The acceptance run of the forward model through the console script.

``glacier-simulate glacier=halfar glacier.dx=20000 solver.t_end=25000`` must write a
``simulation.nc`` whose final thickness is within PISM's avH of the exact Test B solution
(Bueler et al. 2005; PISM avH = 1.70 m at dx = 20 km, reference/VERIFICATION.md).
"""

import numpy as np
import xarray as xr
from test_simulate_cli import simulate

from glacier.domains import build_domain


def test_halfar_acceptance_run(tmp_path):
    run_dir = tmp_path / "halfar"
    proc = simulate("glacier=halfar", "glacier.dx=20000", "solver.t_end=25000",
                    f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with xr.open_dataset(run_dir / "simulation.nc") as ds:
        t_end = float(ds.time[-1])
        H = ds.thickness.isel(time=-1).values.astype(float)
    assert t_end == 25000.0
    exact = build_domain("halfar", dx=20000.0).exact(t_end)
    avH = float(np.mean(np.abs(H - exact)))
    assert avH <= 1.70, f"avH = {avH:.3f} m exceeds PISM's 1.70 m"
