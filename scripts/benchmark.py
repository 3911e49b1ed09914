"""The benchmark suite: every speed figure of the README in one run, one table, one JSON.

Runs the part benchmarks, each in its own process (so that one part's compiled programs and
memory do not colour the next), and adds what none of them measures:

- ``forward``: ``benchmark_forward.py --xla`` (valley and Halfar against OGGM's ``Upstream2D``
  where OGGM's interpreter exists: ``--oggm-python``; and ours without the native kernels);
- ``gradient``: ``benchmark_gradient.py`` (gradient over forward at 10^2..10^4 steps, memory);
- ``gradient_stable``: the same with the steps at the stability limit, as a run takes them
  (``--stable``: the gradient then also flows through D_max);
- ``implicit``: ``benchmark_implicit.py`` (explicit against implicit and RKL2 at equal
  accuracy);
- ``batching``: ``benchmark_batching.py`` (one padded vmapped batch against one program per
  shape: the twin's training epoch);
- ``glaciers``: ``benchmark_glaciers.py`` (time per epoch and peak memory of training on 32
  to 512 synthetic glaciers, one padded batch against mini-batches of 32 grouped by size);
- ``inversion``: ``python -m glacier invert glacier=south_glacier`` as a user runs it (the
  default configuration: five-fold spatial cross-validation and the final inversion), its
  wall and compile times and held-out error read from the run's ``provenance.json``;
- ``scaling`` (here): the explicit step on N x N valleys (``--sizes``) beside a STREAM-like
  copy of the same arrays in the same run: time per step, cell updates per second, and the
  effective throughput T_eff = bytes a step must move / time per step (thickness and bed read,
  thickness written: 3 arrays of the field's dtype) against the copy bandwidth (one array
  read, one written), so the fraction says how close the step is to the machine's memory
  system at that size (ParallelStencil's GPU SIA kernels reach 60-70 % of peak bandwidth).

Ratios first, absolute figures second; every JSON carries the CPU model (``lscpu``), the
device, the JAX version and the options. Not a test: timings depend on the machine.

    python scripts/benchmark.py [--out benchmark] [--parts forward,gradient,gradient_stable,
        implicit,batching,glaciers,inversion,scaling] [--repeat 3]
        [--sizes 64,128,256,512,1024] [--quick]

``--quick`` (the smoke test of ``scripts/gpu_check.sh --cpu``): forward on the valley only,
100-step gradient, sizes 32 and 64, no implicit or batching parts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = ("forward", "gradient", "gradient_stable", "implicit", "batching", "glaciers",
         "inversion", "scaling")
REPORTS = {"inversion": "inversion_run/provenance.json"}
"""Where a part's JSON report is, within ``--out``, when not ``<part>.json``."""


def cpu_model() -> str:
    """``lscpu``'s model name (``platform.processor()`` where lscpu is missing)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    for line in out.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def part_commands(args) -> dict[str, list[str]]:
    """The command line of each part benchmark, writing its JSON into ``args.out``."""
    out, r = Path(args.out), str(args.repeat)
    py = [sys.executable]
    if args.quick:
        return {
            "forward": py + [str(HERE / "benchmark_forward.py"), "--cases", "valley",
                             "--repeat", "1", "--out", str(out / "forward.json"),
                             "--oggm-python", args.oggm_python],
            "gradient": py + [str(HERE / "benchmark_gradient.py"), "--steps", "100",
                              "--repeat", "1", "--plain-up-to", "100", "--huge-pages", "off",
                              "--out", str(out / "gradient.json")],
        }
    return {
        "forward": py + [str(HERE / "benchmark_forward.py"), "--cases", "valley,halfar",
                         "--rkl2", "valley=1,halfar=250", "--xla",
                         "--repeat", r, "--out", str(out / "forward.json"),
                         "--oggm-python", args.oggm_python],
        "gradient": py + [str(HERE / "benchmark_gradient.py"), "--steps", "100,1000,10000",
                          "--repeat", r, "--out", str(out / "gradient.json")],
        "gradient_stable": py + [str(HERE / "benchmark_gradient.py"), "--steps",
                                 "100,1000,10000", "--stable", "--plain-up-to", "0",
                                 "--repeat", r, "--out", str(out / "gradient_stable.json")],
        "implicit": py + [str(HERE / "benchmark_implicit.py"), "--cases", "halfar,valley100",
                          "--out", str(out / "implicit.json")],
        "batching": py + [str(HERE / "benchmark_batching.py"), "--repeat", r,
                          "--out", str(out / "batching.json")],
        "glaciers": py + [str(HERE / "benchmark_glaciers.py"), "--glaciers",
                          "32,64,128,256,512", "--batch-size", "32",
                          "--out", str(out / "glaciers.json")],
        "inversion": py + ["-m", "glacier", "invert", "glacier=south_glacier",
                           f"hydra.run.dir={out / 'inversion_run'}"],
    }


def run_part(name: str, cmd: list[str], out: Path) -> dict:
    """Run one part benchmark; its output goes to ``out/<name>.log``, its JSON is read back."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    wall = time.perf_counter() - start
    (out / f"{name}.log").write_text(proc.stdout + proc.stderr)
    result = dict(command=" ".join(cmd), returncode=proc.returncode, wall_s=wall)
    path = out / REPORTS.get(name, f"{name}.json")
    if proc.returncode == 0 and path.is_file():
        result["report"] = json.loads(path.read_text())
    else:
        result["error"] = (proc.stderr or proc.stdout)[-2000:]
    return result


