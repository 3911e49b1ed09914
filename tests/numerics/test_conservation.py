"""Mass conservation and the volume budget.

The solver books every volume change: V(t) - V(0) = smb_volume(t) - outflow_volume(t), where
``smb_volume`` is the balance actually applied (ablation limited to the ice present) and
``outflow_volume`` what left through the domain edges or the ice-free cells. The continuity
equation in flux form (Jarosch, Schoof & Anslow 2013, The Cryosphere 7, Eq. 1) moves ice only
between cells, so with zero balance on the Halfar dome of Bueler et al. (2005, J. Glaciol. 51,
Test B) the volume must not change beyond round-off; the EISMINT I forcing of Huybrechts et al.
(1996, Ann. Glaciol. 23) and the valley test the budget with accumulation, ablation and outflow.
"""

import dataclasses

import numpy as np
import pytest

from glacier.domains import build_domain
from glacier.solver import save_times

from ._helpers import budget_residual, run_domain


def valley(**opts):
    return build_domain("synthetic_valley", nx=40, ny=40, dx=200.0, **opts)


def test_zero_balance_conserves_volume():
    """Halfar at 100 km for 25 ka: |V(t) - V(0)| / V(0) <= 1e-12 at every save
    (measured 1.6e-15)."""
    domain = build_domain("halfar", dx=100e3)
    result = run_domain(domain, save_times(25_000.0, 5_000.0))
    drift = np.abs(result.volume - result.volume[0]) / result.volume[0]
    assert drift.max() <= 1e-12, drift
    assert np.all(np.abs(result.outflow_volume) <= 1e-12 * result.volume[0])
    # Round-off negatives of the flux step (~1e-100 m) clipped by max(H, 0) are booked as
    # balance; they must stay at round-off.
    assert np.all(np.abs(result.smb_volume) <= 1e-12 * result.volume[0])


@pytest.mark.parametrize("case", ["valley", "eismint_moving"])
def test_budget_closes_with_mass_balance(case):
    """|V(t) - V(0) - (smb - outflow)| / V <= 1e-9 at every save (measured 1.2e-15 valley,
    9.9e-16 EISMINT); H >= 0 everywhere."""
    if case == "valley":
        domain, times = valley(), save_times(50.0, 5.0)
    else:
        domain, times = build_domain("eismint_moving", dx=100e3), save_times(50_000.0, 5_000.0)
    result = run_domain(domain, times)
    assert result.volume[-1] > 0.0
    assert result.smb_volume[-1] != 0.0
    residual = budget_residual(result)
    assert residual.max() <= 1e-9, residual
    assert result.thickness.min() >= 0.0
    assert np.all(np.isfinite(result.thickness))


def test_valley_outflow_is_booked():
    """A valley whose ice reaches the lower edge: outflow is positive and the budget still
    closes (the lower edge is an outflow boundary; measured outflow 82 % of the final volume,
    residual 2.1e-15)."""
    domain = valley(ela=1800.0)
    result = run_domain(domain, save_times(100.0, 10.0))
    assert result.outflow_volume[-1] > 0.0, result.outflow_volume
    assert budget_residual(result).max() <= 1e-9


def test_ablation_cannot_remove_more_than_present():
    """ELA far above the head (5000 m vs 3000 m): 50 m of ice melts away in under 10 a. The
    volume reaches exactly 0, never below, and the applied balance equals minus what was there
    (the ablation beyond that is not booked)."""
    base = valley(ela=5000.0)
    domain = dataclasses.replace(base, thickness=np.full(base.grid.shape, 50.0))
    result = run_domain(domain, save_times(20.0, 1.0))
    assert result.thickness.min() >= 0.0
    assert result.volume.min() >= 0.0
    assert result.volume[-1] == 0.0, result.volume
    assert np.all(np.diff(result.volume) <= 0.0)
    change = result.volume[-1] - result.volume[0]
    booked = result.smb_volume[-1] - result.outflow_volume[-1]
    assert abs(change - booked) <= 1e-9 * result.volume[0], (change, booked)
    # Nothing more happens once the ice is gone.
    gone = np.flatnonzero(result.volume == 0.0)[0]
    assert np.all(result.smb_volume[gone:] == result.smb_volume[gone])


def test_float32_agrees_with_float64():
    """Valley 40 x 40 at 200 m, 50 a: float32 volume within 1e-4 (relative) of float64
    (measured 5e-8); the float32 budget closes to float32 round-off."""
    domain = valley()
    times = save_times(50.0, 10.0)
    r64 = run_domain(domain, times, dtype="float64")
    r32 = run_domain(domain, times, dtype="float32")
    assert r32.thickness.dtype == np.float32
    rel = np.abs(r32.volume[1:] - r64.volume[1:]) / r64.volume[1:]
    assert rel.max() <= 1e-4, rel
    assert budget_residual(r32).max() <= 1e-5
    assert np.abs(r32.thickness[-1] - r64.thickness[-1]).max() <= 1e-3 * r64.thickness.max()


def test_float32_with_prescribed_balance():
    """EISMINT moving margin in float32 (its balance is a float64 field)."""
    domain = build_domain("eismint_moving", dx=100e3)
    times = save_times(20_000.0, 5_000.0)
    r64 = run_domain(domain, times, dtype="float64")
    r32 = run_domain(domain, times, dtype="float32")
    rel = np.abs(r32.volume[1:] - r64.volume[1:]) / r64.volume[1:]
    assert rel.max() <= 1e-4, rel

