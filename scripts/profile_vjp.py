"""Cost of the reverse-mode derivative of the SIA step: JAX's automatic VJP of ``face_states``
against the hand-derived one (``glacier.physics.faces_adjoint``, switch
``ExplicitMUSCL(custom_vjp=...)``).

On the 100 x 100 synthetic valley spun up for 100 a (ice flowing everywhere), float64, CPU,
measures per call, inside one compiled loop of ``--inner`` calls (so that Python dispatch does
not count), best of ``--repeat``:

- ``face_states``: forward, and forward + VJP with respect to (H, bed);
- ``sia.fluxes`` with Glen's law: forward, and forward + VJP w.r.t. (H, bed, log A);
- one solver step (``ExplicitMUSCL.make_step``, outflow limiter and mass balance included):
  forward, and forward + VJP of the new thickness w.r.t. (H, bed, log A);

and the full gradient of a ``--steps``-step solve (the loss of ``scripts/benchmark_gradient.py``:
mean squared misfit of the final thickness, gradient w.r.t. log A and H0 with
``adjoint=Checkpointed()``) against the forward solve (``adjoint=ForwardOnly()``).

Each mode runs in a fresh subprocess, the modes alternate for ``--rounds`` rounds and the best
time of all rounds is kept (the machine is shared: best-of is the least noisy estimate).

    python scripts/profile_vjp.py [--rounds 3] [--repeat 5] [--inner 200] [--steps 1000]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time

MODES = ("autodiff", "custom")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _child(mode: str, repeat: int, inner: int, n_steps: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    jax.config.update("jax_enable_x64", True)
    from glacier import schemes
    from glacier import simulation as sim
    from glacier import solver as slv
    from glacier.domains import build_domain
    from glacier.laws import GlenLaw
    from glacier.physics import sia
    from glacier.schemes import ExplicitMUSCL, State

    assert "custom_vjp" in {f.name for f in dataclasses.fields(ExplicitMUSCL)}, schemes.__file__
    custom = mode == "custom"
    d = build_domain("synthetic_valley")
    physics = d.physics
    spun = sim.run(d, save_at=slv.SaveAt((0.0, 100.0)),
                   scheme=ExplicitMUSCL(max_dt=0.1, custom_vjp=custom))
    grid = d.grid
    H0 = jnp.asarray(spun.thickness[-1])
    bed = jnp.asarray(d.bed)
    log_A = jnp.log(physics.A)
    ice_free = None if d.ice_free is None else jnp.asarray(d.ice_free, H0.dtype)
    rng = np.random.default_rng(0)

    def law(a):
        return GlenLaw(A=jnp.exp(a), rho=physics.rho, g=physics.g)

    def best(f, *args):
        jax.block_until_ready(f(*args))
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            jax.block_until_ready(f(*args))
            times.append(time.perf_counter() - t)
        return min(times)

    def looped(body):
        """``inner`` calls of ``body(H) -> dH`` in one compiled loop; H is fed back (scaled
        to nothing) so that XLA cannot hoist the work out of the loop."""
        @jax.jit
        def run(H):
            def it(_, h):
                return h + 1e-30 * body(h)
            return lax.fori_loop(0, inner, it, H)
        return lambda: run(H0)

    def per_call(body):
        return best(looped(body)) / inner

    out = {}

    # face_states
    fs = lambda h, b: sia.face_states(h, b, grid, custom_vjp=custom)
    ct_fs = jax.tree_util.tree_map(lambda x: jnp.asarray(rng.normal(size=x.shape)),
                                   jax.eval_shape(fs, H0, bed))
    def on_cells(out):  # every output feeds the loop (none is dead code), without reductions
        (hx, sx, gx), (hy, sy, gy) = out
        return hx[:, 1:] + sx[:, :-1] + gx[:, 1:] + hy[1:] + sy[:-1] + gy[1:]

    out["face_states_fwd"] = per_call(lambda h: on_cells(fs(h, bed)))
    def fs_vjp(h):
        _, vjp = jax.vjp(fs, h, bed)
        ch, cb = vjp(ct_fs)
        return ch + cb
    out["face_states_fwd_vjp"] = per_call(fs_vjp)

    # fluxes
    fl = lambda h, b, a: sia.fluxes(h, b, law(a), grid, custom_vjp=custom)
    shapes = jax.eval_shape(fl, H0, bed, log_A)
    ct_fl = tuple(jnp.asarray(rng.normal(size=s.shape)) for s in shapes)
    def fl_cells(h):
        qx, qy, d_max = fl(h, bed, log_A)
        return qx[:, 1:] + qy[:-1] + d_max

    out["fluxes_fwd"] = per_call(fl_cells)
    def fl_vjp(h):
        _, vjp = jax.vjp(fl, h, bed, log_A)
        ch, cb, ca = vjp(ct_fl)
        return ch + cb + ca
    out["fluxes_fwd_vjp"] = per_call(fl_vjp)

    # one solver step
    scheme = ExplicitMUSCL(max_dt=0.1, custom_vjp=custom)

    def step_H(h, b, a):
        step = scheme.make_step(b, law(a), d.smb, grid, ice_free)
        z = jnp.zeros((), h.dtype)
        s0 = State(t=jnp.zeros((), jnp.float64), H=h, steps=jnp.zeros((), jnp.int32),
                   smb_volume=z, outflow_volume=z, status=jnp.zeros((), jnp.int32),
                   iterations=jnp.zeros((), jnp.int32), residual=z)
        return step(s0, jnp.asarray(1e3, jnp.float64)).H
    ct_st = jnp.asarray(rng.normal(size=grid.shape))
    out["step_fwd"] = per_call(lambda h: step_H(h, bed, log_A) - h)
    def st_vjp(h):
        _, vjp = jax.vjp(step_H, h, bed, log_A)
        ch, cb, ca = vjp(ct_st)
        return ch + cb + ca
    out["step_fwd_vjp"] = per_call(st_vjp)

    # full gradient of an n-step solve against the forward solve
    if n_steps:
        dt = 0.01  # below the stability limit of the spun-up valley (~0.066 a): exactly n steps
        T = n_steps * dt
        target = H0 * 1.01

        def make(adjoint):
            stp = ExplicitMUSCL(max_dt=dt, max_steps=n_steps + 2, custom_vjp=custom)

            def loss(a, h):
                tr = slv.simulate(h, bed, grid=grid, rheology=law(a), smb=d.smb,
                                  save_at=slv.SaveAt((0.0, T)), scheme=stp, adjoint=adjoint)
                return jnp.mean((tr.thickness[-1] - target) ** 2)
            return loss

        fwd = jax.jit(make(slv.ForwardOnly()))
        grad = jax.jit(jax.grad(make(slv.Checkpointed()), argnums=(0, 1)))
        out["solve_fwd"] = best(fwd, log_A, H0)
        out["solve_grad"] = best(grad, log_A, H0)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--inner", type=int, default=200)
    ap.add_argument("--steps", type=int, default=1000, help="0 skips the full solve")
    ap.add_argument("--out", default=None, help="write the best times as JSON")
    ap.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.mode is not None:  # child process: one mode, JSON on stdout
        print(json.dumps(_child(args.mode, args.repeat, args.inner, args.steps)))
        return 0
    best: dict[str, dict[str, float]] = {m: {} for m in MODES}
    for r in range(args.rounds):
        for mode in MODES:
            # The checkout this script is in, whatever ``glacier`` is installed.
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(
                [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
            proc = subprocess.run(
                [sys.executable, __file__, "--mode", mode, "--repeat", str(args.repeat),
                 "--inner", str(args.inner), "--steps", str(args.steps)],
                capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return proc.returncode
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            for k, v in res.items():
                best[mode][k] = min(v, best[mode].get(k, float("inf")))
            print(f"round {r + 1}/{args.rounds} {mode}: "
                  + ", ".join(f"{k}={v * 1e6:.0f}us" if v < 0.01 else f"{k}={v:.3f}s"
                              for k, v in res.items()), flush=True)
    a, c = best["autodiff"], best["custom"]
    print(f"\n{'best of all rounds':28s} {'autodiff':>12} {'custom':>12} {'speed-up':>9}")
    for k in a:
        fmt = (lambda v: f"{v * 1e6:10.1f}us") if a[k] < 0.01 else (lambda v: f"{v:11.3f}s")
        print(f"{k:28s} {fmt(a[k])} {fmt(c[k])} {a[k] / c[k]:9.2f}")
    for name, (f, v) in {"face_states VJP only": ("face_states_fwd", "face_states_fwd_vjp"),
                         "fluxes VJP only": ("fluxes_fwd", "fluxes_fwd_vjp"),
                         "step VJP only": ("step_fwd", "step_fwd_vjp")}.items():
        va, vc = a[v] - a[f], c[v] - c[f]
        print(f"{name:28s} {va * 1e6:10.1f}us {vc * 1e6:10.1f}us {va / vc:9.2f}")
    if "solve_grad" in a:
        print(f"{'gradient / forward solve':28s} {a['solve_grad'] / a['solve_fwd']:12.2f} "
              f"{c['solve_grad'] / c['solve_fwd']:12.2f}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(dict(best=best, cpu_count=os.cpu_count()), fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
