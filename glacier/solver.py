"""Adaptive explicit time stepping of the SIA with exact landing on save times.

``simulate`` advances the thickness from one save time to the next with explicit steps inside the
diffusive stability limit (``physics.sia.stable_dt``); the last step of each interval is shortened
so that it lands exactly on the save time. Each step:

1. fluxes with the MUSCL-superbee upstream diffusivity and the positivity-preserving limiter;
2. H* = H - dt div q (never negative: no cell exports more than it holds);
3. the surface mass balance on the surface at the start of the step (elevation feedback),
   clipped so that ablation removes at most the ice present: H** = max(H* + dt b, 0);
4. cells marked ``ice_free`` (e.g. the EISMINT boundary ring) are emptied.

Volumes are booked so that the budget closes to round-off:
V(t) - V(0) = smb_volume(t) - outflow_volume(t), where ``smb_volume`` is the mass balance actually
applied (ablation limited to available ice) and ``outflow_volume`` is what left through the
domain edges or was removed from ``ice_free`` cells.

Differentiation. The save intervals are a ``lax.scan``. Inside an interval the steps run as

- ``adjoint="none"``: a ``lax.while_loop`` (forward only, fastest);
- ``adjoint="checkpointed"``: a bounded loop of ``max_steps`` steps split into chunks, each chunk
  wrapped in ``jax.checkpoint``; steps past the save time are skipped with ``lax.cond``. Reverse
  mode then stores one state per chunk and recomputes a chunk at a time: memory grows as
  O(sqrt(steps)) instead of O(steps), at the cost of one extra forward pass;
- ``adjoint="plain"``: the same bounded loop without checkpoints (every step's state is kept
  for the reverse pass: memory O(steps)); the reference that the checkpointed gradient must
  equal.

Blow-up: a step whose largest diffusivity is not finite stops the interval and sets ``status``;
``Trajectory.first_failure`` tells the caller which saved states are still good.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .grid import Grid
from .physics import sia

STATUS_OK = 0
STATUS_NONFINITE = 1
STATUS_MAX_STEPS = 2
STATUS_NAMES = {STATUS_OK: "ok", STATUS_NONFINITE: "non-finite thickness",
                STATUS_MAX_STEPS: "step budget exhausted"}


@dataclasses.dataclass(frozen=True)
class Stepping:
    """How to step: stability factor, largest step, step budget per save interval.

    Args:
        cfl: dt = cfl dx^2 / max(D); explicit stability needs about cfl <= 0.25 for linear
            diffusion, less for the nonlinear SIA.
        max_dt: largest step in years (also the step on ice-free domains).
        max_steps: largest number of steps in one save interval; exceeding it stops the run
            with status "step budget exhausted". With ``adjoint="checkpointed"`` it is also the
            length of the bounded loop, so keep it close to what is needed.
        checkpoint_every: steps per checkpointed chunk (``adjoint="checkpointed"``); 0 picks
            about sqrt(max_steps).
    """

    cfl: float = 0.124
    max_dt: float = 1.0
    max_steps: int = 10_000_000
    checkpoint_every: int = 0

    def __post_init__(self):
        if not 0 < self.cfl <= 0.25:
            raise ValueError(f"cfl must be in (0, 0.25], got {self.cfl}.")
        if not self.max_dt > 0:
            raise ValueError(f"max_dt must be positive, got {self.max_dt}.")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps}.")

    def chunks(self) -> tuple[int, int]:
        """(number of chunks, steps per chunk) of the checkpointed loop."""
        per = self.checkpoint_every or max(1, math.isqrt(self.max_steps))
        return -(-self.max_steps // per), per


def save_times(t_end: float, save_every: float | None = None) -> tuple[float, ...]:
    """Save times 0, save_every, 2 save_every, ..., t_end (the last state is always saved)."""
    if not (t_end > 0 and math.isfinite(t_end)):
        raise ValueError(f"t_end must be positive and finite, got {t_end}.")
    if save_every is None or save_every <= 0 or save_every >= t_end:
        return (0.0, float(t_end))
    k = int(math.floor(t_end / save_every + 1e-9))
    times = [i * save_every for i in range(k + 1)]
    if t_end - times[-1] > 1e-9 * t_end:
        times.append(float(t_end))
    else:
        times[-1] = float(t_end)
    return tuple(float(t) for t in times)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _State:
    t: jax.Array
    H: jax.Array
    steps: jax.Array  # steps taken in the current interval
    smb_volume: jax.Array
    outflow_volume: jax.Array
    status: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Trajectory:
    """States at the save times. Leading axis of every array: save index.

    Attributes:
        times: save times [a], shape (nt,).
        thickness: H [m], shape (nt, ny, nx).
        steps: steps taken in the interval ending at each save (0 for the initial state).
        smb_volume: cumulative applied mass balance [m^3] since t = 0.
        outflow_volume: cumulative volume lost through the domain edges and ice-free cells [m^3].
        status: 0 where the interval completed, else a ``STATUS_*`` code.
    """

    times: jax.Array
    thickness: jax.Array
    steps: jax.Array
    smb_volume: jax.Array
    outflow_volume: jax.Array
    status: jax.Array

    def first_failure(self) -> int | None:
        """Index of the first save whose interval failed, or None when all succeeded."""
        bad = np.flatnonzero(np.asarray(self.status) != STATUS_OK)
        return int(bad[0]) if bad.size else None


def _cast_floats(tree, dtype):
    """Cast the floating-point leaves of a pytree (law or mass balance) to the field dtype, so
    that a float32 run with float64 parameter fields stays float32 throughout."""
    def cast(x):
        x = jnp.asarray(x)
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x
    return jax.tree_util.tree_map(cast, tree)


def _time_dtype():
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def _make_step(bed, law, smb, grid: Grid, stepping: Stepping, ice_free):
    dx = grid.dx
    cell_area = grid.cell_area

    def step(state: _State, t_target) -> _State:
        H, t = state.H, state.t
        S = bed + H
        qx, qy, D_max = sia.fluxes(H, bed, law, grid)
        dt_stable = sia.stable_dt(D_max, dx, stepping.cfl, stepping.max_dt).astype(t.dtype)
        remaining = t_target - t
        last = dt_stable >= remaining
        dt = jnp.where(last, remaining, dt_stable)
        dt_h = dt.astype(H.dtype)
        qx, qy = sia.limit_outflow(H, qx, qy, dt_h, grid)
        H_flow = H - dt_h * sia.flux_divergence(qx, qy, dx)
        H_new = jnp.maximum(H_flow + dt_h * smb(S, t), 0.0)
        applied = jnp.sum(H_new - H_flow) * cell_area
        outflow = dt_h * dx * sia.edge_outflow(qx, qy)
        if ice_free is not None:
            removed = H_new * ice_free
            H_new = H_new - removed
            outflow = outflow + jnp.sum(removed) * cell_area
        finite = jnp.isfinite(D_max) & jnp.isfinite(dt)
        return _State(
            t=jnp.where(last, t_target, t + dt),
            H=H_new,
            steps=state.steps + 1,
            smb_volume=state.smb_volume + applied,
            outflow_volume=state.outflow_volume + outflow,
            status=jnp.where(finite, state.status, STATUS_NONFINITE),
        )

    return step


def _active(state: _State, t_target, max_steps):
    return (state.t < t_target) & (state.status == STATUS_OK) & (state.steps < max_steps)


def _advance_while(step, state, t_target, stepping: Stepping):
    return lax.while_loop(lambda s: _active(s, t_target, stepping.max_steps),
                          lambda s: step(s, t_target), state)


def _masked(step, t_target, stepping: Stepping):
    def body(s, _):
        s = lax.cond(_active(s, t_target, stepping.max_steps), lambda u: step(u, t_target),
                     lambda u: u, s)
        return s, None
    return body


def _advance_checkpointed(step, state, t_target, stepping: Stepping):
    n_chunks, per_chunk = stepping.chunks()
    # Two levels: the forward pass stores the state at chunk boundaries; when the reverse pass
    # replays a chunk it keeps only each step's state and recomputes the step's internals in
    # its VJP (jax.checkpoint(step)): less memory traffic, faster than storing them.
    body = _masked(jax.checkpoint(step), t_target, stepping)

    @jax.checkpoint
    def chunk(s, _):
        return lax.scan(body, s, None, length=per_chunk)[0], None

    return lax.scan(chunk, state, None, length=n_chunks)[0]


def _advance_plain(step, state, t_target, stepping: Stepping):
    return lax.scan(_masked(step, t_target, stepping), state, None,
                    length=stepping.max_steps)[0]


_ADVANCE = {"none": _advance_while, "checkpointed": _advance_checkpointed,
            "plain": _advance_plain}


def simulate(
    H0,
    bed,
    *,
    grid: Grid,
    law,
    smb,
    times: tuple[float, ...],
    stepping: Stepping = Stepping(),
    ice_free=None,
    adjoint: Literal["none", "checkpointed", "plain"] = "none",
) -> Trajectory:
    """Integrate dH/dt = div(D grad S) + b from ``H0`` and return the states at ``times``.

    Args:
        H0: initial thickness [m], shape (ny, nx); its dtype (float32/float64) sets the
            precision of the fields.
        bed: bed elevation [m], shape (ny, nx).
        grid: the static grid.
        law: a rheology law (``physics.sia.Rheology``): physical or learned.
        smb: mass-balance callable ``smb(S, t) -> b`` [m ice a^-1] (``physics.mass_balance``).
        times: save times [a], ascending, starting at 0. Static.
        stepping: stability factor, largest step and step budget (static).
        ice_free: optional (ny, nx) 0/1 field of cells held at zero thickness; what flows in
            is counted as outflow.
        adjoint: ``"none"`` for a forward-only while loop, ``"checkpointed"`` for a bounded,
            chunk-checkpointed loop that reverse-mode differentiation can go through with
            O(sqrt(steps)) memory, ``"plain"`` for the bounded loop without checkpoints.

    Returns:
        A ``Trajectory`` with the initial state at index 0.
    """
    times = tuple(float(t) for t in times)
    increasing = all(b > a for a, b in zip(times, times[1:], strict=False))
    if len(times) < 2 or times[0] != 0.0 or not increasing:
        raise ValueError(f"times must start at 0 and increase strictly, got {times}.")
    if adjoint not in _ADVANCE:
        raise ValueError(f"adjoint must be one of {sorted(_ADVANCE)}, got {adjoint!r}.")
    H0 = jnp.asarray(H0)
    if H0.shape != grid.shape or jnp.shape(bed) != grid.shape:
        raise ValueError(f"H0 {H0.shape} and bed {jnp.shape(bed)} must have the grid's shape "
                         f"{grid.shape}.")
    law, smb = _cast_floats(law, H0.dtype), _cast_floats(smb, H0.dtype)
    return _simulate(H0, jnp.asarray(bed, H0.dtype), law, smb,
                     None if ice_free is None else jnp.asarray(ice_free, H0.dtype),
                     grid=grid, times=times, stepping=stepping, adjoint=adjoint)


@jax.jit(static_argnames=("grid", "times", "stepping", "adjoint"))
def _simulate(H0, bed, law, smb, ice_free, *, grid, times, stepping, adjoint):
    tdt = _time_dtype()
    step = _make_step(bed, law, smb, grid, stepping, ice_free)
    advance = _ADVANCE[adjoint]
    zero = jnp.zeros((), H0.dtype)
    state0 = _State(t=jnp.zeros((), tdt), H=H0, steps=jnp.zeros((), jnp.int32),
                    smb_volume=zero, outflow_volume=zero,
                    status=jnp.zeros((), jnp.int32))

    def interval(state, t_target):
        state = dataclasses.replace(state, steps=jnp.zeros((), jnp.int32))
        state = advance(step, state, t_target, stepping)
        short = (state.status == STATUS_OK) & (state.t < t_target)
        state = dataclasses.replace(
            state, status=jnp.where(short, STATUS_MAX_STEPS, state.status))
        out = (state.H, state.steps, state.smb_volume, state.outflow_volume, state.status)
        return state, out

    targets = jnp.asarray(times[1:], tdt)
    _, (Hs, steps, smb_v, out_v, status) = lax.scan(interval, state0, targets)

    def with_initial(first, rest):
        return jnp.concatenate([first[None], rest], axis=0)

    return Trajectory(
        times=jnp.asarray(times, tdt),
        thickness=with_initial(H0, Hs),
        steps=with_initial(jnp.zeros((), jnp.int32), steps),
        smb_volume=with_initial(zero, smb_v),
        outflow_volume=with_initial(zero, out_v),
        status=with_initial(jnp.zeros((), jnp.int32), status),
    )


def volume(H, grid: Grid):
    """Ice volume [m^3] of thickness fields with trailing axes (ny, nx)."""
    return jnp.sum(H, axis=(-2, -1)) * grid.cell_area


def area(H, grid: Grid, threshold: float = 0.0):
    """Ice-covered area [m^2]: cells with H > threshold."""
    return jnp.sum(jnp.where(H > threshold, grid.cell_area, 0.0), axis=(-2, -1))


def surface_speed(H, bed, law, grid: Grid):
    """SIA surface speed [m a^-1] at cell centres for thickness fields (..., ny, nx)."""
    def one(h):
        return law.surface_speed(h, sia.centred_slope2(h, bed, grid))
    if H.ndim == 2:
        return one(H)
    return jax.vmap(one)(H)