def scaling(sizes: list[int], repeat: int, steps: int, dtype: str) -> list[dict]:
    """The explicit step and a copy of the same arrays on N x N valleys (see the docstring)."""
    import jax
    import jax.numpy as jnp

    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    from glacier import solver as slv
    from glacier.domains import build_domain
    from glacier.laws import glen_law
    from glacier.schemes import ExplicitMUSCL

    item = jnp.dtype(dtype).itemsize
    rows = []
    for n in sizes:
        domain = build_domain("synthetic_valley", nx=n, ny=n, dx=10_000.0 / n)
        bed = jnp.asarray(domain.bed, dtype)
        # a glacier that flows: the valley's perfect-plasticity-like wedge, 100 m under the ELA
        H0 = jnp.asarray(jnp.clip(2700.0 - bed, 0.0, 150.0), dtype)
        law = glen_law(domain.physics)
        # about ``steps`` adaptive steps (their rate per year counted first)
        scheme = ExplicitMUSCL(cfl=0.124, max_dt=1.0, max_steps=10_000_000)

        def forward(H, t_end, bed=bed, domain=domain, law=law, scheme=scheme):
            return slv.simulate(H, bed, grid=domain.grid, rheology=law, smb=domain.smb,
                                save_at=slv.SaveAt((0.0, t_end)), scheme=scheme)

        t_probe, probe_steps = 1e-4, 0  # a short run whose steps give the rate per year
        while probe_steps < 20 and t_probe < 1e4:
            t_probe *= 10.0
            probe_steps = int(forward(H0, t_probe).steps.sum())
        t_end = steps * t_probe / max(1, probe_steps)
        t0 = time.perf_counter()
        res = forward(H0, t_end)
        jax.block_until_ready(res.thickness)
        first = time.perf_counter() - t0
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            res = forward(H0, t_end)
            jax.block_until_ready(res.thickness)
            best = min(best, time.perf_counter() - t0)
        n_steps = max(1, int(res.steps.sum()))
        # the copy: ``reps`` passes in one compiled loop (no dispatch per pass), each reading
        # one array and writing another (a flip, so that nothing can be elided)
        reps = max(10, int(2e8 / (n * n * item)))  # about 0.2 GB moved per timing
        copy = jax.jit(lambda x, reps=reps: jax.lax.fori_loop(
            0, reps, lambda i, y: jnp.flip(y, 0) + 1.0, x))
        x = jnp.ones((n, n), dtype)
        jax.block_until_ready(copy(x))
        best_copy = float("inf")
        for _ in range(max(3, repeat)):
            t0 = time.perf_counter()
            jax.block_until_ready(copy(x))
            best_copy = min(best_copy, (time.perf_counter() - t0) / reps)
        per_step = best / n_steps
        cells = n * n
        # the native kernels skip ice-free ground: the share of cells with ice at the end
        ice = float(jnp.mean(res.thickness[-1] > 0))
        t_eff = 3 * cells * item / per_step
        bandwidth = 2 * cells * item / best_copy
        rows.append(dict(n=n, cells=cells, dx=10_000.0 / n, steps=n_steps,
                         time_per_step_s=per_step, cell_updates_per_s=cells / per_step,
                         compile_s=max(0.0, first - best), t_eff_GBps=t_eff / 1e9,
                         copy_GBps=bandwidth / 1e9, fraction_of_copy=t_eff / bandwidth,
                         bytes_per_step=3 * cells * item, ice_fraction=ice, dtype=dtype))
        print(f"scaling {n:5d}^2: {per_step:9.2e} s/step  {cells / per_step / 1e6:8.1f} "
              f"Mcell/s  T_eff {t_eff / 1e9:7.2f} GB/s  copy {bandwidth / 1e9:7.2f} GB/s  "
              f"({t_eff / bandwidth:.1%}; ice on {ice:.0%} of the cells)", flush=True)
    return rows


