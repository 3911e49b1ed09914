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
  fresh subprocess).

The steps are 0.01 a, below the stability limit, so that a run has exactly the steps asked
for; their length then does not depend on the largest diffusivity D_max, and the gradient has
no path through it. With ``--stable`` the steps are those a simulation or a training run
takes, each at the stability limit cfl dx^2 / D_max (max_dt 1 a), for a simulated time of
about the steps asked for (the gradient then also flows through D_max to every face at the
maximum).

Prints a table and writes JSON (``--out``). Not a test: timings depend on the machine.

    python scripts/benchmark_gradient.py [--steps 100,1000,10000] [--repeat 3] [--stable]
        [--memory-budget GIB] [--out FILE]
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
    for _ in range(repeat):
        for name, f in fns.items():
            t = time.perf_counter()
            jax.block_until_ready(f(log_A, H0))
            best[name] = min(best[name], time.perf_counter() - t)
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
    ap.add_argument("--out", default="benchmark_gradient.json")
    ap.add_argument("--case", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case is not None:  # child process: one case, JSON on stdout
        print(json.dumps(_case(args.case, args.repeat, args.case <= args.plain_up_to,
                               args.memory_budget, args.stable)))
        return 0
    rows = []
    for n in [int(s) for s in args.steps.split(",")]:
        proc = subprocess.run([sys.executable, __file__, "--case", str(n), "--repeat",
                               str(args.repeat), "--plain-up-to", str(args.plain_up_to),
                               "--memory-budget", str(args.memory_budget),
                               *(["--stable"] if args.stable else [])],
                              capture_output=True, text=True, env=dict(os.environ))
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            return proc.returncode
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    mb = lambda b: "        -" if b is None else f"{b / 2**20:9.1f}"
    x = lambda v: "        -" if v is None else f"{v:9.2f}"
    print(f"{'steps':>7} {'fwd s':>8} {'grad s':>8} {'grad/fwd':>9} {'path':>8} "
          f"{'stored':>9} {'chunked':>9} {'stored MB':>9} {'chunk MB':>9} {'plain MB':>9} "
          f"{'peak RSS MB':>12}")
    for r in rows:
        print(f"{r['steps']:7d} {r['forward_s']:8.3f} {r['gradient_s']:8.3f} {r['ratio']:9.2f} "
              f"{r['default_path']:>8} {x(r['ratio_stored'])} {x(r['ratio_chunked'])} "
              f"{mb(r['temp_bytes_stored'])} {mb(r['temp_bytes_checkpointed'])} "
              f"{mb(r['temp_bytes_plain'])} {r['peak_rss_mb']:12.0f}")
    print(f"path: Checkpointed's default with memory_budget={args.memory_budget:g} GiB "
          "(stored: every step's state; chunked: sqrt(steps) chunks, one more forward)")
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
                cpu=cpu_model())
    with open(args.out, "w") as f:
        json.dump(dict(meta=meta, rows=rows), f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
