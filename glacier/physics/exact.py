"""Exact solutions used by the tests, the scripts and the ``glacier=`` domains.

- Halfar (1983) similarity solution as Test B of Bueler et al. (2005), J. Glaciol. 51(173),
  291-306, Eqs. 9-10 (also PISM ``src/verification/tests/exactTestsABCD.c``).
- The bedrock-step steady state of Jarosch, Schoof & Anslow (2013), The Cryosphere 7, 229-240,
  Eqs. 54-59.
"""

from __future__ import annotations

import numpy as np

from ..constants import SECONDS_PER_YEAR_BUELER

HALFAR_H0 = 3600.0
HALFAR_R0 = 750e3
HALFAR_T0_YEARS = 422.45
"""t0 of Test B in Bueler's years (365.2422 d) as quoted by Bueler et al. (2005)."""


def halfar_t0(*, H0=HALFAR_H0, R0=HALFAR_R0, A=1e-16, n=3.0, rho=910.0, g=9.81) -> float:
    """Characteristic time t0 [a] of the Halfar solution (Bueler et al. 2005, Eq. 10).

    t0 = (beta / Gamma) ((2n+1)/(n+1))^n R0^(n+1) / H0^(2n+1), beta = 1/(5n+3),
    Gamma = 2A(rho g)^n / (n+2), with A in Pa^-n a^-1 (gives 422.45 a for Test B up to
    the year length used).
    """
    beta = 1.0 / (5.0 * n + 3.0)
    gamma = 2.0 * A * (rho * g) ** n / (n + 2.0)
    return beta / gamma * ((2 * n + 1) / (n + 1)) ** n * R0 ** (n + 1) / H0 ** (2 * n + 1)


def halfar_thickness(t, r, *, H0=HALFAR_H0, R0=HALFAR_R0, t0=None, n=3.0, **t0_kwargs):
    """Halfar dome thickness H(t, r) [m] (Bueler et al. 2005, Eq. 9).

    H = H0 (t/t0)^(-alpha) [1 - ((t/t0)^(-beta) r/R0)^((n+1)/n)]^(n/(2n+1)), zero outside,
    alpha = 2/(5n+3), beta = 1/(5n+3). ``t`` is the absolute Halfar time (t0 at the reference
    state), ``r`` the distance from the dome centre [m].
    """
    if t0 is None:
        t0 = halfar_t0(H0=H0, R0=R0, n=n, **t0_kwargs)
    alpha = 2.0 / (5.0 * n + 3.0)
    beta = 1.0 / (5.0 * n + 3.0)
    tt = np.asarray(t, dtype=float) / t0
    inner = 1.0 - (tt ** (-beta) * np.asarray(r, dtype=float) / R0) ** ((n + 1) / n)
    H = H0 * tt ** (-alpha) * np.maximum(inner, 0.0) ** (n / (2 * n + 1))
    return np.where(inner > 0, H, 0.0)


def halfar_margin(t, *, R0=HALFAR_R0, t0, n=3.0) -> float:
    """Margin radius R(t) = R0 (t/t0)^beta [m]."""
    return R0 * (t / t0) ** (1.0 / (5.0 * n + 3.0))


def bueler_year_ratio() -> float:
    """Length of Bueler's year over the package's Julian year (for quoting t0 = 422.45 a)."""
    return SECONDS_PER_YEAR_BUELER / (365.25 * 86400.0)


def bedrock_step_smb(x, *, m0=2.0, x_m=20e3, n=3.0):
    """Mass balance of the bedrock-step test [m ice a^-1] (Jarosch et al. 2013, Eq. 54)."""
    x = np.asarray(x, dtype=float)
    m = n * m0 / x_m ** (2 * n - 1) * x ** (n - 1) * np.abs(x_m - x) ** (n - 1) * (x_m - 2 * x)
    return np.where(x <= x_m, m, 0.0)


def bedrock_step_steady(x, *, m0=2.0, x_m=20e3, x_s=7e3, b0=500.0, n=3.0, A=1e-16, rho=910.0,
                        g=9.81):
    """Exact steady thickness H(x) [m] and surface s(x) of the bedrock step (Eqs. 55-59).

    Returns ``(H, s)``; H is discontinuous at x = x_s (an ice cliff). The bed is b0 for x < x_s
    and 0 beyond.
    """
    x = np.asarray(x, dtype=float)
    C = ((2 * n + 2) * (n + 2) ** (1 / n) * m0 ** (1 / n)
         / (2 ** (1 / n) * 6 * n * A ** (1 / n) * rho * g * x_m ** ((2 * n - 1) / n)))
    expo = n / (2 * n + 2)
    core = C * (x_m + 2 * x) * (x_m - x) ** 2
    s_down = np.where(x <= x_m, np.maximum(core, 0.0) ** expo, 0.0)  # Eq. 56, bed 0
    h_plus = (C * (x_m + 2 * x_s) * (x_m - x_s) ** 2) ** expo
    h_minus = max(h_plus - b0, 0.0)
    p = (2 * n + 2) / n
    inner = h_minus**p - h_plus**p + core
    H_up = np.maximum(inner, 0.0) ** expo
    H = np.where(x < x_s, H_up, s_down)
    bed = np.where(x < x_s, b0, 0.0)
    H = np.where(x <= x_m, H, 0.0)
    return H, bed + H


BEDROCK_STEP_VOLUME = 4.546878e6
"""Exact steady volume per unit width of the bedrock step [m^2] (Jarosch et al. 2013)."""
