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


PLAUSIBLE = dict(
    strain_rate=(1e-6, 10.0),  # A * (100 kPa)^n [a^-1]: cold ice at -50 degC ~1e-4, temperate 0.08
    n=(1.5, 4.5), rho=(300.0, 1100.0), g=(1.0, 30.0),
    sliding_speed=(0.0, 1e5),  # fs (100 kPa)^n / 100 m [m a^-1]
)
"""What a glaciologist would accept for values set by a user (``implausible``)."""


def implausible(physics: Physics, keys) -> list[str]:
    """Why the given fields of ``physics`` are physically implausible (empty: they are not).

    A is judged by the strain rate A (100 kPa)^n it gives, so the bound holds for any n; fs by
    the sliding speed fs (100 kPa)^n / H at H = 100 m.
    """
    out = []
    keys = set(keys)
    if keys & {"A", "n"}:
        rate = physics.A * 1e5 ** physics.n
        lo, hi = PLAUSIBLE["strain_rate"]
        if not lo <= rate <= hi:
            out.append(f"A={physics.A:g} Pa^-{physics.n:g} a^-1 gives a strain rate of "
                       f"{rate:.3g} a^-1 at 100 kPa, outside the plausible {lo:g} to {hi:g} "
                       "a^-1 (Cuffey & Paterson: A = 2.4e-24 Pa^-3 s^-1 = 7.6e-17 Pa^-3 a^-1 "
                       "for temperate ice, about 1e-19 at -50 degC). A is per year, not per "
                       "second")
    for key in ("n", "rho", "g"):
        lo, hi = PLAUSIBLE[key]
        if key in keys and not lo <= getattr(physics, key) <= hi:
            out.append(f"{key}={getattr(physics, key):g} is outside the plausible {lo:g} to "
                       f"{hi:g}")
    if keys & {"fs", "n"} and physics.fs > 0:
        speed = physics.fs * 1e5 ** physics.n / 100.0
        if speed > PLAUSIBLE["sliding_speed"][1]:
            out.append(f"fs={physics.fs:g} gives a sliding speed of {speed:.3g} m a^-1 under "
                       "100 m of ice at 100 kPa (plausible: up to 1e+05; OGGM's default is "
                       "5.7e-20 Pa^-3 m^2 s^-1 = 1.8e-12 Pa^-3 m^2 a^-1)")
    return out


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
