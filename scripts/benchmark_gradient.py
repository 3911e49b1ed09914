"""Cost of a reverse-mode gradient through the SIA solve, against the forward solve.

For simulations of 10^2, 10^3 and 10^4 steps on the 100 x 100 synthetic valley (spun up for
100 a so that ice flows everywhere), measures

- the wall time of one forward solve (``adjoint=ForwardOnly()``, a while loop) and of one
  gradient of a thickness misfit with respect to log A and the initial thickness, best of
  ``--repeat`` runs after compilation (the three alternate, so that the machine's noise hits
  them alike), and their ratio, for the two paths of ``adjoint=Checkpointed()``:
  ``stored`` (every step's state kept, the default when they fit in ``--memory-budget``) and
  ``chunked`` (``memory_budget=0``: one state per chunk of sqrt(steps), one more forward);
- the memory the compiled gradient needs: XLA's temporary-buffer size of the compiled program
  (``compiled.memory_analysis().temp_size_in_bytes``), for both paths and for the bounded scan
  that keeps every step's internals (``adjoint=StoreAll()``, compiled but not run), and the
  growth factor per decade of steps;
- the process's peak resident memory while running the checkpointed gradient (each case in a
  fresh subprocess), and the minor page faults per gradient;
- the same case again in a process started with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``
  (``--huge-pages both``, the default where glibc 2.35+ and the kernel support it). XLA's CPU
  runtime allocates a call's temporary buffers with ``posix_memalign`` from its threads'
  malloc arenas, which map any block above 32 MB afresh at every call: the stack of stored
  states (80 MB at 10^3 steps) then takes one page fault per 4 kB page at every gradient
  (about 20 000), and the tunable makes glibc back such blocks with transparent huge pages.

The steps are 0.01 a, below the stability limit, so that a run has exactly the steps asked
for; their length then does not depend on the largest diffusivity D_max, and the gradient has
no path through it. With ``--stable`` the steps are those a simulation or a training run
takes, each at the stability limit cfl dx^2 / D_max (max_dt 1 a), for a simulated time of
about the steps asked for (the gradient then also flows through D_max to every face at the
maximum).

Prints a table and writes JSON (``--out``). Not a test: timings depend on the machine.

    python scripts/benchmark_gradient.py [--steps 100,1000,10000] [--repeat 3] [--stable]
        [--memory-budget GIB] [--huge-pages both|off|on] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

# glibc's tunable that backs malloc's large blocks with transparent huge pages (madvise): the
# stack of stored states, which XLA allocates afresh at every call, then takes one page fault
# per 2 MB instead of per 4 kB.
HUGE_PAGES = "glibc.malloc.hugetlb=1"


def huge_pages_supported() -> bool:
    """Whether ``HUGE_PAGES`` can act here: glibc 2.35 or later, transparent huge pages not
    disabled."""
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
        major_minor = tuple(int(v) for v in version.split(".")[:2])
    except (AttributeError, OSError, ValueError):
        return False
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    enabled = thp.read_text() if thp.exists() else "[never]"
    return name == "glibc" and major_minor >= (2, 35) and "[never]" not in enabled


def _case(n_steps: int, repeat: int, run_plain: bool, budget_gib: float,
          stable: bool = False) -> dict:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    from glacier import simulation as sim
    from glacier import solver as slv
    from glacier.domains import build_domain
    from glacier.laws import GlenLaw
    from glacier.schemes import ExplicitMUSCL

    d = build_domain("synthetic_valley")
    physics = d.physics
    spun = sim.run(d, save_at=slv.SaveAt((0.0, 100.0)), scheme=ExplicitMUSCL(max_dt=0.1))
    H0 = jnp.asarray(spun.thickness[-1])
    bed = jnp.asarray(d.bed)
    dt = 0.01  # below the stability limit of the spun-up valley (~0.066 a): exactly n steps
    T = n_steps * dt
    target = H0 * 1.01
    save_at = slv.SaveAt((0.0, T))
    budget = n_steps + 2
    scheme = ExplicitMUSCL(max_dt=dt, max_steps=budget)
    if stable:  # steps at the stability limit (about 0.044 a here), as a run takes them
        save_at = slv.SaveAt((0.0, n_steps * 0.044))
        taken = int(jax.jit(lambda a, h: slv.simulate(
            h, bed, grid=d.grid, rheology=GlenLaw(A=jnp.exp(a), rho=physics.rho, g=physics.g),
            smb=d.smb, save_at=save_at, scheme=ExplicitMUSCL()).steps[-1])(
                jnp.log(physics.A), H0))
        budget = taken + 2
        scheme = ExplicitMUSCL(max_steps=budget)

    def make(adjoint):
        def loss(log_A, H):
            law = GlenLaw(A=jnp.exp(log_A), rho=physics.rho, g=physics.g)
            tr = slv.simulate(H, bed, grid=d.grid, rheology=law, smb=d.smb, save_at=save_at,
                              scheme=scheme, adjoint=adjoint)
            return jnp.mean((tr.thickness[-1] - target) ** 2)
        return loss

    log_A = jnp.log(physics.A)
    stored = slv.Checkpointed(memory_budget=int(budget_gib * 2**30))
    chunked = slv.Checkpointed(memory_budget=0)
    state = slv.state_bytes(H0) + 64
    fns = {"forward": jax.jit(make(slv.ForwardOnly())),
           "stored": jax.jit(jax.grad(make(stored), argnums=(0, 1))),
           "chunked": jax.jit(jax.grad(make(chunked), argnums=(0, 1)))}
    if not stored.stores_all(budget, state):
        del fns["stored"]  # over the budget: the default is the chunked path
    for f in fns.values():
        jax.block_until_ready(f(log_A, H0))
    best = dict.fromkeys(fns, float("inf"))
    faults = dict.fromkeys(fns, 0)  # minor page faults, summed over the timed calls
    for _ in range(repeat):
        for name, f in fns.items():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t = time.perf_counter()
            jax.block_until_ready(f(log_A, H0))
            best[name] = min(best[name], time.perf_counter() - t)
            faults[name] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    steps = int(jax.jit(lambda a, h: slv.simulate(
        h, bed, grid=d.grid, rheology=GlenLaw(A=jnp.exp(a), rho=physics.rho, g=physics.g),
        smb=d.smb, save_at=save_at, scheme=scheme).steps[-1])(log_A, H0))

    def temp_bytes(adjoint):
        f = jax.jit(jax.grad(make(adjoint), argnums=(0, 1)))
        mem = f.lower(log_A, H0).compile().memory_analysis()
        return None if mem is None else int(mem.temp_size_in_bytes)

    t_fwd = best["forward"]
    t_stored = best.get("stored")
    default = "stored" if t_stored is not None else "chunked"
    return dict(steps=steps, forward_s=t_fwd, gradient_s=best[default], default_path=default,
                ratio=best[default] / t_fwd,
                stored_s=t_stored, ratio_stored=None if t_stored is None else t_stored / t_fwd,
                chunked_s=best["chunked"], ratio_chunked=best["chunked"] / t_fwd,
                faults_per_gradient=faults[default] / repeat,
                faults_per_forward=faults["forward"] / repeat,
                memory_budget_gib=budget_gib,
                temp_bytes_stored=temp_bytes(stored) if t_stored is not None else None,
                temp_bytes_checkpointed=temp_bytes(chunked),
                temp_bytes_plain=temp_bytes(slv.StoreAll()) if run_plain else None,
                peak_rss_mb=rss / 1024.0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", default="100,1000,10000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--plain-up-to", type=int, default=10000,
                    help="compile the store-everything gradient up to this many steps")
    ap.add_argument("--memory-budget", type=float, default=2.0, metavar="GIB",
                    help="Checkpointed(memory_budget=...) of the default path [GiB]")
    ap.add_argument("--stable", action="store_true",
                    help="steps at the stability limit (as runs take them), not 0.01 a")
    ap.add_argument("--huge-pages", choices=("both", "off", "on"), default="both",
                    help=f"run each case also (both) or only (on) with GLIBC_TUNABLES="
                         f"{HUGE_PAGES} (where glibc and the kernel support it)")
    ap.add_argument("--out", default="benchmark_gradient.json")
    ap.add_argument("--case", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case is not None:  # child process: one case, JSON on stdout
        print(json.dumps(_case(args.case, args.repeat, args.case <= args.plain_up_to,
                               args.memory_budget, args.stable)))
        return 0
    huge = args.huge_pages if huge_pages_supported() else "off"
    if huge != args.huge_pages:
        print(f"--huge-pages {args.huge_pages}: {HUGE_PAGES} cannot act here (it needs glibc "
              "2.35+ and transparent huge pages not disabled); running without it")

    def child(n: int, huge_pages: bool) -> dict:
        env = dict(os.environ)
        if huge_pages:
            env["GLIBC_TUNABLES"] = ":".join(filter(None, [env.get("GLIBC_TUNABLES"),
                                                          HUGE_PAGES]))
        proc = subprocess.run([sys.executable, __file__, "--case", str(n), "--repeat",
                               str(args.repeat), "--plain-up-to", str(args.plain_up_to),
                               "--memory-budget", str(args.memory_budget),
                               *(["--stable"] if args.stable else [])],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            raise SystemExit(proc.returncode)
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["glibc_tunables"] = env.get("GLIBC_TUNABLES")
        return row

    rows = []
    for n in [int(s) for s in args.steps.split(",")]:
        row = child(n, huge == "on")
        if huge == "both":  # the same case again, malloc's large blocks on huge pages
            row["huge_pages"] = child(n, True)
        rows.append(row)
    mb = lambda b: "        -" if b is None else f"{b / 2**20:9.1f}"
    x = lambda v: "        -" if v is None else f"{v:9.2f}"
    print(f"{'steps':>7} {'fwd s':>8} {'grad s':>8} {'grad/fwd':>9} {'path':>8} "
          f"{'stored':>9} {'chunked':>9} {'stored MB':>9} {'chunk MB':>9} {'plain MB':>9} "
          f"{'peak RSS MB':>12} {'faults':>8} {'huge pages':>10} {'faults':>7}")
    for r in rows:
        h = r.get("huge_pages")
        print(f"{r['steps']:7d} {r['forward_s']:8.3f} {r['gradient_s']:8.3f} {r['ratio']:9.2f} "
              f"{r['default_path']:>8} {x(r['ratio_stored'])} {x(r['ratio_chunked'])} "
              f"{mb(r['temp_bytes_stored'])} {mb(r['temp_bytes_checkpointed'])} "
              f"{mb(r['temp_bytes_plain'])} {r['peak_rss_mb']:12.0f} "
              f"{r['faults_per_gradient']:8.0f} "
              + (f"{h['ratio']:10.2f} {h['faults_per_gradient']:7.0f}" if h else
                 f"{'-':>10} {'-':>7}"))
    print(f"path: Checkpointed's default with memory_budget={args.memory_budget:g} GiB "
          "(stored: every step's state; chunked: sqrt(steps) chunks, one more forward); "
          "faults: minor page faults per gradient")
    if huge == "both":
        print(f"huge pages: grad/fwd of the same case in a process started with "
              f"GLIBC_TUNABLES={HUGE_PAGES}")
    elif huge == "on":
        print(f"every case ran with GLIBC_TUNABLES={HUGE_PAGES}")
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        decades = max(1e-9, (len(rows) - 1))
        growth = (b["temp_bytes_checkpointed"] / a["temp_bytes_checkpointed"]) ** (1 / decades)
        print(f"chunked temporary memory grows x{growth:.2f} per decade of steps "
              f"(x10 would be linear, x3.16 = sqrt)")
    import jax
    from benchmark import cpu_model  # scripts/benchmark.py
    meta = dict(machine=platform.platform(), cpu_count=os.cpu_count(), jax=jax.__version__,
                grid="100 x 100 synthetic valley", dtype="float64",
                steps="at the stability limit" if args.stable else "0.01 a",
                cpu=cpu_model(), huge_pages=huge)
    with open(args.out, "w") as f:
        json.dump(dict(meta=meta, rows=rows), f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
