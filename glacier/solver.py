"""The time loop of the SIA: ``simulate`` with what to save and how to differentiate as objects.

In the manner of diffrax's ``diffeqsolve``, a few positional essentials and keyword-only value
objects:

    simulate(H0, bed, grid=..., rheology=..., smb=..., save_at=SaveAt(times),
             scheme=ExplicitMUSCL(cfl=0.124), adjoint=ForwardOnly())

- the *scheme* (``glacier.schemes``) makes one step (explicit MUSCL today);
- ``SaveAt`` holds the save times, validated on construction; the last step of each interval
  lands exactly on its save time;
- the *adjoint* says how the steps of one save interval are looped, which decides how reverse
  mode goes through them:

  - ``ForwardOnly()``: a ``lax.while_loop`` (fastest; no reverse mode);
  - ``Checkpointed(memory_budget=2**31)``: a bounded loop of ``scheme.max_steps`` steps, each
    step, with the ``lax.cond`` that skips it past the save time, wrapped in ``jax.checkpoint``.
    When every step's state fits in ``memory_budget`` bytes, reverse mode stores them all and
    recomputes each step's internals once, in its VJP (about the cost of one forward pass
    plus the VJPs). When they do not, the steps go in chunks of about sqrt(steps), each itself
    a ``jax.checkpoint``: reverse mode stores one state per chunk and replays a chunk at a
    time (memory O(sqrt(steps)) instead of O(steps), at the cost of one more forward pass);
  - ``StoreAll()``: the same bounded loop without checkpoints (every step's state is kept for
    the reverse pass: memory O(steps)); the reference the checkpointed gradient must equal.

Volumes are booked so that the budget closes to round-off:
V(t) - V(0) = smb_volume(t) - outflow_volume(t), where ``smb_volume`` is the mass balance actually
applied (ablation limited to available ice) and ``outflow_volume`` is what left through the
domain edges or was removed from ``ice_free`` cells.

Blow-up: a step whose largest diffusivity is not finite stops the interval and sets ``status``;
``Trajectory.first_failure`` tells the caller which saved states are still good.
"""

from __future__ import annotations

import abc
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .grid import Grid
from .physics import sia
from .physics.mass_balance import MassBalance
from .schemes import (
    STATUS_MAX_STEPS,
    STATUS_NAMES,
    STATUS_NEWTON,
    STATUS_NONFINITE,
    STATUS_OK,
    ExplicitMUSCL,
    ImplicitEuler,
    Scheme,
    State,
)

__all__ = ["STATUS_MAX_STEPS", "STATUS_NAMES", "STATUS_NEWTON", "STATUS_NONFINITE",
           "STATUS_OK", "Adjoint",
           "Checkpointed", "ForwardOnly", "SaveAt", "StoreAll", "Trajectory", "area",
           "reverse_adjoint",
           "save_times", "simulate", "state_bytes", "surface_speed", "volume"]


# --------------------------------------------------------------------------------------------
# What to save


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


@dataclasses.dataclass(frozen=True)
class SaveAt:
    """The times [a] at which ``simulate`` returns the state: from 0, strictly increasing, at
    least two (the initial state is saved as index 0). Static: a new tuple compiles anew."""

    times: tuple[float, ...]

    def __post_init__(self):
        times = tuple(float(t) for t in self.times)
        increasing = all(b > a for a, b in zip(times, times[1:], strict=False))
        if len(times) < 2 or times[0] != 0.0 or not increasing:
            raise ValueError(f"save times must start at 0 and increase strictly, got {times}.")
        if not all(math.isfinite(t) for t in times):
            raise ValueError(f"save times must be finite, got {times}.")
        object.__setattr__(self, "times", times)

    @classmethod
    def every(cls, t_end: float, save_every: float | None = None) -> SaveAt:
        """0, save_every, 2 save_every, ..., t_end (``save_times``)."""
        return cls(save_times(t_end, save_every))

    @property
    def t_end(self) -> float:
        return self.times[-1]


# --------------------------------------------------------------------------------------------
# How to differentiate


def _active(state: State, t_target, max_steps):
    return (state.t < t_target) & (state.status == STATUS_OK) & (state.steps < max_steps)


def _masked(step, t_target, max_steps: int):
    def body(s, _):
        s = lax.cond(_active(s, t_target, max_steps), lambda u: step(u, t_target),
                     lambda u: u, s)
        return s, None
    return body


class Adjoint(abc.ABC):
    """How the steps of a save interval are looped (and so how reverse mode goes through them):
    abstract; the concrete ones are final."""

    @abc.abstractmethod
    def advance(self, step, state: State, t_target, max_steps: int) -> State:
        """Step ``state`` until ``t_target``, a failure or ``max_steps`` steps."""

    def split(self, k: int) -> Adjoint:
        """The adjoint for one of ``k`` loops that share this one's memory (save intervals,
        glaciers of a batch); the same object unless it has a memory budget."""
        return self


