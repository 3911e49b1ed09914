"""Time-stepping schemes of the SIA, one value object per scheme.

A scheme is a frozen dataclass whose fields are its options; ``make_step`` closes over the
static choices and the fields of one glacier and returns ``step(state, t_target) -> state``,
which advances by one step of at most ``t_target - state.t`` (the last step of a save interval
lands exactly on it). The time loop around it, what is saved and how it is differentiated are
the solver's (``glacier.solver``): a new scheme is one new class here.

State and status codes live here too, since every scheme reads and writes them.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from .grid import Grid
from .physics import sia

STATUS_OK = 0
STATUS_NONFINITE = 1
STATUS_MAX_STEPS = 2
STATUS_NAMES = {STATUS_OK: "ok", STATUS_NONFINITE: "non-finite thickness",
                STATUS_MAX_STEPS: "step budget exhausted"}


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class State:
    """What the time loop carries from step to step.

    Attributes:
        t: time [a] (float64 when x64 is on).
        H: thickness [m], (ny, nx).
        steps: steps taken in the current save interval.
        smb_volume: cumulative applied mass balance [m^3].
        outflow_volume: cumulative volume lost through the edges and ice-free cells [m^3].
        status: ``STATUS_OK`` or the first failure.
    """

    t: jax.Array
    H: jax.Array
    steps: jax.Array
    smb_volume: jax.Array
    outflow_volume: jax.Array
    status: jax.Array


Step = Callable[[State, jax.Array], State]


class Scheme(abc.ABC):
    """A time-stepping scheme: abstract; concrete schemes are final frozen dataclasses.

    Every scheme has a step budget ``max_steps`` per save interval: exceeding it stops the run
    with ``STATUS_MAX_STEPS``, and bounded loops (``solver.Checkpointed``, ``solver.StoreAll``)
    run exactly that many (masked) steps.
    """

    max_steps: int

    @abc.abstractmethod
    def make_step(self, bed, rheology, smb, grid: Grid, ice_free) -> Step:
        """``step(state, t_target)`` for one glacier (all arguments closed over)."""

    def with_budget(self, max_steps: int) -> Scheme:
        """The same scheme with another step budget."""
        return dataclasses.replace(self, max_steps=int(max_steps))


@dataclasses.dataclass(frozen=True)
class ExplicitMUSCL(Scheme):
    """Adaptive forward Euler of the flux-form SIA with MUSCL-superbee face thickness.

    Each step (``physics.sia``):

    1. fluxes with the upstream MUSCL diffusivity and the positivity-preserving limiter;
    2. H* = H - dt div q (never negative: no cell exports more than it holds);
    3. the mass balance on the surface at the start of the step, clipped so that ablation
       removes at most the ice present: H** = max(H* + dt b, 0);
    4. cells marked ``ice_free`` are emptied (what flowed in counts as outflow).

    dt = min(cfl dx^2 / max(D), max_dt), shortened to land on the save time.

    Args:
        cfl: stability factor, in (0, 0.25] (linear diffusion is stable up to 0.25 on a
            square grid; the nonlinear SIA needs a margin below that).
        max_dt: largest step [a] (also the step on ice-free domains).
        max_steps: step budget per save interval.
        custom_vjp: reverse-mode derivative of the face states by the hand-derived adjoint
            (``physics.faces_adjoint``); False for JAX's AD (forward mode, Hessians).
    """

    cfl: float = 0.124
    max_dt: float = 1.0
    max_steps: int = 10_000_000
    custom_vjp: bool = True

    def __post_init__(self):
        if not 0 < self.cfl <= 0.25:
            raise ValueError(f"cfl must be in (0, 0.25], got {self.cfl}.")
        if not self.max_dt > 0:
            raise ValueError(f"max_dt must be positive, got {self.max_dt}.")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps}.")

    def make_step(self, bed, rheology, smb, grid: Grid, ice_free) -> Step:
        dx = grid.dx
        cell_area = grid.cell_area
        cfl, max_dt, custom_vjp = self.cfl, self.max_dt, self.custom_vjp

        def step(state: State, t_target) -> State:
            H, t = state.H, state.t
            S = bed + H
            qx, qy, D_max = sia.fluxes(H, bed, rheology, grid, custom_vjp=custom_vjp)
            dt_stable = sia.stable_dt(D_max, dx, cfl, max_dt).astype(t.dtype)
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
            return State(
                t=jnp.where(last, t_target, t + dt),
                H=H_new,
                steps=state.steps + 1,
                smb_volume=state.smb_volume + applied,
                outflow_volume=state.outflow_volume + outflow,
                status=jnp.where(finite, state.status, STATUS_NONFINITE),
            )

        return step
