"""Forward simulation of a ``Domain``: the library function behind ``glacier-simulate``.

``run`` turns a domain plus a scheme and save times into a trajectory and the diagnostics that
``simulation.nc`` holds. ``run_in_intervals`` gives the same result one save interval at a
time, calling ``on_interval(t, volume, newton)`` in between (the console script drives a
progress bar with it, with the Newton iterations of the implicit scheme). No files, no config
objects: plain values in, arrays out.

``run_in_intervals``: every interval is one call of ``run`` with the same static save times
``(0, save_every)``, so the solver compiles once (plus once for a shorter last interval); the
caller carries the thickness, the time offset and the cumulative volumes. Compared with one
``run`` over all save times, the step sizes are the same but the clock restarts at 0 in every
interval, so the last step of each interval can differ in the last bits: results agree to
round-off, and each way is deterministic on its own.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import solver as slv
from .domains import Domain
from .grid import edge_cells
from .laws import glen_law
from .physics.params import Physics
from .schemes import Scheme, scheme_name


@dataclasses.dataclass(frozen=True)
class SimulationResult:
    """A finished (or stopped) forward run, as NumPy arrays.

    ``thickness``, ``surface``, ``velocity``, ``smb`` are (nt, ny, nx); ``volume``, ``area``,
    ``smb_volume``, ``outflow_volume``, ``steps`` and ``iterations`` (Newton iterations per
    interval, 0 for the explicit scheme) are (nt,). When the run failed, only the
    states up to the last good save are kept and ``failure`` describes what went wrong.
    """

    domain: Domain
    times: np.ndarray
    thickness: np.ndarray
    surface: np.ndarray
    velocity: np.ndarray
    smb: np.ndarray
    volume: np.ndarray
    area: np.ndarray
    smb_volume: np.ndarray
    outflow_volume: np.ndarray
    steps: np.ndarray
    physics: Physics
    wall_time: float
    failure: str | None = None
    iterations: np.ndarray | None = None
    scheme: str = "explicit"

    @property
    def budget_error(self) -> float:
        """|V(t) - V(0) - (applied SMB - outflow)| / max(V) at the last saved state."""
        change = self.volume[-1] - self.volume[0]
        booked = self.smb_volume[-1] - self.outflow_volume[-1]
        scale = max(float(np.max(self.volume)), float(np.abs(self.smb_volume).max()), 1e-300)
        return float(abs(change - booked) / scale)

    @property
    def warnings(self) -> list[str]:
        """What is physically suspect in the result (empty: nothing).

        A surface speed above ``SPEED_CEILING`` (the fastest glaciers flow about 17 km/a:
        likely a wrong A or units), and ice thicker than 1 m in the outermost cells of a
        non-periodic domain (it leaves through the edge and is booked as outflow: the domain
        may be too small).
        """
        out = []
        speed = np.asarray(self.velocity)
        if speed.size and np.nanmax(speed) > SPEED_CEILING:
            k, j, i = np.unravel_index(int(np.nanargmax(speed)), speed.shape)
            x, y = self.domain.grid.x[i], self.domain.grid.y[j]
            out.append(f"surface speed reaches {np.nanmax(speed) / 1e3:.3g} km a-1 (t = "
                       f"{self.times[k]:g} a, x = {x:.0f} m, y = {y:.0f} m), above the "
                       f"plausible {SPEED_CEILING / 1e3:g} km a-1: check physics.A (per year) "
                       "and physics.fs")
        if not any(self.domain.grid.periodic):
            H = np.asarray(self.thickness)
            at_edge = (H[:, edge_cells(H.shape)] > 1.0).any(axis=1)
            if at_edge.any():
                k = int(np.argmax(at_edge))
                out.append(f"ice reaches the domain edge (from t = {self.times[k]:g} a) and "
                           f"flows out of it ({self.outflow_volume[-1] / 1e9:.3g} km3 booked as "
                           "outflow): enlarge the domain if the glacier should not")
        return out


SPEED_CEILING = 20_000.0
"""Largest plausible surface speed [m a^-1] (``SimulationResult.warnings``)."""


def run(domain: Domain, *, save_at: slv.SaveAt, scheme: Scheme = slv.DEFAULT_SCHEME,
        physics: Physics | None = None, dtype: str = "float64", area_threshold: float = 1.0,
        rheology=None, time_offset: float = 0.0) -> SimulationResult:
    """Simulate ``domain`` and compute the diagnostics at the save times.

    Args:
        domain: the glacier.
        save_at: save times [a], from 0.
        scheme: the time-stepping scheme (``schemes.ExplicitMUSCL``).
        physics: physical parameters; default the domain's own (``domain.physics``).
        dtype: "float64" or "float32" for the fields (float64 needs ``jax_enable_x64``, which
            the caller turns on: the library never changes JAX's global configuration).
        area_threshold: thickness [m] above which a cell counts as glacier in ``area``.
        rheology: a flow law; default Glen's law with ``physics``.
        time_offset: added to the times named in ``failure`` (a run continued from a later
            start, as ``run_in_intervals`` does).
    """
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}.")
    if dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("dtype float64 needs JAX's 64-bit mode: call "
                         "jax.config.update('jax_enable_x64', True) first, or use float32.")
    physics = domain.physics if physics is None else physics
    times = save_at.times
    law = glen_law(physics) if rheology is None else rheology
    fdt = jnp.dtype(dtype)
    grid = domain.grid
    bed = jnp.asarray(domain.bed, fdt)
    start = time.perf_counter()
    traj = slv.simulate(jnp.asarray(domain.thickness, fdt), bed, grid=grid, rheology=law,
                        smb=domain.smb, save_at=save_at, scheme=scheme,
                        ice_free=domain.ice_free)
    traj = jax.block_until_ready(traj)
    wall = time.perf_counter() - start
    bad = traj.first_failure()
    keep = len(times) if bad is None else bad
    failure = None
    if bad is not None:
        code = int(np.asarray(traj.status)[bad])
        detail = ""
        if code == slv.STATUS_NEWTON:
            detail = (f" at t = {time_offset + float(traj.reached[bad]):g} a (Newton residual "
                      f"{float(traj.residual[bad]):.3g} m after every step halving; use a smaller "
                      "solver.dt)")
        failure = (f"{slv.STATUS_NAMES[code]}{detail} in the interval from t = "
                   f"{times[bad - 1]:g} a to t = {times[bad]:g} a; states up to "
                   f"t = {times[bad - 1]:g} a are kept")
    H = traj.thickness[:keep]
    surface = bed + H
    speed = slv.surface_speed(H, bed, law, grid)
    if bad is not None and int(np.asarray(traj.status)[bad]) == slv.STATUS_NONFINITE:
        failure += "; " + _blow_up_hint(np.asarray(speed[-1]), grid)
    smb = jax.vmap(domain.smb)(surface, traj.times[:keep].astype(fdt))
    return SimulationResult(
        domain=domain, times=np.asarray(traj.times[:keep], np.float64),
        thickness=np.asarray(H), surface=np.asarray(surface), velocity=np.asarray(speed),
        smb=np.asarray(smb), volume=np.asarray(slv.volume(H, grid), np.float64),
        area=np.asarray(slv.area(H, grid, area_threshold), np.float64),
        smb_volume=np.asarray(traj.smb_volume[:keep], np.float64),
        outflow_volume=np.asarray(traj.outflow_volume[:keep], np.float64),
        steps=np.asarray(traj.steps[:keep]), physics=physics, wall_time=wall,
        failure=failure, iterations=np.asarray(traj.iterations[:keep]),
        scheme=scheme_name(scheme),
    )


def _blow_up_hint(speed: np.ndarray, grid) -> str:
    """Where the last good state flowed fastest, and the likely causes of a blow-up."""
    j, i = np.unravel_index(int(np.nanargmax(speed)), speed.shape)
    return (f"the last good state flows fastest at x = {grid.x[i]:.0f} m, y = {grid.y[j]:.0f} "
            f"m (cell y={j}, x={i}): {float(speed[j, i]):.3g} m a-1. Likely causes: a step "
            "above the stability limit (lower solver.cfl or solver.max_dt), A out of range "
            "(check physics.A), or a learned law's output exploding there")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _Shifted:
    """A mass-balance model seen from a clock that starts at ``offset`` years."""

    smb: Any
    offset: Any

    def __call__(self, S, t=0.0):
        return self.smb(S, t + self.offset)


def _intervals(times: tuple[float, ...]) -> list[float]:
    """Interval lengths, with lengths equal to the first to round-off made exactly equal (so
    that the solver, whose save times are static, compiles once for all of them)."""
    lengths = [b - a for a, b in itertools.pairwise(times)]
    first = lengths[0]
    return [first if abs(d - first) <= 1e-9 * first else d for d in lengths]


INTERRUPTED = "interrupted by Ctrl-C"
"""How ``run_in_intervals`` starts ``failure`` when the user interrupted the run."""


def run_in_intervals(domain: Domain, *, save_at: slv.SaveAt,
                     scheme: Scheme = slv.DEFAULT_SCHEME, physics: Physics | None = None,
                     dtype: str = "float64", area_threshold: float = 1.0,
                     on_interval: Callable[[float, float, int], None] | None = None,
                     ) -> SimulationResult:
    """``run`` one save interval at a time (same arguments, same result layout).

    Args:
        domain, save_at, scheme, physics, dtype, area_threshold: as ``run``.
        on_interval: called as ``on_interval(t, volume, newton)`` [a, m^3, -] after each
            interval; ``newton``: Newton iterations so far (0 for the explicit scheme).

    On a numerical failure the states up to the last good save are kept and ``failure`` names
    the interval, in the run's absolute times. So on a KeyboardInterrupt (Ctrl-C) after the
    first interval: ``failure`` then starts with ``INTERRUPTED`` (during the first one the
    interrupt propagates: there is nothing to keep).
    """
    physics = domain.physics if physics is None else physics
    times = save_at.times
    lengths = _intervals(times)
    H = np.asarray(domain.thickness)
    parts: list[SimulationResult] = []
    smb_offset = out_offset = 0.0
    newton = 0
    wall = 0.0
    failure = None
    for i, dt in enumerate(lengths):
        t0 = float(times[i])
        piece = dataclasses.replace(domain, thickness=H, smb=_Shifted(domain.smb, t0))
        try:
            res = run(piece, save_at=slv.SaveAt((0.0, dt)), scheme=scheme, physics=physics,
                      dtype=dtype, area_threshold=area_threshold, time_offset=t0)
        except KeyboardInterrupt:
            if not parts:
                raise
            failure = (f"{INTERRUPTED} in the interval from t = {t0:g} a to t = "
                       f"{times[i + 1]:g} a; states up to t = {t0:g} a are kept")
            break
        wall += res.wall_time
        res = dataclasses.replace(res, smb_volume=res.smb_volume + smb_offset,
                                  outflow_volume=res.outflow_volume + out_offset)
        parts.append(res)
        if res.failure is not None:
            reason = res.failure.split(" in the interval")[0]
            failure = (f"{reason} in the interval from t = {t0:g} a to t = {times[i + 1]:g} a;"
                       f" states up to t = {t0:g} a are kept")
            break
        H = res.thickness[-1]
        smb_offset, out_offset = float(res.smb_volume[-1]), float(res.outflow_volume[-1])
        newton += int(res.iterations.sum())
        if on_interval is not None:
            on_interval(float(times[i + 1]), float(res.volume[-1]), newton)

    def joined(name):
        first = getattr(parts[0], name)[:1]
        rest = [getattr(p, name)[1:] for p in parts]
        return np.concatenate([first, *rest], axis=0)

    kept = 1 + sum(len(p.times) - 1 for p in parts)
    return SimulationResult(
        domain=domain, times=np.asarray(times[:kept], np.float64),
        thickness=joined("thickness"), surface=joined("surface"), velocity=joined("velocity"),
        smb=joined("smb"), volume=joined("volume"), area=joined("area"),
        smb_volume=joined("smb_volume"), outflow_volume=joined("outflow_volume"),
        steps=joined("steps"), physics=physics, wall_time=wall, failure=failure,
        iterations=joined("iterations"), scheme=scheme_name(scheme),
    )
