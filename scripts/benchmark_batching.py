"""Why glaciers are trained as one padded, vmapped batch: a measurement.

For the twin experiment's glaciers, times one loss-and-gradient evaluation (what one training
epoch costs) in two layouts:

- ``padded``: all glaciers padded to a common grid and stacked; one jitted, vmapped program
  (what ``glacier.train`` does);
- ``per_shape``: each glacier on its own grid, one jitted program per shape (glaciers with equal
  shapes would share one), run one after the other; the losses are summed on the host.

Reports compile time and best-of-N run time of each, the number of cells updated per step
(padding included) and the ratio. Prints a table and writes JSON.

    python scripts/benchmark_batching.py [--repeat 3] [--out benchmark_batching.json]
"""

from __future__ import annotations

import argparse
import json
import time

import jax

jax.config.update("jax_enable_x64", True)

from glacier import experiments as ex  # noqa: E402
from glacier import laws  # noqa: E402
from glacier import train as tr  # noqa: E402


def _timed(f, *args, repeat):
    t = time.perf_counter()
    jax.block_until_ready(f(*args))
    compile_s = time.perf_counter() - t
    best = min(_once(f, *args) for _ in range(repeat))
    return compile_s, best


def _once(f, *args):
    t = time.perf_counter()
    jax.block_until_ready(f(*args))
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default="benchmark_batching.json")
    args = ap.parse_args(argv)

    tw = ex.twin_A_of_T()
    law = laws.NeuralAofT.create(seed=0, bounds=laws.PRIOR_BOUNDS)
    problem = tr.size_step_budget(law, tw.batch, tw.problem)
    budget = problem.scheme.max_steps
    grad = jax.jit(jax.value_and_grad(lambda l, b: tr.loss_fn(l, b, problem)[0]))
    c_pad, t_pad = _timed(grad, law, tw.batch, repeat=args.repeat)
    cells_pad = tw.batch.size * problem.grid.ny * problem.grid.nx

    # Per shape: each glacier alone on its own (margin-padded) grid.
    compile_total, run_total, cells = 0.0, 0.0, 0
    for g, d in enumerate(tw.domains):
        one, grid = tr.stack_domains([d])
        # Same observations, cut from the common grid (the glacier sits centred in it).
        ny, nx = grid.ny, grid.nx
        oy = (problem.grid.ny - ny) // 2
        ox = (problem.grid.nx - nx) // 2
        obs = tw.batch.obs[g:g + 1, :, oy:oy + ny, ox:ox + nx]
        one = tr.with_observations(one, obs)
        one = tr.GlacierBatch(H0=tw.batch.H0[g:g + 1, oy:oy + ny, ox:ox + nx], bed=one.bed,
                              ice_free=one.ice_free, smb=one.smb,
                              temperature=tw.batch.temperature[g:g + 1], obs=one.obs,
                              weight=one.weight, scale=one.scale)
        prob_g = tr.Problem(grid=grid, save_at=problem.save_at, scheme=problem.scheme,
                            physics=problem.physics, names=(d.name,))
        f = jax.jit(jax.value_and_grad(lambda l, b, p=prob_g: tr.loss_fn(l, b, p)[0]))
        c, t = _timed(f, law, one, repeat=args.repeat)
        compile_total += c
        run_total += t
        cells += ny * nx
    rows = [dict(layout="padded", programs=1, cells=cells_pad, compile_s=c_pad, run_s=t_pad),
            dict(layout="per_shape", programs=len(tw.domains), cells=cells,
                 compile_s=compile_total, run_s=run_total)]
    print(f"{len(tw.domains)} glaciers, common grid {problem.grid.ny} x {problem.grid.nx}, "
          f"step budget {budget} per interval, {len(problem.times) - 1} intervals")
    print(f"{'layout':>10} {'programs':>9} {'cells':>7} {'compile s':>10} {'epoch s':>8}")
    for r in rows:
        print(f"{r['layout']:>10} {r['programs']:9d} {r['cells']:7d} {r['compile_s']:10.2f} "
              f"{r['run_s']:8.3f}")
    print(f"per-shape / padded: epoch x{run_total / t_pad:.2f}, compile "
          f"x{compile_total / c_pad:.2f}")
    with open(args.out, "w") as fh:
        json.dump(dict(rows=rows, glaciers=[d.name for d in tw.domains],
                       common_grid=[problem.grid.ny, problem.grid.nx], budget=budget), fh,
                  indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
