"""Convergence to the Halfar dome: Test B of Bueler et al. (2005), J. Glaciol. 51(173), 291-306.

The dome of Test B (H0 = 3600 m, R0 = 750 km, A = 1e-16 Pa^-3 a^-1, rho = 910, g = 9.81) spreads
from t0 to t0 + 25 000 a on [-1200, 1200] km. Errors as PISM defines them
(``src/verification/iceCompModel.cc``): avH = mean |H - H_exact| over the whole grid, the dome
error |H - H_exact| at the centre, and the volume error. maxH does not converge for any scheme
(infinite margin slope, H ~ (R - r)^(3/8)), so it is not asserted.

Measured here (float64, CPU; simulation.run with the domain's max_dt = 100 a):

    dx (km)          80      60      40      30      20
    avH (m)          5.320   4.355   3.318   2.938   1.186
    dome error (m)   2.452   1.743   0.883  -0.135   0.508   (signed H - H_exact)
    volume error     8e-5    4.6e-4  4.8e-4  1.8e-3  1.4e-4  (relative, vs the exact field
                                                              summed on the same grid)
    area H > 1 m     +10 %   +6.7 %  +2.3 %  +2.1 %  +2.1 %  (vs the exact field > 1 m)

Fitted orders on dx = 80, 60, 40, 20 km: avH 1.09, dome 1.15. The 30 km dome error is an
accidental near-cancellation (the only grid where H - H_exact at the dome changes sign), which
would make a fitted dome order meaningless (1.6 with it), so 30 km enters the checks on avH only.
Peer figures (reference/VERIFICATION.md): PISM avH 9.25, 6.81, 4.65, 3.41, 1.70 m at
80, 60, 40, 30, 20 km; OGGM ``Upstream2D`` dome error 8.29, 4.94, 2.78 m at 80, 40, 20 km.
"""

import numpy as np
import pytest

from glacier.domains import build_domain

from ._helpers import fitted_order, run_domain

T_END = 25_000.0
DXS_KM = (80, 60, 40, 30, 20)
FIT_KM = (80, 60, 40, 20)
PISM_AVH = {80: 9.25, 60: 6.81, 40: 4.65, 30: 3.41, 20: 1.70}
OGGM_DOME = {80: 8.29, 40: 4.94, 20: 2.78}
MIN_ORDER = 0.9  # measured 1.09 (avH) and 1.15 (dome); first order is what the scheme promises


@pytest.fixture(scope="module")
def errors():
    """Error measures at t0 + 25 000 a for every dx (km) in DXS_KM."""
    out = {}
    for dx_km in DXS_KM:
        domain = build_domain("halfar", dx=dx_km * 1e3)
        result = run_domain(domain, (0.0, T_END))
        H = result.thickness[-1]
        H_exact = domain.exact(T_END)
        c = domain.grid.ny // 2
        v_exact = H_exact.sum() * domain.grid.cell_area
        out[dx_km] = dict(
            avH=float(np.mean(np.abs(H - H_exact))),
            dome=float(abs(H[c, c] - H_exact[c, c])),
            volume=float(abs(result.volume[-1] - v_exact) / v_exact),
            conservation=float(abs(result.volume[-1] - result.volume[0]) / result.volume[0]),
            area=float(((H > 1.0).sum() - (H_exact > 1.0).sum()) / (H_exact > 1.0).sum()),
            min_H=float(result.thickness.min()),
        )
    return out


def test_avh_converges_at_first_order(errors):
    avh = [errors[k]["avH"] for k in FIT_KM]
    order = fitted_order(FIT_KM, avh)
    assert order >= MIN_ORDER, f"avH order {order:.3f} (avH {avh}) below {MIN_ORDER}"
    # 30 km lies between its neighbours: the sequence decreases monotonically.
    all_avh = [errors[k]["avH"] for k in DXS_KM]
    assert all(np.diff(all_avh) < 0.0), all_avh


def test_dome_error_converges_at_first_order(errors):
    dome = [errors[k]["dome"] for k in FIT_KM]
    order = fitted_order(FIT_KM, dome)
    assert order >= MIN_ORDER, f"dome order {order:.3f} (errors {dome}) below {MIN_ORDER}"


def test_avh_no_worse_than_pism(errors):
    """avH at every dx at or below PISM's published figure (1.70 m at 20 km; ours 1.19 m)."""
    for dx_km, bound in PISM_AVH.items():
        assert errors[dx_km]["avH"] <= bound, (dx_km, errors[dx_km]["avH"], bound)


def test_dome_error_no_worse_than_oggm(errors):
    for dx_km, bound in OGGM_DOME.items():
        assert errors[dx_km]["dome"] <= bound, (dx_km, errors[dx_km]["dome"], bound)


def test_volume_and_area(errors):
    """Volume within 0.25 % of the exact field on the same grid (measured <= 0.18 %), conserved
    to round-off, and the area with H > 1 m within 3 % of the exact one for dx <= 40 km
    (measured 2.1-2.3 %)."""
    for dx_km, e in errors.items():
        assert e["volume"] < 2.5e-3, (dx_km, e["volume"])
        assert e["conservation"] < 1e-12, (dx_km, e["conservation"])
        assert e["min_H"] >= 0.0, (dx_km, e["min_H"])
        if dx_km <= 40:
            assert abs(e["area"]) < 0.03, (dx_km, e["area"])
