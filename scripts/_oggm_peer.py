"""Run one benchmark case with OGGM's ``Upstream2D`` (run inside the OGGM virtual environment).

Usage: ``/opt/oggm-venv/bin/python scripts/_oggm_peer.py CASE.npz RESULT.npz``

Called by ``benchmark_forward.py``; not part of the ``glacier`` package and never imported by
it. The case file holds: ``bed`` (ny, nx) [m], ``thickness`` (initial, ny, nx) [m], ``dx`` [m],
``glen_a`` [s^-1 Pa^-3], ``rho`` [kg m^-3], ``g`` [m s^-2], ``years``, ``max_dt`` [s], ``cfl``,
``year_seconds`` (the length of a year in seconds; OGGM's own is 365 d), ``repeat``, and the
balance: ``mb_kind`` ("linear" or "zero"), ``mb_ela`` [m], ``mb_grad`` [mm w.e. a^-1 m^-1].

OGGM reads rho from ``cfg.PARAMS['ice_density']`` and g from the module-level ``G`` of
``oggm.core.sia2d`` (imported from ``oggm.cfg``), and converts years with module-level
``SEC_IN_YEAR`` in ``oggm.core.sia2d`` and ``oggm.core.massbalance``; all are patched here so
that both models solve the identical problem. ``cfg.initialize_minimal()`` only (no downloads);
the caller points HOME at a temporary folder because importing OGGM writes ``~/.oggm_config``.

The result holds the final thickness and, in ``meta`` (a JSON string), volume [m^3], area [m^2]
(H > 0 as OGGM counts it, and H > 1 m), the wall time of the time loop alone (best of
``repeat``), the number of steps, and the balance OGGM applies at a few test heights
[m ice a^-1], so the caller can check the unit conversion.
"""

import json
import sys
import time

import numpy as np


def main(case_path: str, out_path: str) -> None:
    case = dict(np.load(case_path))
    from oggm import cfg

    cfg.initialize_minimal(logging_level="WARNING")
    cfg.PARAMS["ice_density"] = float(case["rho"])
    cfg.PARAMS["glen_n"] = 3.0
    import oggm.core.massbalance as omb
    import oggm.core.sia2d as sia2d

    year = float(case["year_seconds"])
    sia2d.G = float(case["g"])
    sia2d.SEC_IN_YEAR = year
    omb.SEC_IN_YEAR = year

    if str(case["mb_kind"]) == "linear":
        mb = omb.LinearMassBalance(float(case["mb_ela"]), grad=float(case["mb_grad"]))
    else:
        mb = omb.ScalarMassBalance(0.0)
    heights = np.array([1000.0, 2600.0, 3000.0, 3500.0])
    mb_check = (mb.get_annual_mb(heights) * year).tolist()  # m ice per year

    best, model, steps = np.inf, None, 0
    for _ in range(int(case["repeat"])):
        model = sia2d.Upstream2D(case["bed"].astype(np.float64),
                                 init_ice_thick=case["thickness"].astype(np.float64),
                                 dx=float(case["dx"]), mb_model=mb, y0=0.0,
                                 glen_a=float(case["glen_a"]), cfl=float(case["cfl"]),
                                 max_dt=float(case["max_dt"]))
        counter = [0]
        step = model.step

        def counted(dt, step=step, counter=counter):
            counter[0] += 1
            return step(dt)

        model.step = counted
        start = time.perf_counter()
        model.run_until(float(case["years"]))
        best = min(best, time.perf_counter() - start)
        steps = counter[0]

    H = model.ice_thick
    meta = dict(wall_time=best, steps=steps, volume=float(model.volume_m3),
                area=float(model.area_m2), area_1m=float(np.sum(H > 1.0) * model.dxdy),
                gamma=float(model.gamma), rho=float(model.rho), g=float(sia2d.G),
                mb_check_heights=heights.tolist(), mb_check=mb_check,
                oggm_version=__import__("oggm").__version__, numpy_version=np.__version__)
    np.savez(out_path, thickness=H, meta=json.dumps(meta))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
