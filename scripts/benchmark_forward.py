"""Forward-model speed of ``glacier`` against OGGM 1.6.3's ``Upstream2D`` on identical cases.

Cases (reference/PEERS.md):

- ``valley``: ``synthetic_valley`` (100 x 100 cells at 100 m, 100 a, from zero ice; OGGM's
  defaults A = 2.4e-24 s^-1 Pa^-3, rho = 900, g = 9.80665; linear balance with ELA 2600 m and
  3 mm w.e. a^-1 m^-1 = 3/900 m ice a^-1 m^-1; max_dt 31 days);
- ``halfar``: Bueler et al. (2005) Test B at 20 km (121 x 121 cells, 25 000 a; A = 1e-16
  Pa^-3 a^-1, rho = 910, g = 9.81, zero balance, max_dt 100 a), with errors against the exact
  solution (avH = mean |H - H_exact| over the grid, as PISM; dome error).

Both models get the same bed, initial thickness, A, n, rho, g, balance, CFL factor (0.124) and
largest step. OGGM's year is 365 days; the peer patches it to the Julian year of ``glacier``
so that "100 a" and "3 mm w.e. per year" mean the same in both. OGGM empties the outer ring of
cells after every step; by default ``glacier`` is given the same ring as ``ice_free`` cells
(``--open-edges`` keeps the domain's own outflow edges instead). OGGM updates the balance once
per model year ("annual" elevation feedback), ``glacier`` at every step.

``--xla`` also runs the explicit scheme without the native face kernel
(``physics.native``, ``GLACIER_NATIVE=0``): the XLA expressions it replaces, side by side in
the same run. ``GLACIER_NATIVE_MARCH=haswell`` with ``XLA_FLAGS=--xla_cpu_max_isa=AVX2``
measures what an AVX2 machine (no AVX-512) gets on one that has AVX-512.

``--rkl2 valley=1,halfar=250`` also runs ``glacier``'s super-time-stepping scheme
(``solver.scheme=rkl2``, ``schemes.ExplicitRKL2``: the same fluxes in Runge-Kutta-Legendre
super-steps of up to that many years) on the same case, with its errors (Halfar: against the
exact solution; both: volume and RMS thickness against our explicit run) and its speed against
OGGM: the ratio a user gets who picks the cheaper scheme at equal accuracy. Its steps (and
cell updates per second) are super-steps, each of several flux evaluations.

Timing: ours excludes JIT compilation (a first call compiles and runs; then the best of
``--repeat`` runs is timed; compile time = first call - best run). OGGM: the best of
``--repeat`` runs of its time loop (``run_until``) alone, in its own virtual environment
(``--oggm-python``), through ``scripts/_oggm_peer.py`` with HOME set to a temporary folder.
The comparison is skipped with a message when that interpreter is missing.

    python scripts/benchmark_forward.py --cases valley,halfar --repeat 3 --out bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from glacier import solver as slv  # noqa: E402
from glacier.constants import SECONDS_PER_YEAR  # noqa: E402
from glacier.domains import build_domain  # noqa: E402
from glacier.laws import glen_law  # noqa: E402
from glacier.physics import native  # noqa: E402
from glacier.schemes import ExplicitMUSCL, ExplicitRKL2  # noqa: E402

PEER = Path(__file__).with_name("_oggm_peer.py")
CASES = {
    "valley": dict(name="synthetic_valley", options={}, years=100.0),
    "halfar": dict(name="halfar", options={"dx": 20e3}, years=25_000.0),
}
CFL = 0.124


def ring(shape) -> np.ndarray:
    """1 on the outer ring of cells (what OGGM's ``filter_ice_border`` empties), else 0."""
    mask = np.ones(shape)
    mask[1:-1, 1:-1] = 0.0
    return mask


def error_measures(H, domain, t) -> dict:
    """avH (PISM: mean |H - H_exact| over the grid), dome error and max error [m]."""
    if domain.exact is None:
        return {}
    H_exact = domain.exact(t)
    c = (domain.grid.ny // 2, domain.grid.nx // 2)
    return dict(avH=float(np.mean(np.abs(H - H_exact))),
                dome_error=float(abs(H[c] - H_exact[c])),
                maxH=float(np.max(np.abs(H - H_exact))))


def diagnostics(H, domain) -> dict:
    area = domain.grid.cell_area
    return dict(volume=float(H.sum() * area), area=float((H > 0).sum() * area),
                area_1m=float((H > 1.0).sum() * area))


def timed_simulate(H0, bed, domain, law, scheme, times, ice_free):
    """One solve, blocked until done: (wall time [s], trajectory)."""
    start = time.perf_counter()
    traj = slv.simulate(H0, bed, grid=domain.grid, rheology=law, smb=domain.smb,
                        save_at=slv.SaveAt(times), scheme=scheme, ice_free=ice_free)
    traj = jax.block_until_ready(traj)
    return time.perf_counter() - start, traj


def run_ours(domain, years: float, *, dtype: str, repeat: int, open_edges: bool,
             rkl2_dt: float | None = None) -> dict:
    """Our explicit scheme on the case, or with ``rkl2_dt`` the RKL2 one (super-steps of up
    to ``rkl2_dt`` years)."""
    fdt = jnp.dtype(dtype)
    H0 = jnp.asarray(domain.thickness, fdt)
    bed = jnp.asarray(domain.bed, fdt)
    law = glen_law(domain.physics)
    ice_free = domain.ice_free if open_edges else ring(domain.grid.shape)
    scheme = (ExplicitMUSCL(cfl=CFL, max_dt=domain.solver["max_dt"]) if rkl2_dt is None
              else ExplicitRKL2(cfl=CFL, max_dt=rkl2_dt))

    def once():
        return timed_simulate(H0, bed, domain, law, scheme, (0.0, years), ice_free)

    first, traj = once()
    best = min(once()[0] for _ in range(repeat))
    if traj.first_failure() is not None:
        raise RuntimeError(f"glacier run failed: status {np.asarray(traj.status)}")
    H = np.asarray(traj.thickness[-1], np.float64)
    steps = int(np.asarray(traj.steps).sum())
    return dict(wall_time=best, compile_time=max(first - best, 0.0), steps=steps,
                thickness=H, **diagnostics(H, domain))


def run_oggm(domain, years: float, *, python: str, repeat: int) -> dict:
    """Run the case in OGGM's interpreter through ``_oggm_peer.py``."""
    phys = domain.physics
    smb = domain.smb
    linear = domain.name == "synthetic_valley"
    if linear:
        # glacier: b = gradient (S - ELA) [m ice a^-1]; OGGM: grad [mm w.e. a^-1 m^-1], i.e.
        # gradient = grad / rho [m ice a^-1 m^-1] (1 mm w.e. = 1 kg m^-2).
        mb = dict(mb_kind="linear", mb_ela=float(smb.reference),
                  mb_grad=float(smb.gradient) * phys.rho)
    else:
        mb = dict(mb_kind="zero", mb_ela=0.0, mb_grad=0.0)
    with tempfile.TemporaryDirectory(prefix="oggm_peer_") as tmp:
        case, out = Path(tmp, "case.npz"), Path(tmp, "result.npz")
        np.savez(case, bed=domain.bed, thickness=domain.thickness, dx=domain.grid.dx,
                 glen_a=phys.A / SECONDS_PER_YEAR, rho=phys.rho, g=phys.g,
                 years=years, max_dt=domain.solver["max_dt"] * SECONDS_PER_YEAR, cfl=CFL,
                 year_seconds=SECONDS_PER_YEAR, repeat=repeat, **mb)
        env = dict(os.environ, HOME=tmp, MPLBACKEND="Agg")
        proc = subprocess.run([python, str(PEER), str(case), str(out)], env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"OGGM peer failed:\n{proc.stderr[-3000:]}")
        data = np.load(out)
        meta = json.loads(str(data["meta"]))
        H = np.asarray(data["thickness"], np.float64)
    ours_mb = np.asarray(smb(jnp.asarray(meta["mb_check_heights"]), 0.0))
    meta["mb_check_ours"] = ours_mb.tolist()
    meta["mb_check_max_diff"] = float(np.max(np.abs(ours_mb - np.asarray(meta["mb_check"]))))
    return dict(meta, thickness=H, **diagnostics(H, domain))


def summarise(model: dict, domain, years: float) -> dict:
    cells = domain.grid.ny * domain.grid.nx
    out = {k: v for k, v in model.items() if k != "thickness"}
    out.update(s_per_year=model["wall_time"] / years,
               time_per_step=model["wall_time"] / max(model["steps"], 1),
               cell_updates_per_s=model["steps"] * cells / model["wall_time"],
               **error_measures(model["thickness"], domain, years))
    return out


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return platform.processor()
    names = [ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")]
    return names[0] if names else platform.processor()


def _without_native(run):
    """``run()`` with the native kernel off (its programs traced anew, and again after)."""
    before = os.environ.get("GLACIER_NATIVE")
    os.environ["GLACIER_NATIVE"] = "0"
    jax.clear_caches()
    try:
        return run()
    finally:
        if before is None:
            os.environ.pop("GLACIER_NATIVE")
        else:
            os.environ["GLACIER_NATIVE"] = before
        jax.clear_caches()


def table(results: dict) -> str:
    head = (f"{'case':7} {'model':8} {'wall s':>8} {'steps':>7} {'s/step':>9} {'s/a':>9} "
            f"{'Mcell/s':>8} {'compile':>8} {'V km3':>10} {'A>0 km2':>9} {'A>1m km2':>9} "
            f"{'avH m':>7} {'dome m':>7}")
    lines = [head, "-" * len(head)]
    for case, r in results.items():
        for label in ("glacier", "xla", "rkl2", "oggm"):
            m = r.get(label)
            if m is None:
                continue
            comp = f"{m['compile_time']:8.2f}" if "compile_time" in m else f"{'-':>8}"
            err = (f"{m['avH']:7.3f} {m['dome_error']:7.3f}" if "avH" in m
                   else f"{'-':>7} {'-':>7}")
            lines.append(
                f"{case:7} {label:8} {m['wall_time']:8.3f} {m['steps']:7d} "
                f"{m['time_per_step']:9.2e} {m['s_per_year']:9.2e} "
                f"{m['cell_updates_per_s'] / 1e6:8.2f} {comp} {m['volume'] / 1e9:10.4f} "
                f"{m['area'] / 1e6:9.2f} {m['area_1m'] / 1e6:9.2f} {err}")
        if "rkl2_comparison" in r:
            c = r["rkl2_comparison"]
            lines.append(
                f"{'':7} {'rkl2':8} against our explicit run: {c['explicit_over_rkl2']:.1f}x "
                f"faster, dV {100 * c['volume_rel_diff']:+.3f} %, RMS dH "
                f"{100 * c['rms_rel_diff']:.2f} % of the mean; OGGM/rkl2: "
                + (f"{c['oggm_over_rkl2']:.1f}x wall" if "oggm_over_rkl2" in c else "-"))
        if "xla_comparison" in r:
            c = r["xla_comparison"]
            lines.append(
                f"{'':7} {'xla':8} the same explicit run without the native kernel: "
                f"{c['xla_over_native']:.2f}x the time, max|dH| {c['max_abs_dH']:.1e} m; "
                "OGGM/xla: " + (f"{c['oggm_over_xla']:.1f}x wall" if "oggm_over_xla" in c
                                else "-"))
        if "comparison" in r:
            c = r["comparison"]
            lines.append(
                f"{'':7} {'ratio':8} OGGM/glacier: {c['speed_ratio']:.1f}x wall, "
                f"{c['per_step_ratio']:.1f}x per step; dV {100 * c['volume_rel_diff']:+.3f} %, "
                f"dA>0 {100 * c['area_rel_diff']:+.2f} %, dA>1m "
                f"{100 * c['area_1m_rel_diff']:+.2f} %, max|dH| {c['max_abs_dH']:.2f} m, "
                f"balance max|db| {c['balance_max_diff']:.1e} m/a")
    return "\n".join(lines)


def profile_grid_sizes(sizes=(10, 25, 50, 100, 200, 400), *, dtype: str, repeat: int) -> list:
    """Time per step against grid size: ``synthetic_valley`` n x n at 100 m from a 50 m slab,
    a fixed number of max_dt-limited steps (2 a at 31 days: about 24 steps per run, timed as
    the best of ``repeat``). A constant time per step at small n is the loop overhead (XLA
    while loop, kernel dispatch); the slope is the cost per cell update."""
    rows = []
    for n in sizes:
        domain = build_domain("synthetic_valley", nx=n, ny=n, dx=100.0)
        fdt = jnp.dtype(dtype)
        H0 = jnp.full(domain.grid.shape, 50.0, fdt)
        bed = jnp.asarray(domain.bed, fdt)
        law = glen_law(domain.physics)
        scheme = ExplicitMUSCL(cfl=CFL, max_dt=domain.solver["max_dt"])

        runs = []
        for _ in range(max(repeat, 3) + 1):  # the first call compiles
            wall, traj = timed_simulate(H0, bed, domain, law, scheme, (0.0, 2.0), None)
            runs.append(wall)
        best, steps = min(runs[1:]), int(np.asarray(traj.steps).sum())
        rows.append(dict(n=n, cells=n * n, steps=steps, time_per_step=best / steps,
                         ns_per_cell_update=best / steps / (n * n) * 1e9))
        print(f"n = {n:4d}: {steps:4d} steps, {best / steps * 1e6:9.1f} us/step, "
              f"{best / steps / (n * n) * 1e9:7.2f} ns per cell update")
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="valley,halfar")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--out", default="benchmark_forward.json")
    parser.add_argument("--oggm-python", default="/opt/oggm-venv/bin/python")
    parser.add_argument("--pin-cpu", type=int, default=None, metavar="CPU",
                        help="pin this process and the OGGM subprocess to one core (a fair "
                        "single-core comparison; NumPy in OGGM is single-threaded)")
    parser.add_argument("--profile", action="store_true",
                        help="also time a step against grid size (valley, n = 10 .. 400)")
    parser.add_argument("--rkl2", default="", metavar="CASE=YEARS,...",
                        help="also run the RKL2 scheme with super-steps of up to YEARS on "
                        "these cases, e.g. valley=1,halfar=250")
    parser.add_argument("--xla", action="store_true",
                        help="also run the explicit scheme without the native kernel "
                        "(GLACIER_NATIVE=0: XLA's expressions of the face fluxes) in this run")
    parser.add_argument("--open-edges", action="store_true",
                        help="keep glacier's outflow edges instead of OGGM's emptied ring")
    args = parser.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {sorted(CASES)}")
    try:
        rkl2 = {k.strip(): float(v) for k, v in (kv.split("=") for kv in args.rkl2.split(",")
                                                 if kv.strip())}
    except ValueError:
        parser.error(f"--rkl2 {args.rkl2!r}: give CASE=YEARS pairs, e.g. valley=1,halfar=250")
    if sorted(set(rkl2) - set(CASES)):
        parser.error(f"--rkl2: unknown case(s) {sorted(set(rkl2) - set(CASES))}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.pin_cpu is not None:
        os.sched_setaffinity(0, {args.pin_cpu})  # before the first computation starts XLA
    have_oggm = Path(args.oggm_python).is_file() and os.access(args.oggm_python, os.X_OK)
    if not have_oggm:
        print(f"OGGM interpreter {args.oggm_python} not found: skipping the OGGM comparison "
              "(install OGGM 1.6.3 into a separate venv and pass --oggm-python).",
              file=sys.stderr)

    results = {}
    for case in cases:
        spec = CASES[case]
        domain = build_domain(spec["name"], **spec["options"])
        years = spec["years"]
        ours = run_ours(domain, years, dtype=args.dtype, repeat=args.repeat,
                        open_edges=args.open_edges)
        r = dict(grid=list(domain.grid.shape), dx=domain.grid.dx, years=years,
                 glacier=summarise(ours, domain, years))
        if have_oggm:
            peer = run_oggm(domain, years, python=args.oggm_python, repeat=args.repeat)
            r["oggm"] = summarise(peer, domain, years)
            dH = np.abs(ours["thickness"] - peer["thickness"])
            r["comparison"] = dict(
                speed_ratio=peer["wall_time"] / ours["wall_time"],
                per_step_ratio=(peer["wall_time"] / peer["steps"])
                / (ours["wall_time"] / ours["steps"]),
                volume_rel_diff=(ours["volume"] - peer["volume"]) / peer["volume"],
                area_rel_diff=(ours["area"] - peer["area"]) / peer["area"],
                area_1m_rel_diff=(ours["area_1m"] - peer["area_1m"]) / peer["area_1m"],
                max_abs_dH=float(dH.max()), mean_abs_dH=float(dH.mean()),
                balance_max_diff=peer["mb_check_max_diff"])
        if args.xla:
            plain = _without_native(lambda d=domain, y=years: run_ours(
                d, y, dtype=args.dtype, repeat=args.repeat, open_edges=args.open_edges))
            r["xla"] = summarise(plain, domain, years)
            c = dict(xla_over_native=plain["wall_time"] / ours["wall_time"],
                     max_abs_dH=float(np.abs(plain["thickness"] - ours["thickness"]).max()))
            if have_oggm:
                c["oggm_over_xla"] = r["oggm"]["wall_time"] / plain["wall_time"]
            r["xla_comparison"] = c
        if case in rkl2:
            fast = run_ours(domain, years, dtype=args.dtype, repeat=args.repeat,
                            open_edges=args.open_edges, rkl2_dt=rkl2[case])
            r["rkl2"] = summarise(fast, domain, years)
            r["rkl2"]["max_dt"] = rkl2[case]
            ice = ours["thickness"] > 0
            c = dict(explicit_over_rkl2=ours["wall_time"] / fast["wall_time"],
                     volume_rel_diff=(fast["volume"] - ours["volume"]) / ours["volume"],
                     rms_rel_diff=float(np.sqrt(np.mean((fast["thickness"] - ours["thickness"])
                                                        ** 2)) / ours["thickness"][ice].mean()))
            if have_oggm:
                c["oggm_over_rkl2"] = r["oggm"]["wall_time"] / fast["wall_time"]
            r["rkl2_comparison"] = c
        results[case] = r

    print(table(results))
    profile = None
    if args.profile:
        print("\nTime per step against grid size (glacier, synthetic_valley):")
        profile = profile_grid_sizes(dtype=args.dtype, repeat=args.repeat)
    report = dict(
        machine=dict(platform=platform.platform(), python=platform.python_version(),
                     cpus=os.cpu_count(), jax=jax.__version__,
                     device=str(jax.devices()[0]), cpu=_cpu_model(),
                     native_kernel=native.usable(jnp.zeros(1)),
                     native_march=native.march()),
        options=dict(dtype=args.dtype, repeat=args.repeat, open_edges=args.open_edges,
                     rkl2=rkl2,
                     pin_cpu=args.pin_cpu,
                     cfl=CFL, oggm_python=args.oggm_python if have_oggm else None),
        cases=results, profile=profile)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