def state_bytes(state) -> int:
    """Bytes of one loop state (the arrays of a pytree, by their static shapes)."""
    return sum(math.prod(jnp.shape(x)) * jnp.asarray(x).dtype.itemsize
               for x in jax.tree_util.tree_leaves(state))


@dataclasses.dataclass(frozen=True)
class ForwardOnly(Adjoint):
    """A ``lax.while_loop``: forward only (reverse mode cannot go through it), fastest."""

    def advance(self, step, state, t_target, max_steps):
        return lax.while_loop(lambda s: _active(s, t_target, max_steps),
                              lambda s: step(s, t_target), state)


@dataclasses.dataclass(frozen=True)
class Checkpointed(Adjoint):
    """A bounded loop of ``max_steps`` steps, each a ``jax.checkpoint``: reverse mode stores
    every step's state when they fit in ``memory_budget`` bytes, else one state per chunk of
    about sqrt(max_steps) steps (memory O(sqrt(steps)), one more forward pass).

    Args:
        checkpoint_every: steps per chunk; 0 (default) decides by the memory budget, a
            positive number always chunks.
        memory_budget: bytes the reverse pass may spend on stored states, for the whole
            ``simulate`` call (shared among its save intervals); under ``jax.vmap`` each
            batch element gets the whole budget unless the caller ``split``s it (the
            training loss does, by the number of glaciers). 0: always chunk.
    """

    checkpoint_every: int = 0
    memory_budget: int = 2**31

    def __post_init__(self):
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}.")
        if self.memory_budget < 0:
            raise ValueError(f"memory_budget must be >= 0 bytes, got {self.memory_budget}.")

    def split(self, k: int) -> Checkpointed:
        return dataclasses.replace(self, memory_budget=self.memory_budget // max(1, int(k)))

    def stores_all(self, max_steps: int, bytes_per_state: int) -> bool:
        """Whether reverse mode keeps every step's state (no chunk replay): one state per
        step (``tests/gradients/test_solver_gradients.py`` measures XLA's buffers)."""
        return (self.checkpoint_every == 0
                and max_steps * bytes_per_state <= self.memory_budget)

    def chunks(self, max_steps: int) -> tuple[int, int]:
        """(number of chunks, steps per chunk) of the chunked loop."""
        per = self.checkpoint_every or max(1, math.isqrt(max_steps))
        return -(-max_steps // per), per

    def advance(self, step, state, t_target, max_steps):
        # Each step's internals are recomputed in its VJP: less memory traffic than storing
        # them (StoreAll, measured about 2x slower on the CPU). The checkpoint goes around the
        # masked step, the lax.cond included: inside the cond, the step's closed-over arrays
        # (the bed, the law's fields) would leave the cond as residuals of every step, which
        # the scan cannot tell are loop-invariant and so stacks, one bed per step (twice the
        # memory of the states, and 12 % slower on the 100 x 100 valley).
        body = jax.checkpoint(_masked(step, t_target, max_steps))
        if self.stores_all(max_steps, state_bytes(state)):
            return lax.scan(body, state, None, length=max_steps)[0]
        n_chunks, per_chunk = self.chunks(max_steps)

        @jax.checkpoint
        def chunk(s, _):
            return lax.scan(body, s, None, length=per_chunk)[0], None

        return lax.scan(chunk, state, None, length=n_chunks)[0]


@dataclasses.dataclass(frozen=True)
class StoreAll(Adjoint):
    """The bounded loop without checkpoints: every step is kept for reverse mode (memory
    O(steps)); the reference that ``Checkpointed`` must equal."""

    def advance(self, step, state, t_target, max_steps):
        return lax.scan(_masked(step, t_target, max_steps), state, None, length=max_steps)[0]


def reverse_adjoint(scheme: Scheme) -> Adjoint:
    """The adjoint for gradients through ``scheme``: ``Checkpointed()`` for the explicit
    scheme (many cheap steps); ``StoreAll()`` for the implicit one, whose few steps each store
    two states and are differentiated by one transposed linear solve (recomputing a step would
    repeat its Newton iterations)."""
    return StoreAll() if isinstance(scheme, ImplicitEuler) else Checkpointed()


# --------------------------------------------------------------------------------------------
# The loop


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
        reached: the time [a] each interval ended at (its save time unless it failed).
        iterations: Newton iterations of the interval (0 for the explicit scheme).
        residual: largest final Newton residual of the interval's steps [m].
    """

    times: jax.Array
    thickness: jax.Array
    steps: jax.Array
    smb_volume: jax.Array
    outflow_volume: jax.Array
    status: jax.Array
    reached: jax.Array
    iterations: jax.Array
    residual: jax.Array

    def first_failure(self) -> int | None:
        """Index of the first save whose interval failed, or None when all succeeded."""
        bad = np.flatnonzero(np.asarray(self.status) != STATUS_OK)
        return int(bad[0]) if bad.size else None


def cast_floats(tree, dtype):
    """Cast the floating-point leaves of a pytree (law or mass balance) to the field dtype, so
    that a float32 run with float64 parameter fields stays float32 throughout."""
    def cast(x):
        x = jnp.asarray(x)
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x
    return jax.tree_util.tree_map(cast, tree)


def _time_dtype():
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


DEFAULT_SCHEME = ExplicitMUSCL()
FORWARD_ONLY = ForwardOnly()


def simulate(
    H0,
    bed,
    *,
    grid: Grid,
    rheology,
    smb,
    save_at: SaveAt,
    scheme: Scheme = DEFAULT_SCHEME,
    adjoint: Adjoint = FORWARD_ONLY,
    ice_free=None,
) -> Trajectory:
    """Integrate dH/dt = div(D grad S) + b from ``H0`` and return the states at ``save_at``.

    Args:
        H0: initial thickness [m], shape (ny, nx); its dtype (float32/float64) sets the
            precision of the fields.
        bed: bed elevation [m], shape (ny, nx).
        grid: the static grid.
        rheology: a flow law (``physics.sia.Rheology``: ``laws.GlenLaw`` or a learned one).
        smb: mass-balance callable ``smb(S, t) -> b`` [m ice a^-1] (``physics.mass_balance``).
        save_at: the save times (static).
        scheme: the time-stepping scheme and its options (static).
        adjoint: how the steps are looped for differentiation (static).
        ice_free: optional (ny, nx) 0/1 field of cells held at zero thickness; what flows in
            is counted as outflow.

    Returns:
        A ``Trajectory`` with the initial state at index 0.
    """
    if not isinstance(save_at, SaveAt):
        raise TypeError(f"save_at must be a SaveAt, got {type(save_at).__name__}; "
                        "e.g. save_at=SaveAt((0.0, 10.0)).")
    if not isinstance(scheme, Scheme):
        raise TypeError(f"scheme must be a Scheme (e.g. ExplicitMUSCL()), got {scheme!r}.")
    if not isinstance(adjoint, Adjoint):
        raise TypeError(f"adjoint must be ForwardOnly(), Checkpointed() or StoreAll(), got "
                        f"{adjoint!r}.")
    H0 = jnp.asarray(H0)
    if H0.shape != grid.shape or jnp.shape(bed) != grid.shape:
        raise ValueError(f"H0 {H0.shape} and bed {jnp.shape(bed)} must have the grid's shape "
                         f"{grid.shape}.")
    if isinstance(smb, MassBalance) and smb.terms is None:  # constant terms stay out
        smb = smb.with_constant_terms()
    rheology, smb = cast_floats(rheology, H0.dtype), cast_floats(smb, H0.dtype)
    return _simulate(H0, jnp.asarray(bed, H0.dtype), rheology, smb,
                     None if ice_free is None else jnp.asarray(ice_free, H0.dtype),
                     grid=grid, times=save_at.times, scheme=scheme, adjoint=adjoint)


@jax.jit(static_argnames=("grid", "times", "scheme", "adjoint"))
def _simulate(H0, bed, rheology, smb, ice_free, *, grid, times, scheme, adjoint):
    tdt = _time_dtype()
    step = scheme.make_step(bed, rheology, smb, grid, ice_free)
    zero = jnp.zeros((), H0.dtype)
    state0 = State(t=jnp.zeros((), tdt), H=H0, steps=jnp.zeros((), jnp.int32),
                   smb_volume=zero, outflow_volume=zero, status=jnp.zeros((), jnp.int32),
                   iterations=jnp.zeros((), jnp.int32), residual=zero)

    per_interval = adjoint.split(len(times) - 1)

    def interval(state, t_target):
        state = dataclasses.replace(state, steps=jnp.zeros((), jnp.int32),
                                    iterations=jnp.zeros((), jnp.int32), residual=zero)
        state = per_interval.advance(step, state, t_target, scheme.max_steps)
        short = (state.status == STATUS_OK) & (state.t < t_target)
        state = dataclasses.replace(
            state, status=jnp.where(short, STATUS_MAX_STEPS, state.status))
        out = (state.H, state.steps, state.smb_volume, state.outflow_volume, state.status,
               state.t, state.iterations, state.residual)
        return state, out

    targets = jnp.asarray(times[1:], tdt)
    _, (Hs, steps, smb_v, out_v, status, reached, its, res) = lax.scan(interval, state0,
                                                                        targets)

    def with_initial(first, rest):
        return jnp.concatenate([first[None], rest], axis=0)

    return Trajectory(
        times=jnp.asarray(times, tdt),
        thickness=with_initial(H0, Hs),
        steps=with_initial(jnp.zeros((), jnp.int32), steps),
        smb_volume=with_initial(zero, smb_v),
        outflow_volume=with_initial(zero, out_v),
        status=with_initial(jnp.zeros((), jnp.int32), status),
        reached=with_initial(jnp.zeros((), tdt), reached),
        iterations=with_initial(jnp.zeros((), jnp.int32), its),
        residual=with_initial(zero, res),
    )


# --------------------------------------------------------------------------------------------
# Diagnostics


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
