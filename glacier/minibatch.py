"""Mini-batches of many glaciers: groups of similar grid size, each on its own cropped grid.

A training set of hundreds of glaciers is one padded ``train.GlacierBatch`` on the host; its
gradient on the whole batch at once needs memory in proportion to the number of glaciers.
With ``train.batch_size=B`` the glaciers are instead

- **grouped by size** (``plan``): sorted by the extent of their region (the cells not held
  ice-free, with ice or observed; rows in buckets, then columns), cut into groups of B, each
  group cropped to the smallest window of the common grid that holds its glaciers plus
  ``margin`` ice-free cells, its sides rounded up to a multiple of ``bucket`` cells so that
  groups of similar size share one compiled program. The cropping changes nothing: cells
  outside a glacier's region are held ice-free and its edge cells repeat the bed, exactly as
  on the padded grid (a test checks the loss and gradient against the full batch). Every
  group holds B glaciers (the last one is filled with zero-weight copies, and B is rounded up
  to a multiple of the devices), so one program per window shape is compiled;
- **trained one group at a time** (``MiniBatchTrainer``): with ``train.batch_update=step``
  every group is one optimizer step (mini-batch Adam; the groups' order is shuffled every
  epoch from the seed and the epoch, so a resumed run repeats it; the learning-rate schedule
  runs over epochs x groups updates); with ``accumulate`` the groups' gradients are summed,
  weighted as in the full batch's loss, into one step per epoch: the full-batch result to
  round-off in the memory of one group.

Only the group being trained is placed on the devices (``place``), so device memory is that
of B glaciers on the group's window; ``glacier-train`` runs the forward-only passes around the
training (a twin's spin-up and observations, the step budget, the sensitivity weights, the
outputs of the trained law) B glaciers at a time as well (``train.in_chunks``). L-BFGS needs
the whole loss in its line search, so ``optimizer.lbfgs_steps`` must be 0 with mini-batches.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import train as tr
from .distributed import to_host
from .errors import ConfigError
from .grid import Grid

UPDATES = ("step", "accumulate")
"""``train.batch_update``: one optimizer step per group, or one per epoch from all groups."""


@dataclasses.dataclass(frozen=True)
class Group:
    """One mini-batch: some glaciers of the full batch on a window of its grid.

    Attributes:
        index: (B,) position of each of the group's glaciers in the full batch (padding
            copies repeat the first and have weight 0).
        real: (B,) True for the group's own glaciers, False for the padding copies.
        rows, cols: the window of the full grid, [start, stop).
        batch: the group's glaciers on the window (NumPy leaves: placed when trained).
        grid: the window's grid (the full grid's origin: coordinates play no part in the
            training computation, and equal windows share one compiled program).
    """

    index: np.ndarray
    real: np.ndarray
    rows: tuple[int, int]
    cols: tuple[int, int]
    batch: tr.GlacierBatch
    grid: Grid

    def problem(self, full: tr.Problem) -> tr.Problem:
        """``full`` (its step budget, times, scheme) on this group's window."""
        return dataclasses.replace(full, grid=self.grid)

    @property
    def weight(self) -> float:
        """Sum of the group's glacier weights (its share of the full loss)."""
        return float(np.sum(np.asarray(self.batch.weight)))


def regions(batch: tr.GlacierBatch) -> list[tuple[int, int, int, int]]:
    """Per glacier of ``batch``, the bounding box (r0, r1, c0, c1) of its region: the cells
    not held ice-free, with ice, or observed; the whole grid for a glacier with none."""
    free = np.asarray(batch.ice_free) > 0.5
    H0 = np.asarray(batch.H0)
    seen = np.any(np.isfinite(np.asarray(batch.obs)), axis=1) if batch.obs.shape[1] else 0
    region = ~free | (H0 > 0) | seen
    out = []
    for g in range(region.shape[0]):
        rows, cols = np.flatnonzero(region[g].any(1)), np.flatnonzero(region[g].any(0))
        if rows.size == 0:
            out.append((0, region.shape[1], 0, region.shape[2]))
        else:
            out.append((int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1))
    return out


def _window(lo: int, hi: int, n: int, margin: int, bucket: int) -> tuple[int, int]:
    """[start, stop) within [0, n) holding [lo - margin, hi + margin), its length rounded up
    to a multiple of ``bucket`` (or n), centred on the region where the grid allows."""
    need = min(n, hi - lo + 2 * margin)
    size = min(n, int(math.ceil(need / bucket) * bucket))
    start = (lo + hi - size) // 2
    start = max(0, min(start, n - size))
    return start, start + size


def _crop(tree, index: np.ndarray, rows: tuple[int, int], cols: tuple[int, int]):
    """Leaves of a batch: glaciers ``index`` on the window (leaves of 3 or more dimensions end
    in (ny, nx), or in (1, 1) for a value per glacier; those of one dimension are per
    glacier)."""
    def one(x):
        x = np.asarray(x)[index]
        if x.ndim < 3 or x.shape[-2:] == (1, 1):
            return x
        return x[..., rows[0]:rows[1], cols[0]:cols[1]]
    return jax.tree_util.tree_map(one, tree)


