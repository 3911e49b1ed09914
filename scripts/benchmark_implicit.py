"""Explicit against implicit and RKL2 SIA stepping in the same run, at equal accuracy.

Cases (each: the explicit scheme ``ExplicitMUSCL()`` as the reference, then
``ImplicitEuler(dt)`` and ``ExplicitRKL2(max_dt)``, the super-time-stepping one):

- ``valley100``, ``valley50``, ``valley25``: the synthetic valley on the same 10 km x 10 km
  domain at 100, 50 and 25 m over ``--years`` (default 300) years from no ice;
- ``hef``: Hintereisferner at its native 50 m over 100 years from its initial thickness;
- ``eismint``: EISMINT I moving margin, 200 000 years (divide thickness);
- ``halfar``: the Halfar dome (Test B) at 20 km, 25 000 years (error against the exact one).

Reported per case: wall time of each scheme (the implicit and rkl2 runs are repeated after
their compilation, which is given separately; the explicit compile is about a second), steps,
Newton iterations, the ratio explicit / other wall time, and the accuracy of the other
result against the explicit one: relative volume difference and RMS thickness difference
over the ice (explicit H > 1 m) divided by its mean thickness. "Equal accuracy" means volume
within 1 % and RMS within 2 %.

``--krylov`` measures GMRES iterations per Newton iteration of one implicit step
(``--krylov-dt``, 5 a) on the valley spun up for 100 years, at ``--krylov-dx`` (100, 50 m),
with the multigrid and the Jacobi preconditioner.
``--gradient`` measures the wall time of a reverse-mode gradient (log A and H0) over the
forward solve for both schemes on the 100 m valley (100 years from a spun-up state).

Prints a table and writes JSON (``--out``). Not a test: timings depend on the machine (give
``lscpu``'s model with the figures).

    python scripts/benchmark_implicit.py [--cases halfar,valley100,valley50,hef,eismint]
        [--dt valley=5,hef=1,eismint=1000,halfar=250]
        [--rkl-dt valley=1,hef=1,eismint=1000,halfar=250] [--no-implicit]
        [--krylov] [--gradient] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from glacier import implicit  # noqa: E402
from glacier import solver as slv  # noqa: E402
from glacier.domains import build_domain  # noqa: E402
from glacier.laws import GlenLaw  # noqa: E402
from glacier.schemes import ExplicitMUSCL, ExplicitRKL2, ImplicitEuler  # noqa: E402
from glacier.simulation import run  # noqa: E402


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def case_domain(name: str):
    if name.startswith("valley"):
        dx = float(name[len("valley"):])
        n = int(round(10_000 / dx))
        return build_domain("synthetic_valley", dx=dx, nx=n, ny=n), None
    if name == "hef":
        return build_domain("hintereisferner"), 100.0
    if name == "eismint":
        return build_domain("eismint_moving"), 200_000.0
    if name == "halfar":
        return build_domain("halfar", dx=20e3), 25_000.0
    raise SystemExit(f"unknown case {name!r}")


def accuracy(H, He) -> tuple[float, float]:
    """(relative volume difference, RMS over the reference ice / its mean thickness)."""
    ice = He > 1.0
    return (float(H.sum() / He.sum() - 1.0),
            float(np.sqrt(np.mean((H[ice] - He[ice]) ** 2)) / He[ice].mean()))


def timed(domain, save_at, scheme):
    """The run after a first (compiling) one, and the compile time; one run past 300 s."""
    first = run(domain, save_at=save_at, scheme=scheme)
    again = run(domain, save_at=save_at, scheme=scheme) if first.wall_time < 300 else first
    return again, max(first.wall_time - again.wall_time, 0.0)


def compare(name: str, dt: float, years: float, rkl_dt: float | None = None,
            implicit_too: bool = True) -> dict:
    domain, t_end = case_domain(name)
    t_end = years if t_end is None else t_end
    save_at = slv.SaveAt((0.0, t_end))
    max_dt = domain.solver.get("max_dt") or 1.0
    ref = run(domain, save_at=save_at, scheme=ExplicitMUSCL(max_dt=max_dt))
    He = ref.thickness[-1]
    out = dict(case=name, grid=list(domain.grid.shape), dx=domain.grid.dx, years=t_end,
               explicit_wall_s=ref.wall_time, explicit_steps=int(ref.steps.sum()))
    if name == "halfar":
        exact = domain.exact(t_end)
        out["avH_explicit"] = float(np.mean(np.abs(He - exact)))
    c = (domain.grid.ny // 2, domain.grid.nx // 2)
    if name == "eismint":
        out["divide_explicit"] = float(He[c])
    runs = []
    if implicit_too:
        runs.append(("implicit", ImplicitEuler(dt=dt), dt))
    if rkl_dt is not None:
        runs.append(("rkl2", ExplicitRKL2(max_dt=rkl_dt), rkl_dt))
    for label, scheme, step in runs:
        res, compile_s = timed(domain, save_at, scheme)
        H = res.thickness[-1]
        dv, rms = accuracy(H, He)
        out[label] = dict(dt=step, wall_s=res.wall_time, compile_s=compile_s,
                          steps=int(res.steps.sum()), newton=int(res.iterations.sum()),
                          speedup=ref.wall_time / res.wall_time, volume_rel_diff=dv,
                          rms_rel_diff=rms, failure=res.failure, budget=res.budget_error,
                          equal_accuracy=bool(abs(dv) <= 0.01 and rms <= 0.02))
        if name == "halfar":
            out[label]["avH"] = float(np.mean(np.abs(H - exact)))
        if name == "eismint":
            out[label]["divide"] = float(H[c])
    return out


def krylov_counts(dxs, dt: float) -> list[dict]:
    rows = []
    for dx in dxs:
        n = int(round(10_000 / dx))
        d = build_domain("synthetic_valley", dx=dx, nx=n, ny=n)
        spun = run(d, save_at=slv.SaveAt((0.0, 100.0)), scheme=ExplicitMUSCL())
        H = jnp.asarray(spun.thickness[-1])
        p = implicit.Params(bed=jnp.asarray(d.bed), rheology=GlenLaw(A=jnp.asarray(d.physics.A)),
                            smb=d.smb)
        for pc in ("multigrid", "jacobi"):
            opts = ImplicitEuler(dt=dt, preconditioner=pc, max_krylov=2000).newton_options
            f = jax.jit(lambda H, opts=opts, p=p, d=d: implicit.solve(
                H, jnp.asarray(100.0), jnp.asarray(dt), p, jnp.zeros_like(H), d.grid, opts))
            jax.block_until_ready(f(H))
            t = time.perf_counter()
            res = jax.block_until_ready(f(H))
            wall = time.perf_counter() - t
            rows.append(dict(dx=dx, grid=[n, n], preconditioner=pc, dt=dt,
                             newton=int(res.iterations), krylov=int(res.krylov),
                             krylov_per_newton=int(res.krylov) / max(int(res.iterations), 1),
                             converged=bool(res.converged), wall_s=wall))
    return rows


def gradient_ratios(schemes=("explicit", "implicit", "rkl2")) -> list[dict]:
    d = build_domain("synthetic_valley")
    spun = run(d, save_at=slv.SaveAt((0.0, 100.0)), scheme=ExplicitMUSCL())
    H0 = jnp.asarray(spun.thickness[-1])
    bed = jnp.asarray(d.bed)
    save_at = slv.SaveAt((0.0, 50.0, 100.0))
    target = H0 * 1.01
    rows = []
    fwd_steps = run(dataclass_replace(d, H0), save_at=save_at,
                    scheme=ExplicitMUSCL()).steps.max()
    candidates = (("explicit", ExplicitMUSCL(max_steps=int(fwd_steps * 1.2) + 1)),
                  ("implicit", ImplicitEuler(dt=10.0, max_steps=6)),
                  ("rkl2", ExplicitRKL2(max_dt=1.0, max_steps=60)))
    for label, scheme in [c for c in candidates if c[0] in schemes]:
        def loss(log_A, H, adjoint, scheme=scheme):
            law = GlenLaw(A=jnp.exp(log_A))
            tr = slv.simulate(H, bed, grid=d.grid, rheology=law, smb=d.smb, save_at=save_at,
                              scheme=scheme, adjoint=adjoint)
            return jnp.mean((tr.thickness[-1] - target) ** 2)

        log_A = jnp.log(jnp.asarray(d.physics.A))
        fwd = jax.jit(lambda a, h: loss(a, h, slv.ForwardOnly()))
        grad = jax.jit(jax.grad(lambda a, h, s=scheme: loss(a, h, slv.reverse_adjoint(s)),
                                argnums=(0, 1)))
        times = {}
        for key, f in (("forward", fwd), ("gradient", grad)):
            jax.block_until_ready(f(log_A, H0))
            best = np.inf
            for _ in range(2):
                t = time.perf_counter()
                jax.block_until_ready(f(log_A, H0))
                best = min(best, time.perf_counter() - t)
            times[key] = best
        mem = grad.lower(log_A, H0).compile().memory_analysis()
        rows.append(dict(scheme=label, forward_s=times["forward"], gradient_s=times["gradient"],
                         ratio=times["gradient"] / times["forward"],
                         temp_bytes=int(getattr(mem, "temp_size_in_bytes", 0) or 0)))
    return rows


def dataclass_replace(domain, H):
    import dataclasses
    return dataclasses.replace(domain, thickness=np.asarray(H))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="halfar,valley100",
                    help="of valley100, valley50, valley25, hef, eismint, halfar")
    ap.add_argument("--dt", default="valley=5,hef=1,eismint=1000,halfar=250",
                    help="implicit step per case family [a]")
    ap.add_argument("--rkl-dt", default="valley=1,hef=1,eismint=1000,halfar=250",
                    help="super-step (max_dt) of the rkl2 scheme per case family [a]; '' skips")
    ap.add_argument("--no-implicit", action="store_true", help="only explicit and rkl2")
    ap.add_argument("--years", type=float, default=300.0, help="years of the valley runs")
    ap.add_argument("--krylov", action="store_true")
    ap.add_argument("--krylov-dx", default="100,50", help="grid spacings of --krylov [m]")
    ap.add_argument("--krylov-dt", type=float, default=5.0, help="step of --krylov [a]")
    ap.add_argument("--gradient", action="store_true")
    ap.add_argument("--gradient-schemes", default="explicit,implicit,rkl2",
                    help="schemes of --gradient")
    ap.add_argument("--out", default="benchmark_implicit.json")
    args = ap.parse_args(argv)
    dts = {k: float(v) for k, v in (kv.split("=") for kv in args.dt.split(",") if kv)}
    rkl = {k: float(v) for k, v in (kv.split("=") for kv in args.rkl_dt.split(",") if kv)}
    report = dict(cpu=cpu_model(), jax=jax.__version__, cases=[], krylov=[], gradient=[])
    for name in [c for c in args.cases.split(",") if c]:
        family = "valley" if name.startswith("valley") else name
        row = compare(name, dts[family], args.years, rkl.get(family),
                      implicit_too=not args.no_implicit)
        report["cases"].append(row)
        print(f"{name:10s} {str(row['grid']):12s} explicit {row['explicit_wall_s']:8.1f} s "
              f"({row['explicit_steps']} steps)", flush=True)
        for label in ("implicit", "rkl2"):
            if label in row:
                r = row[label]
                print(f"{'':10s} {label:8s} dt={r['dt']:<6g} {r['wall_s']:8.1f} s "
                      f"(+{r['compile_s']:.0f} s compile, {r['steps']} steps, "
                      f"{r['newton']} Newton)  ratio {r['speedup']:6.2f}  "
                      f"dV {100 * r['volume_rel_diff']:+.2f} %  RMS {100 * r['rms_rel_diff']:.2f} %"
                      f"  equal={r['equal_accuracy']}", flush=True)
        _write(args.out, report)
    if args.krylov:
        report["krylov"] = krylov_counts([float(x) for x in args.krylov_dx.split(",")],
                                         args.krylov_dt)
        for r in report["krylov"]:
            print(f"krylov dx={r['dx']:g} {r['preconditioner']:9s} Newton {r['newton']:3d}  "
                  f"GMRES/Newton {r['krylov_per_newton']:6.1f}  {r['wall_s']:.2f} s  "
                  f"converged={r['converged']}", flush=True)
        _write(args.out, report)
    if args.gradient:
        report["gradient"] = gradient_ratios(tuple(args.gradient_schemes.split(",")))
        for r in report["gradient"]:
            print(f"gradient {r['scheme']:8s} forward {r['forward_s']:.2f} s  gradient "
                  f"{r['gradient_s']:.2f} s  ratio {r['ratio']:.2f}  temp "
                  f"{r['temp_bytes'] / 2**20:.1f} MiB", flush=True)
        _write(args.out, report)
    print(f"CPU: {report['cpu']}; wrote {args.out}")
    return 0


def _write(path, report):
    with open(path, "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    raise SystemExit(main())
