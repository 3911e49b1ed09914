"""Physical constants and unit conversions.

Units throughout the package: metres, years, pascals, kg m^-3. Mass balance is in metres of ice
per year unless a name says ``_we`` (water equivalent).
"""

SECONDS_PER_YEAR = 365.25 * 86400.0
"""Julian year in seconds (the default year of the package)."""

SECONDS_PER_YEAR_BUELER = 365.2422 * 86400.0
"""Year used by Bueler et al. (2005) for the Halfar / Test B reference values."""

RHO_ICE = 910.0
"""Ice density, kg m^-3."""

RHO_WATER = 1000.0
"""Fresh-water density, kg m^-3 (for water-equivalent conversions)."""

GRAVITY = 9.81
"""Gravitational acceleration, m s^-2."""

GLEN_N = 3.0
"""Glen's flow-law exponent."""

A_DEFAULT = 1e-16
"""Glen's rate factor of the EISMINT and Bueler tests, Pa^-3 a^-1."""


def per_second_to_per_year(A_s: float) -> float:
    """Convert a rate factor from Pa^-n s^-1 to Pa^-n a^-1 (Julian year)."""
    return A_s * SECONDS_PER_YEAR


def water_equivalent_to_ice(value_we, rho_ice: float = RHO_ICE):
    """Convert metres water equivalent to metres of ice."""
    return value_we * (RHO_WATER / rho_ice)
