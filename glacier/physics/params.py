"""Physical parameters of the SIA as one frozen, validated value object.

``Physics`` replaces the string-keyed dicts that used to travel from the domains to the laws:
a domain carries its literature defaults (``Domain.physics``), the configuration overrides some
of them with ``Physics.replace``, and the laws read the fields. It is hashable, so it can be a
static argument of a jitted function; its numbers are never traced.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

from ..constants import GLEN_N, GRAVITY, RHO_ICE

RANGES = dict(A=(0.0, 1e-5), n=(1.0, 5.0), rho=(100.0, 2000.0), g=(0.1, 100.0))
"""Physically possible (lo, hi] of each parameter; ``fs`` must be >= 0."""


@dataclasses.dataclass(frozen=True)
class Physics:
    """Glen's law and sliding parameters.

    Args:
        A: Glen's rate factor [Pa^-n a^-1] (e.g. 1e-16 for Bueler's tests; 7.6e-17 for
            temperate ice, Cuffey & Paterson's 2.4e-24 s^-1 Pa^-3).
        n: Glen's exponent.
        rho: ice density [kg m^-3].
        g: gravitational acceleration [m s^-2].
        fs: Budd-type sliding parameter [Pa^-n m^2 a^-1]; 0 disables sliding.

    Raises:
        ValueError: a value outside its physically possible range (``RANGES``), naming it.
    """

    A: float
    n: float = GLEN_N
    rho: float = RHO_ICE
    g: float = GRAVITY
    fs: float = 0.0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
                raise ValueError(f"{f.name}={value!r} must be a number.")
            object.__setattr__(self, f.name, float(value))
        for key, (lo, hi) in RANGES.items():
            value = getattr(self, key)
            if not (lo < value <= hi and math.isfinite(value)):
                raise ValueError(f"{key}={value:g} is outside the physically possible range "
                                 f"({lo:g}, {hi:g}]. Check the units: A is in Pa^-3 a^-1 for "
                                 "n = 3 (e.g. 1e-16), rho in kg m^-3, g in m s^-2.")
        if not (self.fs >= 0 and math.isfinite(self.fs)):
            raise ValueError(f"fs={self.fs:g} must be >= 0 (0 disables sliding).")

    def replace(self, **overrides: float | None) -> Physics:
        """A copy with the given fields; ``None`` keeps the current value."""
        valid = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise ValueError(f"unknown physical parameter(s) {', '.join(unknown)}; valid: "
                             f"{', '.join(sorted(valid))}.")
        return dataclasses.replace(self, **{k: v for k, v in overrides.items()
                                            if v is not None})

    def as_dict(self) -> dict[str, float]:
        """The parameters as a plain dict (for output attributes)."""
        return dataclasses.asdict(self)
