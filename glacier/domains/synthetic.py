"""Synthetic domains with exact solutions or published reference figures.

- ``halfar``: Bueler et al. (2005) Test B (the Halfar dome), exactly as in CONTRACT.md.
- ``eismint_fixed`` / ``eismint_moving``: EISMINT I isothermal (Huybrechts, Payne et al. 1996).
- ``bedrock_step``: Jarosch, Schoof & Anslow (2013) as a 2D strip (periodic in y).
- ``synthetic_valley``: an inclined parabolic valley with a bump and a linear balance; its
  defaults are the valley of OGGM's published figures (reference/PEERS.md).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..constants import SECONDS_PER_YEAR
from ..errors import ConfigError
from ..grid import Grid
from ..options import option
from ..physics import exact as ex
from ..physics import mass_balance
from ..physics.params import Physics
from .base import Domain, register

EISMINT_PHYSICS = Physics(A=1e-16, n=3.0, rho=910.0, g=9.81, fs=0.0)
OGGM_PHYSICS = Physics(A=2.4e-24 * SECONDS_PER_YEAR, n=3.0, rho=900.0, g=9.80665, fs=0.0)


def _positive(name: str, **values):
    for key, v in values.items():
        if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise ConfigError(f"glacier={name}: glacier.{key} must be a positive number, got "
                              f"{v!r}. Set e.g. glacier.{key}=... on the command line.")


def _cells(name: str, length: float, dx: float, key: str = "dx") -> int:
    n = length / dx
    if abs(n - round(n)) > 1e-6 * max(1.0, n) or round(n) < 2:
        raise ConfigError(f"glacier={name}: glacier.{key}={dx} must divide the domain length "
                          f"{length:g} m into at least 2 whole cells.")
    return int(round(n))


@dataclasses.dataclass(frozen=True)
class HalfarOptions:
    """``glacier=halfar``: Bueler et al. (2005) Test B, the Halfar dome on a flat bed."""

    dx: float = option(20e3, "grid spacing [m]; must divide half_width")
    half_width: float = option(1200e3, "half-width of the square domain [m]")
    H0: float = option(3600.0, "dome thickness at t0 [m]")
    R0: float = option(750e3, "dome radius at t0 [m]")


@register("halfar", HalfarOptions)
def halfar(o: HalfarOptions) -> Domain:
    """Bueler et al. (2005) Test B: the Halfar dome on [-half_width, half_width]^2.

    Cell centres at -half_width, ..., +half_width (so dx must divide the half-width); flat bed;
    zero mass balance; the initial state is the exact solution at t0, and simulation time 0
    corresponds to t0.
    """
    dx, half_width, H0, R0 = o.dx, o.half_width, o.H0, o.R0
    _positive("halfar", dx=dx, half_width=half_width, H0=H0, R0=R0)
    n = 2 * _cells("halfar", half_width, dx) + 1
    grid = Grid(ny=n, nx=n, dx=dx, x0=-half_width, y0=-half_width)
    X, Y = grid.meshgrid()
    r = np.hypot(X, Y)
    p = EISMINT_PHYSICS
    t0 = ex.halfar_t0(H0=H0, R0=R0, A=p.A, n=p.n, rho=p.rho, g=p.g)

    def exact(t):
        return ex.halfar_thickness(t0 + t, r, H0=H0, R0=R0, t0=t0, n=p.n)

    return Domain(
        name="halfar", grid=grid, bed=np.zeros(grid.shape), thickness=exact(0.0),
        smb=mass_balance.zero(), physics=p, solver=dict(t_end=25000.0, save_every=5000.0,
                                                               max_dt=100.0),
        exact=exact,
        attrs=dict(reference="Bueler et al. (2005), J. Glaciol. 51(173), Test B",
                   halfar_t0_years=t0),
    )


def _eismint(name: str, dx: float, size: float, smb_field) -> Domain:
    _positive(name, dx=dx, size=size)
    n = _cells(name, size, dx) + 1
    grid = Grid(ny=n, nx=n, dx=dx, x0=0.0, y0=0.0)
    ring = np.ones(grid.shape)
    ring[1:-1, 1:-1] = 0.0
    X, Y = grid.meshgrid()
    d = np.hypot(X - size / 2, Y - size / 2)
    return Domain(
        name=name, grid=grid, bed=np.zeros(grid.shape), thickness=np.zeros(grid.shape),
        smb=mass_balance.prescribed(smb_field(d)), physics=EISMINT_PHYSICS,
        solver=dict(t_end=200_000.0, save_every=10_000.0, max_dt=100.0), ice_free=ring,
        attrs=dict(reference="Huybrechts, Payne et al. (1996), Ann. Glaciol. 23, EISMINT I"),
    )


@dataclasses.dataclass(frozen=True)
class EismintFixedOptions:
    """``glacier=eismint_fixed``: EISMINT I fixed margin (Huybrechts, Payne et al. 1996)."""

    dx: float = option(50e3, "grid spacing [m]; must divide size")
    size: float = option(1500e3, "side of the square domain [m]")
    accumulation: float = option(0.3, "uniform accumulation [m ice a-1]")


@register("eismint_fixed", EismintFixedOptions)
def eismint_fixed(o: EismintFixedOptions) -> Domain:
    """EISMINT I fixed margin: M = 0.3 m a^-1 everywhere, H = 0 on the boundary ring."""
    dx, size, accumulation = o.dx, o.size, o.accumulation
    return _eismint("eismint_fixed", dx, size, lambda d: np.full_like(d, accumulation))


@dataclasses.dataclass(frozen=True)
class EismintMovingOptions:
    """``glacier=eismint_moving``: EISMINT I moving margin (Huybrechts, Payne et al. 1996)."""

    dx: float = option(50e3, "grid spacing [m]; must divide size")
    size: float = option(1500e3, "side of the square domain [m]")
    max_accumulation: float = option(0.5, "largest accumulation [m ice a-1]")
    s: float = option(1e-5, "mass-balance gradient with distance [a-1]")
    R_el: float = option(450e3, "distance of the equilibrium line from the centre [m]")


@register("eismint_moving", EismintMovingOptions)
def eismint_moving(o: EismintMovingOptions) -> Domain:
    """EISMINT I moving margin: M = min(0.5, s (R_el - d)) m a^-1, H = 0 on the boundary ring.

    ``s`` is in a^-1 per km in Huybrechts et al. (1996) (1e-2 m a^-1 km^-1 = 1e-5 a^-1).
    """
    dx, size, max_accumulation, s, R_el = o.dx, o.size, o.max_accumulation, o.s, o.R_el
    return _eismint("eismint_moving", dx, size,
                    lambda d: np.minimum(max_accumulation, s * (R_el - d)))


@dataclasses.dataclass(frozen=True)
class BedrockStepOptions:
    """``glacier=bedrock_step``: Jarosch, Schoof & Anslow (2013) as a strip periodic in y."""

    dx: float = option(200.0, "grid spacing [m]; must divide length")
    length: float = option(30e3, "half-length of the mirrored strip [m]")
    rows: int = option(3, "number of identical rows (>= 3)")
    b0: float = option(500.0, "height of the bedrock step [m]")
    x_s: float = option(7e3, "position of the step [m]")
    x_m: float = option(20e3, "end of the accumulation area [m]")
    m0: float = option(2.0, "mass-balance scale [m ice a-1]")


@register("bedrock_step", BedrockStepOptions)
def bedrock_step(o: BedrockStepOptions) -> Domain:
    """Jarosch et al. (2013) bedrock step as a strip of identical rows, periodic in y.

    The 1D problem has an ice divide at x = 0; it is run mirrored on [-length, length] so that
    the divide is a symmetry line, not a boundary. The volume per unit width of the 1D problem
    is half the strip's volume per row width.
    """
    dx, length, rows, b0, x_s, x_m, m0 = o.dx, o.length, o.rows, o.b0, o.x_s, o.x_m, o.m0
    _positive("bedrock_step", dx=dx, length=length, b0=b0, x_s=x_s, x_m=x_m, m0=m0)
    if not (isinstance(rows, int) and rows >= 3):
        raise ConfigError(f"glacier=bedrock_step: glacier.rows must be an integer >= 3, got "
                          f"{rows!r}.")
    if not x_s < x_m < length:
        raise ConfigError("glacier=bedrock_step: need x_s < x_m < length "
                          f"(got {x_s}, {x_m}, {length}).")
    half = _cells("bedrock_step", length, dx)
    grid = Grid(ny=rows, nx=2 * half + 1, dx=dx, x0=-length, y0=0.0, periodic=(True, False))
    X, _ = grid.meshgrid()
    ax = np.abs(X)
    bed = np.where(ax < x_s, b0, 0.0)
    phys = EISMINT_PHYSICS

    def exact(t):
        H, _ = ex.bedrock_step_steady(ax, m0=m0, x_m=x_m, x_s=x_s, b0=b0, n=phys.n,
                                      A=phys.A, rho=phys.rho, g=phys.g)
        return H

    return Domain(
        name="bedrock_step", grid=grid, bed=bed, thickness=np.zeros(grid.shape),
        smb=mass_balance.prescribed(ex.bedrock_step_smb(ax, m0=m0, x_m=x_m, n=phys.n)),
        physics=phys, solver=dict(t_end=50_000.0, save_every=5_000.0, max_dt=10.0),
        exact=exact,
        attrs=dict(reference="Jarosch, Schoof & Anslow (2013), The Cryosphere 7, 229-240"),
    )


@dataclasses.dataclass(frozen=True)
class SyntheticValleyOptions:
    """``glacier=synthetic_valley``: an inclined parabolic valley with a bump (OGGM's figures)."""

    nx: int = option(100, "cells across the valley")
    ny: int = option(100, "cells along the valley")
    dx: float = option(100.0, "grid spacing [m]")
    head: float = option(3000.0, "bed elevation at the head of the valley [m]")
    slope: float = option(2000.0 / 9900.0, "down-valley bed slope [1] (3000 -> 1000 m over 9.9 km)")
    side_rise: float = option(500.0, "rise of the bed at the valley sides [m]")
    bump_height: float = option(80.0, "height of the Gaussian bed bump [m]")
    bump_position: float = option(0.55, "position of the bump as a fraction of the length")
    bump_length: float = option(400.0, "e-folding length of the bump along the valley [m]")
    bump_width: float = option(600.0, "e-folding width of the bump across the valley [m]")
    ela: float = option(2600.0, "equilibrium-line altitude [m]")
    gradient: float = option(3e-3 * 1000.0 / 900.0, "mass-balance gradient [m ice a-1 m-1]")
    max_rate: float = option(math.inf, "cap on the mass-balance rate [m ice a-1]")
    temperature: float = option(-5.0, "mean air temperature at the glacier [degC]")
    t_end: float = option(100.0, "default simulated years (solver.t_end overrides)")
    save_every: float = option(10.0, "default years between saves (solver.save_every overrides)")


@register("synthetic_valley", SyntheticValleyOptions)
def synthetic_valley(o: SyntheticValleyOptions) -> Domain:
    """An inclined valley: bed = head - slope y + side_rise (x / half width)^2 + bump.

    The bump is bump_height exp(-((y - bump_position L)/bump_length)^2 - (x/bump_width)^2) with
    L = (ny - 1) dx and x measured from the valley axis. Linear balance
    b = gradient (S - ela) [m ice a^-1], capped at ``max_rate``; no ice at the start. Defaults:
    the valley of OGGM's figures in reference/PEERS.md (physics as OGGM's defaults: A = 2.4e-24
    s^-1 Pa^-3, rho = 900, g = 9.80665).
    """
    (nx, ny, dx, head, slope, side_rise, bump_height, bump_position, bump_length,
     bump_width, ela, gradient, max_rate, temperature, t_end, save_every) = (
        o.nx, o.ny, o.dx, o.head, o.slope, o.side_rise, o.bump_height, o.bump_position,
        o.bump_length, o.bump_width, o.ela, o.gradient, o.max_rate, o.temperature, o.t_end,
        o.save_every)
    for key, v in dict(nx=nx, ny=ny).items():
        if not (isinstance(v, int) and v >= 3):
            raise ConfigError(f"glacier=synthetic_valley: glacier.{key} must be an integer >= 3, "
                              f"got {v!r}.")
    _positive("synthetic_valley", dx=dx, bump_length=bump_length, bump_width=bump_width,
              t_end=t_end)
    if not -60.0 < temperature < 20.0:
        raise ConfigError(f"glacier=synthetic_valley: glacier.temperature={temperature} degC is "
                          "outside the plausible range (-60, 20).")
    half = (nx - 1) / 2 * dx
    grid = Grid(ny=ny, nx=nx, dx=dx, x0=-half, y0=0.0)
    X, Y = grid.meshgrid()
    L = (ny - 1) * dx
    bed = (head - slope * Y + side_rise * (X / half) ** 2
           + bump_height * np.exp(-((Y - bump_position * L) / bump_length) ** 2
                                  - (X / bump_width) ** 2))
    return Domain(
        name="synthetic_valley", grid=grid, bed=bed, thickness=np.zeros(grid.shape),
        smb=mass_balance.linear(ela, gradient, max_rate=max_rate), physics=OGGM_PHYSICS,
        solver=dict(t_end=t_end, save_every=save_every, max_dt=31.0 / 365.25),
        temperature=temperature,
        attrs=dict(reference="OGGM Upstream2D valley (reference/PEERS.md)"),
    )
