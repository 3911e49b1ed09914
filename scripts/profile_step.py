"""Where the time of an explicit SIA step goes: XLA's kernels, from ``jax.profiler``.

Runs ``--steps`` steps of the explicit scheme on the 100 x 100 synthetic valley (``--size``)
(spun up for 100 a, float64, CPU) once as a forward solve (``adjoint=ForwardOnly()``) and once
as a gradient (``adjoint=Checkpointed()``, every step's state stored), each under
``jax.profiler``, and sums the time of every XLA kernel (thunk) per step. XLA's optimised HLO,
dumped in the same run, tells what each kernel is: its number of HLO operations, whether it
pads along the minor (x) axis, whether it reduces. Prints, per mode, the kernels by time per
step with their share and kind, the number of kernels per step and the time outside kernels;
writes JSON (``--out``).

    python scripts/profile_step.py [--steps 500] [--top 15] [--size 100] [--out FILE]
                                   [--law scalar|field|closed] [--stable]

``--law field``: Glen's law with A as a field (the same value in every cell), as
``glacier-invert invert.A=field`` runs it; ``closed``: the scalar law in a closed outline (the
spun-up glacier's cells), as ``invert.outline=closed``. ``--stable``: about ``--steps`` steps
at the stability limit (cfl dx^2 / D_max), as simulations and training take them, so that
the gradient also goes through D_max; by default fixed 0.01 a steps, below it.

What it showed (README, "Where a step's time goes"): the two face kernels (MUSCL states,
slopes, diffusivity and flux of each direction, about 90 HLO operations each) take half of the
forward step, and kernels with a zero pad along the minor axis (the outflow limiter's donor
factors; in the reverse sweep, the transpose of every slice) compile to scalar loops.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _hlo_kinds(dump_dir: str, names) -> dict[str, dict]:
    """Kernel name -> (HLO operations, minor-axis pad, reduction), read from the optimised-HLO
    dump of the program that defines most of the profiled kernels ``names`` (kernel names
    repeat across programs)."""
    files = glob.glob(os.path.join(dump_dir, "*after_optimizations.txt"))
    names = set(names)

    def defined(path):
        found = set(re.findall(r"%([\w.\-]+) = [^\n]*? fusion\(", Path(path).read_text()))
        return len(found & names), os.path.getsize(path)

    kinds: dict[str, dict] = {}
    for path in sorted(files, key=defined)[-1:]:
        text = Path(path).read_text()
        comps = {}
        for block in re.split(r"\n(?=%|ENTRY)", text):
            m = re.match(r"%?([\w.\-]+) ", block)
            if m:
                comps[m.group(1)] = block
        for m in re.finditer(r"%([\w.\-]+) = [^\n]*? fusion\([^\n]*calls=%([\w.\-]+)", text):
            body = comps.get(m.group(2), "")
            ops = re.findall(r"= \S+ ([a-z][\w-]*)\(", body)
            # padding=lo_hi[_interior] per dimension, 'x'-separated; the last is the minor
            # axis (row-major layout)
            minor_pad = any(p.split("x")[-1].split("_")[:2] != ["0", "0"]
                            for p in re.findall(r"pad\([^\n]*?padding=([\d_x-]+)", body))
            kinds[m.group(1)] = dict(ops=len(ops), minor_pad=minor_pad,
                                     reduce="reduce" in ops)
        # The native kernels (``ffi_call.N``) by their FFI target, e.g. glacier_sia_faces_vjp
        for m in re.finditer(r'%([\w.\-]+) = [^\n]*?custom-call\([^\n]*?'
                             r'custom_call_target="([\w.\-]+)"', text):
            kinds[m.group(1)] = dict(ops=0, minor_pad=False, reduce=False, target=m.group(2))
    return kinds


def _profile(mode: str, n_steps: int, trace_dir: str) -> tuple[dict, float, float, int]:
    import jax
    import jax.numpy as jnp

    from glacier import simulation as sim
    from glacier import solver as slv
    from glacier.domains import build_domain
    from glacier.laws import ClosedOutline, GlenLaw
    from glacier.schemes import ExplicitMUSCL

    n = int(os.environ.get("PROFILE_SIZE", "100"))  # --size, handed to the child
    kind = os.environ.get("PROFILE_LAW", "scalar")  # --law
    d = build_domain("synthetic_valley", nx=n, ny=n)
    spun = sim.run(d, save_at=slv.SaveAt((0.0, 100.0)), scheme=ExplicitMUSCL(max_dt=0.1))
    H0, bed = jnp.asarray(spun.thickness[-1]), jnp.asarray(d.bed)
    dt = 0.01  # below the stability limit of the spun-up valley: exactly n_steps steps
    save_at = slv.SaveAt((0.0, n_steps * dt))
    scheme = ExplicitMUSCL(max_dt=dt, max_steps=n_steps + 2)
    if os.environ.get("PROFILE_STABLE") == "1":  # --stable: steps at the stability limit
        save_at = slv.SaveAt((0.0, n_steps * 0.044))  # about 0.044 a each, as a run takes them
        law0 = GlenLaw(A=d.physics.A, rho=d.physics.rho, g=d.physics.g)
        n_steps = int(slv.simulate(H0, bed, grid=d.grid, rheology=law0, smb=d.smb,
                                   save_at=save_at, scheme=ExplicitMUSCL()).steps[-1])
        scheme = ExplicitMUSCL(max_steps=n_steps + 2)
    adjoint = slv.ForwardOnly() if mode == "forward" else slv.Checkpointed()

    outline = (H0 > 0).astype(H0.dtype)

    def loss(log_A, H):
        A = jnp.exp(log_A) * (jnp.ones_like(H) if kind == "field" else 1.0)
        law = GlenLaw(A=A, rho=d.physics.rho, g=d.physics.g)
        if kind == "closed":
            law = ClosedOutline(law, outline)
        tr = slv.simulate(H, bed, grid=d.grid, rheology=law, smb=d.smb, save_at=save_at,
                          scheme=scheme, adjoint=adjoint)
        return jnp.mean((tr.thickness[-1] - 1.01 * H0) ** 2)

    f = jax.jit(loss if mode == "forward" else jax.grad(loss, argnums=(0, 1)))
    log_A = jnp.log(d.physics.A)
    jax.block_until_ready(f(log_A, H0))
    wall = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        jax.block_until_ready(f(log_A, H0))
        wall = min(wall, time.perf_counter() - t)
    jax.profiler.start_trace(trace_dir)
    jax.block_until_ready(f(log_A, H0))
    jax.profiler.stop_trace()
    path = sorted(glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True))[-1]
    events = json.load(gzip.open(path))["traceEvents"]
    per: dict[str, list] = collections.defaultdict(lambda: [0, 0.0])
    outer = 0.0
    for e in events:
        name = e.get("name", "")
        if e.get("ph") != "X" or name.startswith("end:"):
            continue
        if name == "ThunkExecutor::Execute (wait for completion)":
            outer = max(outer, e.get("dur", 0.0))
        if name.startswith(("Thunk", "$", "Pjit", "Common", "Allocate", "Handle", "cond",
                            "while", "copy")):
            continue
        per[name][0] += 1
        per[name][1] += e.get("dur", 0.0)
    return per, wall, outer, n_steps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--size", type=int, default=100,
                    help="cells along each side of the synthetic valley")
    ap.add_argument("--mode", choices=("forward", "gradient", "both"), default="both")
    ap.add_argument("--law", choices=("scalar", "field", "closed"), default="scalar",
                    help="Glen's law with a scalar A, a field A, or in a closed outline")
    ap.add_argument("--stable", action="store_true",
                    help="steps at the stability limit, as a run takes them (the gradient then "
                         "also goes through D_max); default: fixed 0.01 a steps")
    ap.add_argument("--out", default="profile_step.json")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:  # one mode in a fresh process, with its own HLO dump
        import jax
        jax.config.update("jax_enable_x64", True)
        per, wall, outer, steps = _profile(args.child, args.steps,
                                           os.environ["PROFILE_TRACE_DIR"])
        kinds = _hlo_kinds(os.environ["PROFILE_DUMP_DIR"], per)
        rows = [dict(kernel=k, calls=n, us_per_step=t / steps, **kinds.get(k, {}))
                for k, (n, t) in per.items() if n >= steps]
        print(json.dumps(dict(mode=args.child, wall_s=wall, traced_s=outer / 1e6, steps=steps,
                              rows=sorted(rows, key=lambda r: -r["us_per_step"]))))
        return 0

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchmark import cpu_model  # scripts/benchmark.py

    modes = ("forward", "gradient") if args.mode == "both" else (args.mode,)
    report = dict(cpu=cpu_model(), cores=os.cpu_count(), steps=args.steps, stable=args.stable,
                  grid=f"{args.size} x {args.size} synthetic valley", dtype="float64", modes={})
    for mode in modes:
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, PROFILE_TRACE_DIR=os.path.join(tmp, "trace"),
                       PROFILE_SIZE=str(args.size), PROFILE_LAW=args.law,
                       PROFILE_STABLE="1" if args.stable else "0",
                       PROFILE_DUMP_DIR=os.path.join(tmp, "hlo"),
                       XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " --xla_dump_to="
                                  + os.path.join(tmp, "hlo") + " --xla_dump_hlo_as_text"))
            proc = subprocess.run([sys.executable, __file__, "--child", mode, "--steps",
                                   str(args.steps)], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        report["modes"][mode] = res
        rows = res["rows"]
        total = sum(r["us_per_step"] for r in rows)
        step_us = res["wall_s"] / res["steps"] * 1e6
        for r in rows:  # the tracer adds a few us to every kernel: shares, scaled to the wall
            r["share"] = r["us_per_step"] / total
            r["scaled_us"] = r["share"] * step_us
        print(f"\n{mode}: {step_us:.0f} us per step (wall, best of 3); {len(rows)} kernels per "
              f"step, {total:.0f} us in the traced run (the tracer's cost per kernel "
              f"included): shares of the traced time, scaled to the wall time")
        print(f"{'kernel':40s} {'us/step':>8} {'share':>6} {'HLO ops':>8} {'minor pad':>9} "
              f"{'reduce':>6}")
        for r in rows[:args.top]:
            name = r["kernel"] + (f" {r['target']}" if r.get("target") else "")
            print(f"{name[:40]:40s} {r['scaled_us']:8.1f} "
                  f"{100 * r['share']:5.1f}% {r.get('ops', 0):8d} "
                  f"{'yes' if r.get('minor_pad') else '':>9} "
                  f"{'yes' if r.get('reduce') else '':>6}")
        pads = sum(r["share"] for r in rows if r.get("minor_pad"))
        print(f"kernels with a minor-axis pad: {100 * pads:.0f} % of the step; kernels under "
              f"2 us: {sum(1 for r in rows if r['scaled_us'] < 2)}")
        report["modes"][mode].update(step_us=step_us, kernel_sum_us=total,
                                     minor_pad_share=pads)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