def plan(batch: tr.GlacierBatch, grid: Grid, batch_size: int, *, multiple_of: int = 1,
         margin: int = 2, bucket: int = 8) -> tuple[Group, ...]:
    """The groups of ``batch``'s glaciers of weight > 0 (see the module docstring).

    ``batch_size`` glaciers per group, rounded up to a multiple of ``multiple_of`` (the
    devices); ``margin`` ice-free cells kept around every region; window sides rounded up to a
    multiple of ``bucket`` cells.
    """
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ConfigError(f"train.batch_size={batch_size} must be a positive number of "
                          "glaciers (or null: all glaciers in one batch).")
    size = int(math.ceil(batch_size / max(1, multiple_of)) * max(1, multiple_of))
    real = np.flatnonzero(np.asarray(batch.weight) > 0)
    if real.size == 0:
        raise ConfigError("No glacier with a weight > 0 to train on.")
    boxes = regions(batch)

    def key(g):  # by rows (in buckets), then columns: neighbours share a small window
        ny, nx = boxes[g][1] - boxes[g][0], boxes[g][3] - boxes[g][2]
        return (math.ceil((ny + 2 * margin) / bucket), nx, ny, g)
    order = sorted(real, key=key)
    groups = []
    for k in range(0, len(order), size):
        own = np.asarray(order[k:k + size])
        index = np.concatenate([own, np.full(size - own.size, own[0])])
        is_real = np.arange(size) < own.size
        r0 = min(boxes[g][0] for g in own)
        r1 = max(boxes[g][1] for g in own)
        c0 = min(boxes[g][2] for g in own)
        c1 = max(boxes[g][3] for g in own)
        rows = _window(r0, r1, grid.ny, margin, bucket)
        cols = _window(c0, c1, grid.nx, margin, bucket)
        part = _crop(batch, index, rows, cols)
        part = dataclasses.replace(part, weight=np.where(is_real, part.weight, 0.0))
        window = dataclasses.replace(grid, ny=rows[1] - rows[0], nx=cols[1] - cols[0])
        groups.append(Group(index=index, real=is_real, rows=rows, cols=cols, batch=part,
                            grid=window))
    return tuple(groups)


def padding_ratio(groups: Sequence[Group], batch: tr.GlacierBatch) -> float:
    """Cells the groups compute per cell of the glaciers' own regions (1: no padding)."""
    boxes = regions(batch)
    own = sum((b[1] - b[0]) * (b[3] - b[2]) for g in groups for b in
              (boxes[i] for i in g.index[g.real]))
    done = sum(g.index.size * g.grid.ny * g.grid.nx for g in groups)
    return done / max(own, 1)


def epoch_order(n_groups: int, seed: int, epoch: int) -> np.ndarray:
    """The order the groups are trained in at ``epoch`` (the same on resume)."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n_groups)


class MiniBatchTrainer(tr.Trainer):
    """``train.Trainer`` over the groups of ``plan`` (see the module docstring).

    ``run(state, groups, ...)`` takes the groups in place of a batch; everything else
    (budget doubling, non-finite epochs, history, resuming) is the base class's, per epoch.

    Args:
        problem: the full batch's problem (its step budget serves every group).
        n_groups: number of groups (the schedule of ``update="step"`` counts their updates).
        size: glaciers in the full batch (the length of the per-glacier records).
        update: "step" or "accumulate" (``train.batch_update``).
        seed: seeds the groups' order per epoch.
        place: puts a group's batch on the devices (default: as it is).
        **kwargs: of ``train.Trainer``.
    """

    def __init__(self, problem: tr.Problem, *, n_groups: int, size: int,
                 update: str = "step", seed: int = 0,
                 place: Callable[[tr.GlacierBatch], tr.GlacierBatch] | None = None, **kwargs):
        if update not in UPDATES:
            raise ConfigError(f"train.batch_update={update!r} must be one of "
                              f"{', '.join(UPDATES)}.")
        if kwargs.get("lbfgs_steps"):
            raise ConfigError("optimizer.lbfgs_steps > 0 needs the whole batch (L-BFGS's line "
                              "search evaluates the full loss): set optimizer.lbfgs_steps=0 "
                              "with train.batch_size, or train.batch_size=null.")
        super().__init__(problem, updates_per_epoch=n_groups if update == "step" else 1,
                         **kwargs)
        self.update, self.seed, self.size = update, int(seed), int(size)
        self.place = place or (lambda b: jax.tree_util.tree_map(jnp.asarray, b))
        self._grad = jax.jit(self.value_and_grad, static_argnames=("problem",))
        self._apply = jax.jit(self.adam_update)

    def step(self, state: tr.TrainState, groups: Sequence[Group],
             problem: tr.Problem | None = None):
        """One epoch over all groups: (new state, loss, aux) with aux per glacier of the full
        batch (host arrays; glaciers of no group: loss 0, status 0)."""
        problem = self.problem if problem is None else problem
        total = sum(g.weight for g in groups)
        epoch = int(state.epoch)
        order = (epoch_order(len(groups), self.seed, epoch) if self.update == "step"
                 else range(len(groups)))
        current, loss, grads, full = state, 0.0, None, None
        for k in order:
            g = groups[k]
            batch, share = self.place(g.batch), g.weight / total
            if self.update == "step":
                current, part, aux = self._steps(current, batch, problem=g.problem(problem),
                                                 adam=True)
            else:
                (part, aux), grad = self._grad(current.law, batch, problem=g.problem(problem))
                scaled = jax.tree_util.tree_map(lambda x, s=share: s * x, grad)
                grads = scaled if grads is None else jax.tree_util.tree_map(
                    jnp.add, grads, scaled)
            loss += share * float(part)
            aux = to_host(aux)
            if full is None:
                full = {key: np.zeros((self.size, *np.shape(v)[1:]), np.asarray(v).dtype)
                        for key, v in aux.items()}
            for key, v in aux.items():
                full[key][g.index[g.real]] = np.asarray(v)[g.real]
        if self.update == "accumulate":
            current = self._apply(state, grads)
        return tr.TrainState(current.law, current.opt_state, state.epoch + 1), loss, full
