"""Units of the variables of a glacier file: what each may be given in, and the conversion.

Every physical variable's ``units`` attribute is read (udunits-style spellings: ``m``, ``km``,
``ft``, ``m w.e. a-1``, ``mm w.e. a-1``, ``kg m-2 s-1``, ``m a-1``, ``m yr-1``, ``K``, ...).
A unit of the right kind is converted to the model's (metres, m w.e. a^-1, m a^-1, degC); one
of another kind or one not understood is refused by the reader. A variable without ``units``
is taken to be in the model's unit (the documented convention, data/README.md).

Pure functions of strings and arrays; no file access.
"""

from __future__ import annotations

import re

import numpy as np

SECONDS_PER_YEAR = 365.25 * 86400.0
"""Julian year [s], the year of ``a`` in udunits."""
RHO_WATER = 1000.0
"""Density of water [kg m^-3]: kg m^-2 of water is 1 mm w.e."""

LENGTH = {"m": 1.0, "km": 1000.0, "cm": 0.01, "mm": 0.001, "ft": 0.3048}
"""Length units [m per unit] (normalised spellings)."""
PER_TIME = {"a-1": 1.0, "d-1": 365.25, "s-1": SECONDS_PER_YEAR}
"""Rates [per year per unit]."""

KINDS = {
    "length": "m",
    "mass_balance": "m w.e. a-1",
    "speed": "m a-1",
    "temperature": "degC",
    "dimensionless": "1",
    "precipitation": "mm a-1",
}
"""Quantity kind -> the model's unit."""

_WORDS = [
    (r"\bmeters?\b|\bmetres?\b", "m"),
    (r"\bkilometers?\b|\bkilometres?\b", "km"),
    (r"\bfeet\b|\bfoot\b", "ft"),
    (r"\byears?\b|\byr\b|\byrs\b|\bannum\b", "a"),
    (r"\bdays?\b|\bday\b", "d"),
    (r"\bseconds?\b|\bsec\b", "s"),
    (r"\bwater equivalent\b|\bw\.?\s*e\.?(?=\s|$|/)|\bwe\b", "w.e."),
    (r"\bice equivalent\b|\bi\.?\s*e\.?(?=\s|$|/)", "i.e."),
]


def normalise(units: str) -> str:
    """A canonical spelling: lower case, ``/a`` and ``a^-1`` as ``a-1``, single spaces."""
    u = " ".join(str(units).strip().lower().split())
    for pattern, repl in _WORDS:
        u = re.sub(pattern, repl, u)
    u = u.replace("**", "^").replace("^", "").replace(" per ", "/")
    # m/a -> m a-1, kg/m2/s -> kg m-2 s-1
    u = re.sub(r"\s*/\s*([a-z]+)(\d*)", lambda m: f" {m[1]}-{m[2] or 1}", u)
    u = re.sub(r"\bof\b", " ", u)
    u = re.sub(r"\s*\.\s*(?=[a-z])", " ", u) if "w.e." not in u and "i.e." not in u else u
    return " ".join(u.split())


def _rate(tokens: list[str]) -> float | None:
    """Per-year factor of one trailing rate token ('a-1', 's-1', 'd-1'), else None."""
    if len(tokens) == 1 and tokens[0] in PER_TIME:
        return PER_TIME[tokens[0]]
    return None


def factor(units: str | None, kind: str) -> tuple[float, float] | None:
    """(scale, offset) with model value = raw * scale + offset, or None if not convertible.

    ``units`` None means the model's own unit. ``kind``: a key of ``KINDS``.
    """
    if units is None:
        return 1.0, 0.0
    u = normalise(units)
    if u == normalise(KINDS[kind]):
        return 1.0, 0.0
    t = u.split()
    if kind == "length":
        return (LENGTH[u], 0.0) if u in LENGTH else None
    if kind == "dimensionless":
        return (1.0, 0.0) if u in ("1", "", "-", "fraction") else None
    if kind == "temperature":
        if u in ("degc", "deg c", "celsius", "degree_celsius", "degrees_celsius", "c", "°c"):
            return 1.0, 0.0
        if u in ("k", "kelvin"):
            return 1.0, -273.15
        return None
    if kind == "speed":
        if len(t) == 2 and t[0] in LENGTH and (r := _rate(t[1:])) is not None:
            return LENGTH[t[0]] * r, 0.0
        return None
    if kind == "mass_balance":
        # L w.e. T-1 (also "L T-1 w.e."), kg m-2 T-1 (of water)
        if len(t) == 3 and t[0] in LENGTH and "w.e." in t:
            rest = [x for x in t[1:] if x != "w.e."]
            if (r := _rate(rest)) is not None:
                return LENGTH[t[0]] * r, 0.0
        if len(t) == 3 and t[0] == "kg" and t[1] == "m-2" and (r := _rate(t[2:])) is not None:
            return r / RHO_WATER, 0.0
        return None
    if kind == "precipitation":
        if len(t) == 2 and t[0] in LENGTH and (r := _rate(t[1:])) is not None:
            return LENGTH[t[0]] * r * 1000.0, 0.0
        if len(t) == 3 and t[0] == "kg" and t[1] == "m-2" and (r := _rate(t[2:])) is not None:
            return r, 0.0
        return None
    raise ValueError(f"unknown quantity kind {kind!r}")


def convert(a: np.ndarray, units: str | None, kind: str) -> np.ndarray | None:
    """``a`` in the model's unit of ``kind``, or None if ``units`` is not one of that kind."""
    f = factor(units, kind)
    if f is None:
        return None
    scale, offset = f
    if scale == 1.0 and offset == 0.0:
        return a
    return np.asarray(a, dtype=np.float64) * scale + offset
