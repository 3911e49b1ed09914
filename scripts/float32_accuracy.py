"""Float32 against float64 on the cases that decide whether float32 is accurate enough.

- ``halfar``: Bueler's Test B at 20 km, 25 000 a: avH and dome error against the exact
  solution, wall time;
- ``valley``: the synthetic valley, 100 x 100 at 100 m, 300 a from no ice: volume, the
  relative mass-budget error |V - V0 - (smb - outflow)| / max V, and the RMS thickness
  difference between the two precisions over the ice;
- ``gradient``: d(thickness misfit)/d(log A) through 5 years of the spun-up valley (50 a),
  float32 against float64 (relative difference).

Explicit scheme (``ExplicitMUSCL``) on the CPU or on whatever device JAX uses. Prints a table
and writes JSON (``--out``); give ``lscpu``'s model with the figures.

    python scripts/float32_accuracy.py [--out float32_accuracy.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from glacier import solver as slv  # noqa: E402
from glacier.domains import build_domain  # noqa: E402
from glacier.laws import GlenLaw  # noqa: E402
from glacier.schemes import ExplicitMUSCL  # noqa: E402
from glacier.simulation import run  # noqa: E402


def halfar(dtype: str) -> dict:
    domain = build_domain("halfar", dx=20e3)
    t = 25_000.0
    run(domain, save_at=slv.SaveAt((0.0, t)), dtype=dtype)  # compile
    res = run(domain, save_at=slv.SaveAt((0.0, t)), dtype=dtype)
    H = np.asarray(res.thickness[-1], np.float64)
    exact = domain.exact(t)
    c = (domain.grid.ny // 2, domain.grid.nx // 2)
    return dict(avH=float(np.mean(np.abs(H - exact))), dome_error=float(abs(H[c] - exact[c])),
                wall_s=res.wall_time, steps=int(res.steps.sum()),
                budget_error=res.budget_error)


def valley(dtype: str) -> dict:
    domain = build_domain("synthetic_valley")
    save = slv.SaveAt((0.0, 300.0))
    run(domain, save_at=save, dtype=dtype)
    res = run(domain, save_at=save, dtype=dtype)
    return dict(volume=float(res.volume[-1]), budget_error=res.budget_error,
                wall_s=res.wall_time, steps=int(res.steps.sum()),
                thickness=np.asarray(res.thickness[-1], np.float64))


def gradient(dtype: str) -> float:
    domain = build_domain("synthetic_valley")
    spun = run(domain, save_at=slv.SaveAt((0.0, 50.0)))
    H0 = jnp.asarray(spun.thickness[-1], dtype)
    bed = jnp.asarray(domain.bed, dtype)
    ph = domain.physics
    target = H0 * 1.01

    def misfit(log_A):
        law = GlenLaw(A=jnp.exp(log_A), n=ph.n, rho=ph.rho, g=ph.g)
        traj = slv.simulate(H0, bed, grid=domain.grid, rheology=law, smb=domain.smb,
                            save_at=slv.SaveAt((0.0, 5.0)),
                            scheme=ExplicitMUSCL(max_steps=4096),
                            adjoint=slv.Checkpointed())
        return jnp.mean((traj.thickness[-1] - target) ** 2)

    return float(jax.grad(misfit)(jnp.asarray(np.log(ph.A), dtype)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="float32_accuracy.json")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    out = {}
    h = {d: halfar(d) for d in ("float64", "float32")}
    v = {d: valley(d) for d in ("float64", "float32")}
    g = {d: gradient(d) for d in ("float64", "float32")}
    ice = v["float64"]["thickness"] > 1.0
    dH = v["float32"]["thickness"] - v["float64"]["thickness"]
    out["halfar"] = h
    out["valley"] = {d: {k: x for k, x in r.items() if k != "thickness"} for d, r in v.items()}
    out["valley"]["rms_dH_over_mean_H"] = float(np.sqrt(np.mean(dH[ice] ** 2))
                                               / np.mean(v["float64"]["thickness"][ice]))
    out["valley"]["volume_rel_diff"] = (v["float32"]["volume"] / v["float64"]["volume"] - 1)
    out["gradient"] = dict(g, rel_diff=abs(g["float32"] / g["float64"] - 1))
    print(f"{'case':9} {'measure':34} {'float64':>12} {'float32':>12}")
    for k in ("avH", "dome_error", "budget_error", "wall_s"):
        print(f"{'halfar':9} {k:34} {h['float64'][k]:12.4g} {h['float32'][k]:12.4g}")
    for k in ("volume", "budget_error", "wall_s"):
        print(f"{'valley':9} {k:34} {v['float64'][k]:12.4g} {v['float32'][k]:12.4g}")
    print(f"{'valley':9} {'RMS dH / mean H, volume difference':34} "
          f"{out['valley']['rms_dH_over_mean_H']:12.3e} {out['valley']['volume_rel_diff']:12.3e}")
    print(f"{'gradient':9} {'d misfit / d log A':34} {g['float64']:12.5g} {g['float32']:12.5g}"
          f"  (relative difference {out['gradient']['rel_diff']:.2e})")
    out["meta"] = dict(platform=platform.platform(), jax=jax.__version__,
                       device=str(jax.devices()[0]), wall_s=time.perf_counter() - start)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
