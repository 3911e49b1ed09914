"""UDE training: fit a law's parameters through the SIA solve against observed thickness.

Many glaciers are trained at once on a *padded common grid*: each glacier is surrounded by
ice-free cells (held at zero thickness, bed repeated from its edge) up to the largest shape,
which reproduces the outflow boundary of its own grid exactly, and the glaciers are stacked on a
leading axis that ``jax.vmap`` maps over and ``jax.sharding`` splits across devices. The whole
training step (forward solve of every glacier, loss, reverse-mode gradient through the
checkpointed time loop, optimizer update) is one jitted function.

No file formats here: checkpoints, NetCDF and figures are the caller's (``glacier.io``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from . import losses
from . import solver as slv
from .compile import strong_types
from .distributed import to_host
from .domains import Domain
from .errors import ConfigError, NumericalError
from .grid import Grid
from .physics.mass_balance import MassBalance
from .physics.params import Physics
from .schemes import Scheme


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class GlacierBatch:
    """Glaciers stacked on a leading axis G, on a common grid (ny, nx).

    Attributes:
        H0, bed, ice_free: (G, ny, nx) initial thickness [m], bed [m], cells held ice-free.
        smb: mass-balance model whose leaves are (G, ny, nx), or (G, 1, 1) for a parameter
            that is one number per glacier.
        temperature: (G,) long-term mean air temperature [degC].
        obs: (G, nt, ny, nx) observed thickness [m] at the save times after t = 0 (NaN = not
            observed).
        weight: (G,) weight of each glacier in the loss (0 for padding glaciers).
        scale: (G,) per-glacier normalisation [m] of the thickness misfit.
        vel_obs: (G, nt, ny, nx) observed surface speed [m a^-1] at the same times (NaN = not
            observed), or an empty (G, 0, ny, nx) array when there are none.
        vel_scale: (G,) per-glacier normalisation [m a^-1] of the speed misfit.
    """

    H0: jax.Array
    bed: jax.Array
    ice_free: jax.Array
    smb: MassBalance
    temperature: jax.Array
    obs: jax.Array
    weight: jax.Array
    scale: jax.Array
    vel_obs: jax.Array | None = None
    vel_scale: jax.Array | None = None

    @property
    def size(self) -> int:
        return int(self.H0.shape[0])


@dataclasses.dataclass(frozen=True)
class Problem:
    """Static description of a training problem: grid, save times, scheme, physics, names.

    Hashable: it is a static argument of the jitted training step.
    """

    grid: Grid
    save_at: slv.SaveAt
    scheme: Scheme
    physics: Physics
    names: tuple[str, ...]

    @property
    def times(self) -> tuple[float, ...]:
        return self.save_at.times

    def with_budget(self, max_steps: int) -> Problem:
        """The same problem with another step budget of the scheme."""
        return dataclasses.replace(self, scheme=self.scheme.with_budget(max_steps))


UNBOUNDED = 10_000_000
"""Step budget of forward-only runs (a while loop: the budget only guards against runaways)."""


def _pad_to(a, shape, pad_value=None, mode="constant"):
    py = shape[0] - a.shape[0]
    px = shape[1] - a.shape[1]
    widths = ((py // 2, py - py // 2), (px // 2, px - px // 2))
    if mode == "edge":
        return np.pad(a, widths, mode="edge")
    return np.pad(a, widths, constant_values=pad_value)


def stack_domains(domains: Sequence[Domain], *, margin: int = 2, multiple_of: int = 1,
                  dtype="float64") -> tuple[GlacierBatch, Grid]:
    """Pad glaciers to a common grid and stack them (observations left empty).

    All domains must share the grid spacing. ``margin`` ice-free cells surround every glacier
    (two are enough to reproduce the outflow edge of its own grid exactly). ``multiple_of``
    pads the number of glaciers with zero-weight copies of the first one, so that the batch
    splits evenly across devices.
    """
    if not domains:
        raise ConfigError("No glaciers to train on.")
    dxs = {d.grid.dx for d in domains}
    if len(dxs) != 1:
        raise ConfigError(f"Glaciers trained together must share one grid spacing; got dx = "
                          f"{sorted(dxs)} m. Set a common dx for all of them (e.g. "
                          "glacier.dx=200 for the real glaciers).")
    dx = dxs.pop()
    ny = max(d.grid.ny for d in domains) + 2 * margin
    nx = max(d.grid.nx for d in domains) + 2 * margin
    shape = (ny, nx)
    extra = (-len(domains)) % max(1, multiple_of)
    G = len(domains) + extra
    f = jnp.dtype(dtype)
    # Each field filled in place, one glacier at a time (a list of padded arrays and their
    # stack would hold three copies of the batch at once: 0.7 GB for 2 048 small glaciers).
    names = ("H0", "bed", "free", "base", "gradient", "reference", "min_rate", "max_rate")
    # A mass-balance parameter that is one number per glacier (every synthetic valley's, the
    # bounds of most real ones) is kept as (G, 1, 1): it broadcasts on the grid.
    scalar = {k: all(np.ndim(getattr(d.smb, k)) == 0 for d in domains) for k in names[3:]}
    out = {k: np.empty((G, 1, 1) if scalar.get(k) else (G, ny, nx), f) for k in names}
    for g in range(G):
        d = domains[g if g < len(domains) else 0]  # padding: copies of the first glacier
        inside = np.ones(d.grid.shape)
        if d.ice_free is not None:
            inside = inside * (1 - d.ice_free)
        out["H0"][g] = _pad_to(d.thickness, shape, 0.0)
        out["bed"][g] = _pad_to(d.bed, shape, mode="edge")
        out["free"][g] = 1.0 - _pad_to(inside, shape, 0.0)
        for k in names[3:]:
            value = np.asarray(getattr(d.smb, k), np.float64)
            out[k][g] = value if scalar[k] else _pad_to(
                np.broadcast_to(value, d.grid.shape), shape, mode="edge")
    temps = [np.nan if d.temperature is None else d.temperature for d in domains]
    temps += [temps[0]] * extra
    weight = [1.0] * len(domains) + [0.0] * extra
    st = lambda k: jnp.asarray(out.pop(k))
    batch = GlacierBatch(
        H0=st("H0"), bed=st("bed"), ice_free=st("free"),
        smb=MassBalance(base=st("base"), gradient=st("gradient"), reference=st("reference"),
                        min_rate=st("min_rate"), max_rate=st("max_rate")),
        temperature=jnp.asarray(temps, f), obs=jnp.zeros((G, 0, ny, nx), f),
        weight=jnp.asarray(weight, f), scale=jnp.ones(G, f),
    )
    first = domains[0].grid
    return batch, Grid(ny=ny, nx=nx, dx=dx, x0=first.x0 - margin * dx,
                       y0=first.y0 - margin * dx)


def with_observations(batch: GlacierBatch, obs, vel_obs=None) -> GlacierBatch:
    """Attach observed thickness (G, nt, ny, nx), optionally observed surface speed of the
    same shape, and their per-glacier scales (mean observed values)."""
    obs = jnp.asarray(obs, batch.H0.dtype)
    scale = jax.vmap(losses.thickness_scale)(obs)
    if vel_obs is None:
        return dataclasses.replace(batch, obs=obs, scale=scale)
    vel_obs = jnp.asarray(vel_obs, batch.H0.dtype)
    vel_scale = jax.vmap(lambda v: losses.thickness_scale(v, floor=0.1))(vel_obs)
    return dataclasses.replace(batch, obs=obs, scale=scale, vel_obs=vel_obs,
                               vel_scale=vel_scale)


def take(batch: GlacierBatch, index, *, multiple_of: int = 1) -> GlacierBatch:
    """The glaciers ``index`` of ``batch`` (host arrays: every leaf has the glaciers on its
    leading axis), padded with zero-weight copies of the first to a multiple of
    ``multiple_of``."""
    index = [int(g) for g in index]
    extra = (-len(index)) % max(1, multiple_of)
    idx = np.asarray(index + [index[0]] * extra)
    out = jax.tree_util.tree_map(lambda x: np.asarray(x)[idx], batch)
    weight = np.where(np.arange(idx.size) < len(index), out.weight, 0.0)
    return dataclasses.replace(out, weight=weight.astype(out.weight.dtype))


def in_chunks(fn: Callable[[GlacierBatch], Any], batch: GlacierBatch, size: int | None):
    """``fn(batch)`` computed ``size`` glaciers at a time (``None``: all at once).

    ``fn`` maps a batch to a pytree of arrays whose leading axis is the batch's glaciers (a
    trajectory, per-glacier losses). The batch is cut into consecutive chunks of ``size``
    glaciers, the last one filled with zero-weight copies of its first glacier so that every
    chunk has one shape (one compiled program), each chunk's result is brought to the host
    before the next one runs, and the results are joined: the same as ``fn(batch)``, in the
    device memory of ``size`` glaciers. For the forward-only passes of a mini-batch run
    (``train.batch_size``): the spin-up and the observations of a twin, the step budget, the
    sensitivity weights and the outputs of the trained law.
    """
    n = batch.size
    if size is None or size >= n:
        return jax.tree_util.tree_map(np.asarray, fn(batch))
    size = int(size)
    if size < 1:
        raise ConfigError(f"chunks of {size} glaciers: the size must be positive.")
    joined = None
    for start in range(0, n, size):
        index = np.arange(start, min(n, start + size))
        out = jax.tree_util.tree_map(np.asarray, fn(take(batch, index, multiple_of=size)))
        if joined is None:  # the results, filled chunk by chunk (no list of parts to join)
            joined = jax.tree_util.tree_map(lambda x: np.empty((n, *x.shape[1:]), x.dtype), out)
        for full, x in zip(jax.tree_util.tree_leaves(joined), jax.tree_util.tree_leaves(out),
                           strict=True):
            full[index] = x[:index.size]
    return joined


# --------------------------------------------------------------------------------------------
# Forward model and loss


def simulate_batch(law, batch: GlacierBatch, problem: Problem,
                   adjoint: slv.Adjoint = slv.FORWARD_ONLY, speed: bool = False):
    """Trajectories of every glacier under ``law``: thickness (G, nt, ny, nx), status, steps.

    With ``speed=True`` also the SIA surface speed (G, nt, ny, nx) [m a^-1] at the save times,
    as a second return value.
    """
    def one(H0, bed, ice_free, smb, T):
        rheology = law.rheology(T, problem.physics)
        traj = slv.simulate(H0, bed, grid=problem.grid, rheology=rheology, smb=smb,
                            save_at=problem.save_at, scheme=problem.scheme, ice_free=ice_free,
                            adjoint=adjoint)
        if not speed:
            return traj
        return traj, slv.surface_speed(traj.thickness, bed, rheology, problem.grid)

    adjoint = adjoint.split(batch.H0.shape[0])  # the glaciers share the memory budget
    return jax.vmap(one)(batch.H0, batch.bed, batch.ice_free, batch.smb, batch.temperature)


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """Weights of the terms added to the thickness misfit.

    Args:
        l2: weight of the squared L2 norm of the law's parameters (weight decay).
        velocity: weight of the surface-speed misfit (needs ``batch.vel_obs``).
    """

    l2: float = 0.0
    velocity: float = 0.0


CHECKPOINTED = slv.Checkpointed()
"""The adjoint of training with the explicit scheme: every step's state kept when the batch's
states fit in 2 GiB, else chunks of about sqrt(budget) steps."""


def loss_fn(law, batch: GlacierBatch, problem: Problem, reg: LossWeights = LossWeights(),
            adjoint: slv.Adjoint | None = None):
    """Total loss and aux (per-glacier losses, status, steps).

    ``adjoint``: default ``solver.reverse_adjoint(problem.scheme)`` (checkpointed for the
    explicit scheme, one stored state per step for the implicit one).

    loss_g = mean over observed cells and times of ((H - H_obs) / scale_g)^2
             [+ velocity * mean over observed cells of ((u - u_obs) / vel_scale_g)^2];
    total = sum_g w_g loss_g / sum_g w_g + l2 |params|^2.
    """
    adjoint = slv.reverse_adjoint(problem.scheme) if adjoint is None else adjoint
    with_speed = bool(reg.velocity) and batch.vel_obs is not None
    if with_speed:
        traj, u = simulate_batch(law, batch, problem, adjoint, speed=True)
    else:
        traj = simulate_batch(law, batch, problem, adjoint)
    per = jax.vmap(losses.weighted_mse)(traj.thickness[:, 1:], batch.obs, None, batch.scale)
    if with_speed:
        per = per + reg.velocity * jax.vmap(losses.weighted_mse)(
            u[:, 1:], batch.vel_obs, None, batch.vel_scale)
    total = jnp.sum(batch.weight * per) / jnp.sum(batch.weight)
    if reg.l2:
        total = total + reg.l2 * losses.l2(jax.tree_util.tree_leaves(law))
    return total, dict(per_glacier=per, status=traj.status, steps=traj.steps)


def sensitivity_weights(batch: GlacierBatch, problem: Problem, A_prior: float, *,
                        factor: float = 3.0, chunk: int | None = None) -> jax.Array:
    """Per-glacier loss weights that balance how strongly each glacier constrains A.

    A glacier's thickness misfit changes with A by very different amounts: a cold or thin
    glacier barely moves when A changes, a warm, thick, steep one a lot. Weighting every
    glacier by w_g = 1 / s_g with s_g = L_g(A_prior f) + L_g(A_prior / f) (the misfit of a
    constant-A model a factor f either side of the prior, against its observations; prior,
    not truth) makes each glacier's misfit about (ln A_g - ln A_g*)^2 near the optimum, so the
    optimiser weighs all temperatures alike. Weights are normalised to mean 1 over the real
    (non-padding) glaciers; padding glaciers keep weight 0. ``chunk``: glaciers per forward
    run (``in_chunks``).
    """
    from .laws import ConstantA

    big = problem.with_budget(UNBOUNDED)
    per = jax.jit(lambda law, b: loss_fn(law, b, big, adjoint=slv.FORWARD_ONLY)[1]["per_glacier"])
    high, low = ConstantA.from_value(A_prior * factor), ConstantA.from_value(A_prior / factor)
    s = jnp.asarray(in_chunks(lambda b: per(high, b) + per(low, b), batch, chunk))
    real = jnp.asarray(batch.weight) > 0
    w = jnp.where(real, 1.0 / jnp.maximum(s, 1e-300), 0.0)
    return w * jnp.sum(real) / jnp.sum(w)


def size_step_budget(law, batch: GlacierBatch, problem: Problem, *, safety: float = 1.5,
                     minimum: int = 16, chunk: int | None = None) -> Problem:
    """Set the per-interval step budget from a forward run of the current law.

    The checkpointed loop has a fixed length, so its cost is the budget, not the steps taken;
    keep it a modest multiple of what is needed. Chunks of about sqrt(budget) steps.
    ``chunk``: glaciers per forward run (``in_chunks``).
    """
    run = jax.jit(simulate_batch, static_argnames=("problem", "adjoint"))
    free = problem.with_budget(UNBOUNDED)
    traj = in_chunks(lambda b: run(law, b, free), batch, chunk)
    needed = int(np.max(np.asarray(traj.steps)))
    if np.any(np.asarray(traj.status) != slv.STATUS_OK):
        raise NumericalError("The forward run of the initial law failed before training "
                             "(non-finite thickness). Check the glaciers and the law's bounds.")
    return problem.with_budget(max(minimum, int(math.ceil(needed * safety))))


# --------------------------------------------------------------------------------------------
# Optimisation


def make_schedule(name: str, lr: float, epochs: int, *, decay: float = 0.1):
    """Learning-rate schedule: constant, cosine (to decay lr) or exponential (to decay lr)."""
    if not lr > 0:
        raise ConfigError(f"optimizer.lr must be positive, got {lr}.")
    steps = max(1, epochs)
    if name == "constant":
        return optax.constant_schedule(lr)
    if name == "cosine":
        return optax.cosine_decay_schedule(lr, steps, alpha=decay)
    if name == "exponential":
        return optax.exponential_decay(lr, steps, decay)
    raise ConfigError(f"optimizer.schedule={name!r} is unknown; choose constant, cosine or "
                      "exponential.")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
    """Everything a resumed run needs: law (parameters), optimizer state, epoch counter."""

    law: Any
    opt_state: Any
    epoch: jax.Array


@dataclasses.dataclass
class History:
    """Per-epoch records (host arrays)."""

    loss: list[float] = dataclasses.field(default_factory=list)
    loss_glacier: list[np.ndarray] = dataclasses.field(default_factory=list)
    learning_rate: list[float] = dataclasses.field(default_factory=list)
    wall_time: list[float] = dataclasses.field(default_factory=list)
    phase: list[str] = dataclasses.field(default_factory=list)


def device_mesh(n_devices: int | None = None) -> Mesh:
    devices = jax.devices()
    if n_devices:
        devices = devices[:n_devices]
    return Mesh(np.array(devices), ("glaciers",))


def _place(tree, sharding: NamedSharding):
    """``device_put(tree, sharding)``; when the mesh spans devices of other processes, each
    process places its own part of its (identical) host values."""
    if all(d.process_index == jax.process_index() for d in sharding.mesh.devices.flat):
        return jax.device_put(tree, sharding)

    def one(x):
        host = np.asarray(x)  # NaN gaps: device_put's equality check across processes fails
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
    return jax.tree_util.tree_map(one, tree)


def shard(batch: GlacierBatch, mesh: Mesh) -> GlacierBatch:
    """Split the glacier axis of every leaf across the mesh's devices (of all processes)."""
    return _place(batch, NamedSharding(mesh, PartitionSpec("glaciers")))


