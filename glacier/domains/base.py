"""The ``Domain`` value object and the registry of built-in domains (``build_domain``).

Builders register themselves with ``register(name)``; ``domains/__init__`` imports every builder
module, so ``glacier.domains.build_domain`` knows them all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..grid import Grid
from ..physics.mass_balance import MassBalance
from ..physics.params import Physics


@dataclasses.dataclass(frozen=True, eq=False)
class Domain:
    """A glacier domain, in plain NumPy arrays of shape ``grid.shape`` (float64).

    Attributes:
        name: the ``glacier=`` name (or the file's glacier name for NetCDF files).
        grid: the static grid (coordinates, spacing, periodicity).
        bed: bed elevation [m].
        thickness: initial ice thickness [m], >= 0.
        smb: surface mass balance model ``smb(S, t)`` [m ice a^-1].
        physics: default physical parameters of the case (``Physics``: A [Pa^-n a^-1], n, rho
            [kg m^-3], g [m s^-2], fs [Pa^-n m^2 a^-1]); config values override them.
        solver: default ``t_end`` and ``save_every`` [a] and ``max_dt`` [a] of the case.
        ice_free: cells held at zero thickness (1) or None.
        mask: glacier outline (1 = glacier) or None.
        thickness_obs: observed thickness [m], NaN where not observed, or None.
        thickness_obs_count: number of observations per cell, or None.
        velocity_obs: observed surface speed [m a^-1], NaN where not observed, or None.
        dhdt: observed surface-elevation change [m a^-1], NaN where unknown, or None.
        thickness_reference: an independent thickness product [m] to compare inversions with
            (NaN where it has none), or None; ``attrs["thickness_reference_source"]`` names it.
        temperature: long-term mean air temperature at the glacier [degC], or None.
        exact: callable t -> exact thickness [m] at simulation time t, or None.
        attrs: provenance and metadata (source, licence, crs, ...), copied to outputs.
    """

    name: str
    grid: Grid
    bed: np.ndarray
    thickness: np.ndarray
    smb: MassBalance
    physics: Physics
    solver: dict[str, float]
    ice_free: np.ndarray | None = None
    mask: np.ndarray | None = None
    thickness_obs: np.ndarray | None = None
    thickness_obs_count: np.ndarray | None = None
    velocity_obs: np.ndarray | None = None
    dhdt: np.ndarray | None = None
    thickness_reference: np.ndarray | None = None
    temperature: float | None = None
    exact: Callable[[float], np.ndarray] | None = None
    attrs: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        for field in ("bed", "thickness", "ice_free", "mask", "thickness_obs",
                      "thickness_obs_count", "velocity_obs", "dhdt", "thickness_reference"):
            value = getattr(self, field)
            if value is not None and np.shape(value) != self.grid.shape:
                raise ValueError(f"Domain {self.name!r}: {field} has shape {np.shape(value)}, "
                                 f"the grid {self.grid.shape}.")
        if np.any(self.thickness < 0) or not np.all(np.isfinite(self.thickness)):
            raise ValueError(f"Domain {self.name!r}: initial thickness must be finite and >= 0.")

    @property
    def surface(self) -> np.ndarray:
        return self.bed + self.thickness


_BUILDERS: dict[str, tuple[Callable[[Any], Domain], type]] = {}


def register(name: str, options_class: type):
    """Register a domain builder ``fn(options) -> Domain`` under ``glacier=name``, with the
    frozen dataclass of its options (defaults and help: the one source of both)."""
    def deco(fn):
        _BUILDERS[name] = (fn, options_class)
        return fn
    return deco


def names() -> list[str]:
    return sorted(_BUILDERS)


def options_class(name: str) -> type:
    """The options dataclass of domain ``name`` (what ``glacier.*`` keys it takes)."""
    if name not in _BUILDERS:
        raise ConfigError(f"Unknown glacier {name!r}. Choose one of: {', '.join(names())} "
                          "(glacier=NAME on the command line).")
    return _BUILDERS[name][1]


def options(name: str) -> dict[str, Any]:
    """The options of a domain and their defaults."""
    return {f.name: getattr(options_class(name)(), f.name)
            for f in dataclasses.fields(options_class(name))}


def build_domain(name: str, **opts) -> Domain:
    """Build the domain ``glacier=name`` with the given options (``glacier.*`` config keys)."""
    cls = options_class(name)
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(opts) - valid)
    if unknown:
        raise ConfigError(f"glacier={name} has no option(s) {', '.join(unknown)}. Valid options: "
                          f"{', '.join(sorted(valid))}.")
    return _BUILDERS[name][0](cls(**opts))
