"""Forward simulation of a ``Domain``: the library function behind ``glacier-simulate``.

Turns a domain plus physical and solver settings into a trajectory and the diagnostics that
``simulation.nc`` holds. No files, no config objects: plain values in, arrays out.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import solver as slv
from .domains import Domain
from .errors import ConfigError
from .laws import GlenLaw


@dataclasses.dataclass(frozen=True)
class SimulationResult:
    """A finished (or stopped) forward run, as NumPy arrays.

    ``thickness``, ``surface``, ``velocity``, ``smb`` are (nt, ny, nx); ``volume``, ``area``,
    ``smb_volume``, ``outflow_volume``, ``steps`` are (nt,). When the run failed, only the
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
    physics: dict[str, float]
    wall_time: float
    failure: str | None = None

    @property
    def budget_error(self) -> float:
        """|V(t) - V(0) - (applied SMB - outflow)| / max(V) at the last saved state."""
        change = self.volume[-1] - self.volume[0]
        booked = self.smb_volume[-1] - self.outflow_volume[-1]
        scale = max(float(np.max(self.volume)), float(np.abs(self.smb_volume).max()), 1e-300)
        return float(abs(change - booked) / scale)


def resolve_physics(domain: Domain, overrides: dict[str, Any]) -> dict[str, float]:
    """The domain's physical defaults updated with the config's non-null values."""
    physics = dict(domain.physics)
    for key, value in overrides.items():
        if key not in physics:
            raise ConfigError(f"Unknown physics key physics.{key}; valid keys: "
                              f"{', '.join(sorted(physics))}.")
        if value is not None:
            physics[key] = float(value)
    checks = dict(A=(0, 1e-5), n=(1, 5), rho=(100, 2000), g=(0.1, 100))
    for key, (lo, hi) in checks.items():
        if not lo < physics[key] <= hi:
            raise ConfigError(f"physics.{key}={physics[key]:g} is outside the physically "
                              f"possible range ({lo:g}, {hi:g}]. Check the units: A is in "
                              "Pa^-3 a^-1 (e.g. 1e-16), rho in kg m^-3, g in m s^-2.")
    if physics["fs"] < 0:
        raise ConfigError(f"physics.fs={physics['fs']:g} must be >= 0 (0 disables sliding).")
    return physics


def make_law(physics: dict[str, float]) -> GlenLaw:
    return GlenLaw(A=physics["A"], fs=physics["fs"], n=physics["n"], rho=physics["rho"],
                   g=physics["g"])


def run(domain: Domain, *, physics: dict[str, float], times: tuple[float, ...],
        stepping: slv.Stepping, dtype: str = "float64", area_threshold: float = 1.0,
        law=None) -> SimulationResult:
    """Simulate ``domain`` and compute the diagnostics at the save ``times``.

    Args:
        domain: the glacier.
        physics: resolved physical parameters (``resolve_physics``).
        times: save times [a], from 0.
        stepping: solver stepping options.
        dtype: "float64" or "float32" for the fields (float64 needs jax_enable_x64).
        area_threshold: thickness [m] above which a cell counts as glacier in ``area``.
        law: a rheology law; default Glen's law with ``physics``.
    """
    if dtype not in ("float32", "float64"):
        raise ConfigError(f"solver.dtype must be float32 or float64, got {dtype!r}.")
    if dtype == "float64" and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    law = make_law(physics) if law is None else law
    fdt = jnp.dtype(dtype)
    grid = domain.grid
    bed = jnp.asarray(domain.bed, fdt)
    start = time.perf_counter()
    traj = slv.simulate(jnp.asarray(domain.thickness, fdt), bed, grid=grid, law=law,
                        smb=domain.smb, times=times, stepping=stepping,
                        ice_free=domain.ice_free)
    traj = jax.block_until_ready(traj)
    wall = time.perf_counter() - start
    bad = traj.first_failure()
    keep = len(times) if bad is None else bad
    failure = None
    if bad is not None:
        code = int(np.asarray(traj.status)[bad])
        failure = (f"{slv.STATUS_NAMES[code]} in the interval from t = {times[bad - 1]:g} a to "
                   f"t = {times[bad]:g} a; states up to t = {times[bad - 1]:g} a are kept")
    H = traj.thickness[:keep]
    surface = bed + H
    speed = slv.surface_speed(H, bed, law, grid)
    smb = jax.vmap(domain.smb)(surface, traj.times[:keep].astype(fdt))
    return SimulationResult(
        domain=domain, times=np.asarray(traj.times[:keep], np.float64),
        thickness=np.asarray(H), surface=np.asarray(surface), velocity=np.asarray(speed),
        smb=np.asarray(smb), volume=np.asarray(slv.volume(H, grid), np.float64),
        area=np.asarray(slv.area(H, grid, area_threshold), np.float64),
        smb_volume=np.asarray(traj.smb_volume[:keep], np.float64),
        outflow_volume=np.asarray(traj.outflow_volume[:keep], np.float64),
        steps=np.asarray(traj.steps[:keep]), physics=dict(physics), wall_time=wall,
        failure=failure,
    )