def replicate(tree, mesh: Mesh):
    """``tree`` on every device of the mesh (of all processes)."""
    return _place(tree, NamedSharding(mesh, PartitionSpec()))


@dataclasses.dataclass(frozen=True)
class TrainRun:
    """What ``Trainer.run`` returns: the last good state, the history and the problem it ended
    with (its step budget may have grown during the run)."""

    state: TrainState
    history: History
    problem: Problem


ON_NONFINITE = ("stop", "skip", "rollback")
"""What ``Trainer.run`` does with an epoch whose loss, update or solve is not finite."""


class Trainer:
    """Adam (with a schedule) for ``epochs`` steps, then optionally L-BFGS, full batch.

    One epoch is one optimizer step on the loss of all glaciers. Call ``init`` for a fresh
    state and ``run`` to advance it; ``run`` can stop early (``should_stop``) and be resumed
    from a saved ``TrainState`` with the same result, bit for bit on CPU. The trainer holds
    only its settings: ``run`` returns the new state, history and problem and changes nothing.
    """

    def __init__(self, problem: Problem, *, lr: float = 0.01, schedule: str = "constant",
                 epochs: int = 100, lbfgs_steps: int = 0, reg: LossWeights = LossWeights(),
                 clip_norm: float | None = None, decay: float = 0.1,
                 max_budget: int = 1_000_000, on_nonfinite: str = "stop",
                 max_bad_epochs: int = 5, updates_per_epoch: int = 1):
        if epochs < 0 or lbfgs_steps < 0:
            raise ConfigError("train.epochs and optimizer.lbfgs_steps must be >= 0.")
        if on_nonfinite not in ON_NONFINITE:
            raise ConfigError(f"train.on_nonfinite={on_nonfinite!r} must be one of "
                              f"{', '.join(ON_NONFINITE)}.")
        self.on_nonfinite = on_nonfinite
        self.max_bad_epochs = int(max_bad_epochs)
        self.problem = problem
        self.epochs = int(epochs)
        self.lbfgs_steps = int(lbfgs_steps)
        self.updates_per_epoch = int(updates_per_epoch)  # optimizer steps per epoch
        self.schedule = make_schedule(schedule, lr, epochs * self.updates_per_epoch,
                                      decay=decay)
        chain = [optax.clip_by_global_norm(clip_norm)] if clip_norm else []
        self.adam = optax.chain(*chain, optax.adam(self.schedule))
        self.lbfgs = optax.lbfgs()
        self.reg = reg
        self.max_budget = int(max_budget)
        self._steps = jax.jit(self._step_impl, static_argnames=("problem", "adam"))

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.lbfgs_steps

    def loss(self, law, batch, problem: Problem | None = None):
        return loss_fn(law, batch, self.problem if problem is None else problem, self.reg)

    def init(self, law) -> TrainState:
        law = strong_types(law)  # one compiled step per phase (compile.py)
        return TrainState(law=law, opt_state=strong_types((self.adam.init(law),
                                                           self.lbfgs.init(law))),
                          epoch=jnp.zeros((), jnp.int32))

    def value_and_grad(self, law, batch, problem: Problem):
        """((loss, aux), gradient with respect to ``law``) on ``batch``."""
        return jax.value_and_grad(lambda p: self.loss(p, batch, problem), has_aux=True)(law)

    def adam_update(self, state: TrainState, grads) -> TrainState:
        """``state`` after one Adam step along ``grads`` (the epoch counter advanced)."""
        adam_state, lbfgs_state = state.opt_state
        updates, adam_state = self.adam.update(grads, adam_state, state.law)
        return TrainState(optax.apply_updates(state.law, updates), (adam_state, lbfgs_state),
                          state.epoch + 1)

    def _step_impl(self, state: TrainState, batch, *, problem: Problem, adam: bool):
        (loss, aux), grads = self.value_and_grad(state.law, batch, problem)
        if adam:
            return self.adam_update(state, grads), loss, aux
        adam_state, lbfgs_state = state.opt_state
        updates, lbfgs_state = self.lbfgs.update(
            grads, lbfgs_state, state.law, value=loss, grad=grads,
            value_fn=lambda law: self.loss(law, batch, problem)[0])
        law = optax.apply_updates(state.law, updates)
        return TrainState(law, (adam_state, lbfgs_state), state.epoch + 1), loss, aux

    def step(self, state: TrainState, batch, problem: Problem | None = None):
        """One epoch: (new state, loss, aux) of the optimizer phase of ``state.epoch``."""
        problem = self.problem if problem is None else problem
        return self._steps(state, batch, problem=problem,
                           adam=bool(int(state.epoch) < self.epochs))

    def run(self, state: TrainState, batch, *, history: History | None = None,
            problem: Problem | None = None,
            on_epoch: Callable[[TrainState, History, Problem], None] | None = None,
            should_stop: Callable[[], bool] = lambda: False) -> TrainRun:
        """Advance ``state`` to ``total_epochs``; returns the last good state and the history.

        When a step exhausts the step budget of the bounded loop (the law now flows faster),
        the budget is doubled and the epoch repeated: results do not depend on the budget as
        long as it is not exhausted (steps past the save time are identities), so runs stay
        reproducible and resumable. A non-finite loss or a failed solve stops the run with a
        ``NumericalError`` carrying the last good ``TrainRun`` in its ``run`` attribute
        (``on_nonfinite="stop"``). With "skip" the epoch's update is discarded (the epoch is
        recorded with a NaN loss and the schedule moves on); with "rollback" the parameters go
        back to before the update that led to the failing ones and take half of that update
        (with the optimizer state of then), halving again on each further failure. More than
        ``max_bad_epochs`` such epochs in a row stop the run as "stop" does. (A resumed run has
        no update before its first epoch to roll back: it skips there.)
        """
        history = History() if history is None else history
        problem = self.problem if problem is None else problem
        start = time.perf_counter() - (history.wall_time[-1] if history.wall_time else 0.0)
        previous, bad_in_a_row = None, 0
        while int(state.epoch) < self.total_epochs and not should_stop():
            epoch = int(state.epoch)
            adam = epoch < self.epochs
            new_state, loss, aux = self.step(state, batch, problem)
            loss, aux = float(loss), to_host(aux)  # per glacier: gathered from all processes
            status = np.asarray(aux["status"])
            if np.all((status == slv.STATUS_OK) | (status == slv.STATUS_MAX_STEPS)) \
                    and np.any(status == slv.STATUS_MAX_STEPS) \
                    and problem.scheme.max_steps < self.max_budget:
                problem = problem.with_budget(2 * problem.scheme.max_steps)
                continue
            finite = all(bool(jnp.all(jnp.isfinite(x)))
                         for x in jax.tree_util.tree_leaves(new_state.law))
            if not math.isfinite(loss) or not finite or np.any(status != slv.STATUS_OK):
                bad = np.flatnonzero(np.any(status != slv.STATUS_OK, axis=-1))
                names = [problem.names[i] for i in bad if i < len(problem.names)]
                err = NumericalError(
                    f"Training stopped at epoch {epoch}: "
                    + (f"loss is {loss}" if not math.isfinite(loss) else
                       "the update made the law's parameters non-finite" if not finite else
                       f"the solve of glacier(s) {names} failed "
                       f"({slv.STATUS_NAMES[int(status.max())]})")
                    + ". The parameters of the last good epoch are kept."
                    + (" Use a smaller solver.dt." if np.any(status == slv.STATUS_NEWTON)
                       else "")
                    + (f" ({bad_in_a_row} bad epoch(s) in a row before it were "
                       f"{'skipped' if self.on_nonfinite == 'skip' else 'rolled back'}.)"
                       if bad_in_a_row else
                       " train.on_nonfinite=skip or rollback would go on past it."
                       if self.on_nonfinite == "stop" else ""))
                err.run = TrainRun(state, history, problem)
                if self.on_nonfinite == "stop" or bad_in_a_row >= self.max_bad_epochs:
                    raise err
                bad_in_a_row += 1
                loss, aux = float("nan"), dict(aux, per_glacier=np.full(
                    np.shape(aux["per_glacier"]), np.nan))
                if self.on_nonfinite == "rollback" and previous is not None:
                    # back to before the update that led here, and half of that update
                    law = jax.tree_util.tree_map(
                        lambda a, b: a + 0.5 * (b - a)
                        if jnp.issubdtype(jnp.result_type(a), jnp.inexact) else a,
                        previous.law, state.law)
                    new_state = TrainState(law, previous.opt_state, state.epoch + 1)
                else:
                    new_state = TrainState(state.law, state.opt_state, state.epoch + 1)
            else:
                bad_in_a_row, previous = 0, state
            # The loss of `state` (before the update) is what this epoch measured.
            history.loss.append(loss)
            history.loss_glacier.append(np.asarray(aux["per_glacier"]))
            history.learning_rate.append(float(self.schedule(epoch * self.updates_per_epoch))
                                         if adam else float("nan"))
            history.wall_time.append(time.perf_counter() - start)
            history.phase.append("adam" if adam else "lbfgs")
            state = new_state
            if on_epoch is not None:
                on_epoch(state, history, problem)
        return TrainRun(state, history, problem)
