"""Training on many glaciers: time per epoch and peak memory against the number of glaciers.

For N synthetic valleys (``experiments.twin_A_of_T`` with ``n_valleys=N``, no real glaciers,
sizes 5-9 km by 3-5 km on 200 m cells, a short spin-up and a few observed years), one training
epoch of ``nn_A_of_T`` in two layouts, each case in its own process so that its peak memory is
its own:

- ``full``: all N glaciers in one padded batch, one Adam step per epoch (``train.Trainer``);
- ``mini B``: groups of B glaciers of similar size on their own windows
  (``minibatch.plan``), one Adam step per group (``minibatch.MiniBatchTrainer``,
  ``train.batch_update=step``).

Reported per case: groups and distinct window shapes, padding (cells computed per cell of the
glaciers' own regions), compile time (the first epoch minus a later one), time per epoch
(median of ``--epochs`` after the first) and glaciers per second, the process's peak resident
memory (``ru_maxrss``) after the setup and after training (what training added is the
difference), and XLA's temporary buffers of the largest compiled training step
(``memory_analysis``). Prints a table and writes JSON.

    python scripts/benchmark_glaciers.py [--glaciers 32,64,128,256,512] [--batch-size 32]
        [--epochs 3] [--years 2] [--out benchmark_glaciers.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def worker(n: int, batch_size: int | None, epochs: int, years: float, spinup: float) -> dict:
    """One case, in this process: the figures of the module docstring."""
    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    from glacier import experiments, laws, minibatch
    from glacier import train as tr

    t0 = time.perf_counter()
    rss_import = _rss_mb()
    # As glacier-train does with train.batch_size: the forward-only passes of the setup (the
    # twin's spin-up and observations, the step budget) batch_size glaciers at a time.
    setup = experiments.twin_A_of_T(n_valleys=n, real=(), years=years, obs_every=1.0,
                                    spinup_years=spinup, dx=200.0, seed=0, chunk=batch_size)
    law = laws.NeuralAofT.create(hidden=(16, 16), seed=0)
    problem = tr.size_step_budget(law, setup.batch, setup.problem, chunk=batch_size)
    setup_s = time.perf_counter() - t0
    rss_setup = _rss_mb()
    if batch_size is None:
        trainer = tr.Trainer(problem, lr=0.01, epochs=epochs + 1)
        data, groups = setup.batch, None
        shapes = [((setup.batch.size, problem.grid.ny, problem.grid.nx), setup.batch)]
        own = sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in minibatch.regions(setup.batch))
        padding = setup.batch.size * problem.grid.ny * problem.grid.nx / own
    else:
        groups = minibatch.plan(setup.batch, problem.grid, batch_size)
        trainer = minibatch.MiniBatchTrainer(problem, n_groups=len(groups),
                                             size=setup.batch.size, lr=0.01,
                                             epochs=epochs + 1)
        data = groups
        padding = minibatch.padding_ratio(groups, setup.batch)
        seen = {}
        for g in groups:
            seen.setdefault((g.index.size, g.grid.ny, g.grid.nx), g)
        shapes = list(seen.items())
    state = trainer.init(law)
    times = []
    for _ in range(epochs + 1):
        t = time.perf_counter()
        state, loss, _ = trainer.step(state, data)
        jax.block_until_ready(state.law)
        times.append(time.perf_counter() - t)
    per_epoch = float(np.median(times[1:]))
    temp = 0
    for _, g in shapes:  # the compiled step's temporary buffers (the largest of the shapes)
        b = g if batch_size is None else jax.tree_util.tree_map(np.asarray, g.batch)
        p = problem if batch_size is None else g.problem(problem)
        compiled = trainer._steps.lower(state, b, problem=p, adam=True).compile()
        stats = compiled.memory_analysis()
        if stats is not None:
            temp = max(temp, int(stats.temp_size_in_bytes))
    return dict(glaciers=n, layout="full" if batch_size is None else f"mini {batch_size}",
                batch_size=batch_size, groups=1 if groups is None else len(groups),
                windows=len(shapes), padding=round(float(padding), 3),
                grid=[problem.grid.ny, problem.grid.nx], step_budget=problem.scheme.max_steps,
                setup_s=setup_s, compile_s=max(0.0, times[0] - per_epoch),
                epoch_s=per_epoch, glaciers_per_s=n / per_epoch, loss=float(loss),
                rss_import_mb=rss_import, rss_setup_mb=rss_setup, rss_peak_mb=_rss_mb(),
                step_temp_mb=temp / 2**20)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--glaciers", default="32,64,128,256,512")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--years", type=float, default=2.0)
    ap.add_argument("--spinup", type=float, default=30.0)
    ap.add_argument("--out", default="benchmark_glaciers.json")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker is not None:
        n, b = args.worker.split(":")
        row = worker(int(n), None if b == "full" else int(b), args.epochs, args.years,
                     args.spinup)
        print("ROW " + json.dumps(row))
        return 0
    rows = []
    for n in (int(v) for v in args.glaciers.split(",")):
        for b in ("full", str(args.batch_size)):
            cmd = [sys.executable, __file__, "--worker", f"{n}:{b}", "--epochs",
                   str(args.epochs), "--years", str(args.years), "--spinup", str(args.spinup)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            found = [line[4:] for line in proc.stdout.splitlines() if line.startswith("ROW ")]
            if proc.returncode != 0 or not found:
                rows.append(dict(glaciers=n, layout=b, error=proc.stderr[-1500:]))
                print(f"{n} glaciers, {b}: failed\n{proc.stderr[-1500:]}", file=sys.stderr)
                continue
            rows.append(json.loads(found[-1]))
            r = rows[-1]
            print(f"{n:4d} glaciers {r['layout']:>8}: {r['epoch_s']:.3g} s/epoch, "
                  f"peak {r['rss_peak_mb']:.0f} MB", file=sys.stderr, flush=True)
    header = (f"{'glaciers':>8} {'layout':>8} {'groups':>6} {'windows':>7} {'padding':>7} "
              f"{'compile s':>9} {'s/epoch':>8} {'glac/s':>7} {'RSS setup':>9} {'RSS peak':>9} "
              f"{'step temp':>9}")
    print(header)
    for r in rows:
        if "error" in r:
            print(f"{r['glaciers']:>8} {r['layout']:>8} failed")
            continue
        print(f"{r['glaciers']:>8} {r['layout']:>8} {r['groups']:>6} {r['windows']:>7} "
              f"{r['padding']:>7.2f} {r['compile_s']:>9.1f} {r['epoch_s']:>8.3f} "
              f"{r['glaciers_per_s']:>7.1f} {r['rss_setup_mb']:>7.0f}MB "
              f"{r['rss_peak_mb']:>7.0f}MB {r['step_temp_mb']:>7.0f}MB")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import jax
    from benchmark import cpu_model  # scripts/benchmark.py
    report = dict(cpu=cpu_model(), machine=platform.machine(), jax=jax.__version__,
                  device=str(jax.devices()[0].platform), options=vars(args), rows=rows)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