def summary_rows(parts: dict) -> list[dict]:
    """The suite's table: (kind, what, value, unit) rows, ratios first."""
    ratios, absolute = [], []

    def add(kind, what, value, unit=""):
        (ratios if kind == "ratio" else absolute).append(
            dict(kind=kind, what=what, value=value, unit=unit))

    fw = parts.get("forward", {}).get("report")
    if fw:
        for case, r in fw["cases"].items():
            g = r["glacier"]
            if "comparison" in r:
                add("ratio", f"forward {case}: OGGM Upstream2D time / ours",
                    r["comparison"]["speed_ratio"], "x")
            if "xla_comparison" in r:
                add("ratio", f"forward {case}: ours without / with the native kernels "
                    "(XLA's expressions, GLACIER_NATIVE=0)",
                    r["xla_comparison"]["xla_over_native"], "x")
            if "oggm_over_rkl2" in r.get("rkl2_comparison", {}):
                c = r["rkl2_comparison"]
                add("ratio", f"forward {case}: OGGM time / ours with rkl2 (max_dt "
                    f"{r['rkl2']['max_dt']:g} a; RMS {100 * c['rms_rel_diff']:.2f} % of our "
                    "explicit run)", c["oggm_over_rkl2"], "x")
            add("abs", f"forward {case}: time per simulated year", g["s_per_year"], "s/a")
            add("abs", f"forward {case}: cell updates per second",
                g["cell_updates_per_s"] / 1e6, "Mcell/s")
            add("abs", f"forward {case}: compile", g.get("compile_time", float("nan")), "s")
            if "avH" in g:
                add("abs", f"forward {case}: avH against the exact solution", g["avH"], "m")
    gs = parts.get("gradient_stable", {}).get("report")
    if gs:
        for r in gs["rows"]:
            add("ratio", f"gradient / forward, {r['steps']} steps at the stability limit "
                f"({r.get('default_path')})", r["ratio"], "x")
    gr = parts.get("gradient", {}).get("report")
    if gr:
        for r in gr["rows"]:
            add("ratio", f"gradient / forward, {r['steps']} steps ({r.get('default_path')})",
                r["ratio"], "x")
            if r.get("ratio_chunked") is not None and r.get("default_path") != "chunked":
                add("ratio", f"gradient / forward, {r['steps']} steps (chunked)",
                    r["ratio_chunked"], "x")
            add("abs", f"gradient, {r['steps']} steps: peak RSS", r["peak_rss_mb"], "MB")
            if r.get("faults_per_gradient") is not None:
                add("abs", f"gradient, {r['steps']} steps: minor page faults per gradient",
                    r["faults_per_gradient"], "")
            if r.get("huge_pages"):
                add("ratio", f"gradient / forward, {r['steps']} steps "
                    f"({r['huge_pages'].get('default_path')}), GLIBC_TUNABLES="
                    "glibc.malloc.hugetlb=1", r["huge_pages"]["ratio"], "x")
    im = parts.get("implicit", {}).get("report")
    if im:
        for r in im["cases"]:
            for label in ("implicit", "rkl2"):
                if label in r:
                    add("ratio", f"{r['case']}: explicit time / {label} (equal accuracy: "
                        f"{r[label]['equal_accuracy']})", r[label]["speedup"], "x")
    ba = parts.get("batching", {}).get("report")
    if ba:
        pad, per = ba["rows"][0], ba["rows"][1]
        add("ratio", "training epoch: per-shape programs / one padded batch",
            per["run_s"] / pad["run_s"], "x")
        add("abs", "training epoch on the twin (padded batch)", pad["run_s"], "s")
    gl = parts.get("glaciers", {}).get("report")
    if gl:
        ok = [r for r in gl["rows"] if "error" not in r]
        for r in ok:
            add("abs", f"training epoch, {r['glaciers']} glaciers, {r['layout']}",
                r["epoch_s"], "s")
            add("abs", f"peak memory, {r['glaciers']} glaciers, {r['layout']}",
                r["rss_peak_mb"], "MB")
        big = max((r["glaciers"] for r in ok), default=None)
        full = [r for r in ok if r["glaciers"] == big and r["layout"] == "full"]
        mini = [r for r in ok if r["glaciers"] == big and r["layout"] != "full"]
        if full and mini:
            add("ratio", f"{big} glaciers: step memory full batch / {mini[0]['layout']}",
                full[0]["step_temp_mb"] / max(mini[0]["step_temp_mb"], 1e-9), "x")
    inv = parts.get("inversion", {}).get("report")
    if inv:
        add("abs", "inversion South Glacier (glacier-invert, 5-fold CV and final): wall time",
            inv["wall_time_s"], "s")
        add("abs", "inversion South Glacier: of which compiling", inv["compile_time_s"], "s")
        if "cv_rmse" in inv:
            add("abs", "inversion South Glacier: held-out RMSE", inv["cv_rmse"], "m")
    for r in parts.get("scaling", {}).get("rows", []):
        add("ratio", f"explicit step {r['n']}^2: T_eff / copy bandwidth", r["fraction_of_copy"],
            "")
        add("abs", f"explicit step {r['n']}^2: cell updates per second",
            r["cell_updates_per_s"] / 1e6, "Mcell/s")
    return ratios + absolute


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmark", help="folder for the JSON and logs")
    ap.add_argument("--parts", default=",".join(PARTS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", default="64,128,256,512,1024")
    ap.add_argument("--scaling-steps", type=int, default=200)
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument("--oggm-python", default="/opt/oggm-venv/bin/python")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    parts_wanted = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts_wanted) - set(PARTS))
    if unknown:
        ap.error(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = [32, 64] if args.quick else [int(s) for s in args.sizes.split(",") if s]
    commands = part_commands(args)
    parts: dict[str, dict] = {}
    for name in parts_wanted:
        if name == "scaling":
            continue
        if name not in commands:
            parts[name] = dict(skipped="--quick")
            continue
        print(f"benchmark: {name} ...", flush=True)
        parts[name] = run_part(name, commands[name], out)
        if parts[name]["returncode"]:
            print(f"benchmark: {name} failed (exit {parts[name]['returncode']}); see "
                  f"{out / (name + '.log')}", file=sys.stderr)
    if "scaling" in parts_wanted:
        steps = 20 if args.quick else args.scaling_steps
        parts["scaling"] = dict(rows=scaling(sizes, 1 if args.quick else args.repeat, steps,
                                             args.dtype))
    import jax

    meta = dict(cpu=cpu_model(), cores=os.cpu_count(), platform=platform.platform(),
                python=platform.python_version(), jax=jax.__version__,
                device=str(jax.devices()[0]), backend=jax.default_backend(),
                options=vars(args))
    rows = summary_rows(parts)
    width = max((len(r["what"]) for r in rows), default=10)
    print(f"\nCPU: {meta['cpu']} ({meta['cores']} cores); device {meta['device']}")
    print(f"{'':2}{'measure':<{width}}  {'value':>10}")
    for r in rows:
        print(f"{'R ' if r['kind'] == 'ratio' else '  '}{r['what']:<{width}}  "
              f"{r['value']:10.3g} {r['unit']}")
    report = dict(meta=meta, summary=rows, parts=parts)
    (out / "benchmark.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {out / 'benchmark.json'}")
    failed = [n for n, p in parts.items() if p.get("returncode")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
