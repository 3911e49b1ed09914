"""The implicit scheme (backward Euler, ``schemes.ImplicitEuler``) against exact solutions.

Halfar dome (Test B) at dx = 40 km, float64, CPU, measured here:

    dt (a)                  2500     1250     625      50       explicit (cfl 0.124)
    avH vs exact (m)        13.48    7.78     5.13     3.22     3.32
    |H(dt) - H(dt/2)| (m)   6.16     3.26              (Richardson estimate of the
                                                        temporal error: order 0.92)
    mass budget             9e-12    5e-11    5e-11    9e-10

With a small step the implicit scheme has the explicit scheme's spatial error (3.22 against
3.32 m); the temporal error is first order, as backward Euler promises. The tests run 2500,
1250 and 625 a only: the Richardson extrapolation 2 H(625) - H(1250) (temporal error of
second order) stands in for the small step, avH 3.14 m (the 50 a run took a minute).
"""

import numpy as np
import pytest

from glacier.domains import build_domain
from glacier.schemes import ImplicitEuler
from glacier.simulation import run
from glacier.solver import SaveAt

from ._helpers import budget_residual

T_END = 25_000.0
EXPLICIT_AVH_40KM = 3.318  # tests/numerics/test_halfar.py, dx = 40 km
TIGHT = 1e-11  # Newton tolerance for the budget assertions (the default is 1e-8)


@pytest.fixture(scope="module")
def halfar():
    domain = build_domain("halfar", dx=40e3)
    runs = {}
    for dt in (2500.0, 1250.0, 625.0):
        result = run(domain, save_at=SaveAt((0.0, T_END)),
                     scheme=ImplicitEuler(dt=dt, tol=TIGHT))
        assert result.failure is None, result.failure
        runs[dt] = result
    return domain, runs


def test_temporal_order_is_one(halfar):
    _, runs = halfar
    H = {dt: r.thickness[-1] for dt, r in runs.items()}
    d1 = np.mean(np.abs(H[2500.0] - H[1250.0]))
    d2 = np.mean(np.abs(H[1250.0] - H[625.0]))
    order = np.log2(d1 / d2)
    assert 0.8 <= order <= 1.3, (order, d1, d2)


def test_small_step_has_the_explicit_spatial_error(halfar):
    domain, runs = halfar
    exact = domain.exact(T_END)
    avh = {dt: float(np.mean(np.abs(r.thickness[-1] - exact))) for dt, r in runs.items()}
    # dt -> 0 by Richardson extrapolation (backward Euler's error is first order in dt)
    limit = 2.0 * runs[625.0].thickness[-1] - runs[1250.0].thickness[-1]
    avh[0.0] = float(np.mean(np.abs(limit - exact)))
    assert avh[0.0] <= 1.1 * EXPLICIT_AVH_40KM, avh
    # and the error falls monotonically with the step
    assert avh[2500.0] > avh[1250.0] > avh[625.0] > avh[0.0], avh


def test_mass_budget_and_positivity(halfar):
    _, runs = halfar
    for dt, r in runs.items():
        assert budget_residual(r).max() <= 1e-9, (dt, budget_residual(r))
        assert r.thickness.min() >= 0.0
        assert np.all(r.iterations[1:] > 0)


def test_ablation_beyond_the_ice_is_booked_not_clipped():
    """A valley with strong ablation: the constraint H >= 0 is active on most of the domain,
    and the budget still closes (the ablation that found no ice is not applied)."""
    domain = build_domain("synthetic_valley", nx=24, ny=24, dx=400.0)
    result = run(domain, save_at=SaveAt.every(200.0, 50.0),
                 scheme=ImplicitEuler(dt=10.0, tol=TIGHT))
    assert result.failure is None, result.failure
    assert result.thickness.min() >= 0.0
    assert result.volume[-1] > 0
    assert budget_residual(result).max() <= 1e-9
    # applied balance differs from the raw balance over the grid: ablation was limited
    assert result.smb_volume[-1] > float(np.sum(result.smb[0])) * domain.grid.cell_area * 200


def test_failure_to_converge_is_reported():
    """One Newton iteration cannot converge a 5000-year step: the run stops with the time,
    the residual and the advice, and keeps the initial state."""
    domain = build_domain("halfar", dx=80e3)
    result = run(domain, save_at=SaveAt((0.0, 5000.0)),
                 scheme=ImplicitEuler(dt=5000.0, max_newton=1, max_halvings=1))
    assert result.failure is not None
    assert "did not converge at t = 0 a" in result.failure
    assert "smaller solver.dt" in result.failure
    assert len(result.times) == 1


@pytest.mark.slow  # 50 s; run with -m slow (the explicit scheme's test runs by default)
def test_bedrock_step_volume_within_the_explicit_band():
    """Jarosch et al. (2013) at dx = 200 m, dt = 100 a, 50 ka: measured -3.26 % (the explicit
    scheme: -3.25 %, tests/numerics/test_bedrock_step.py), with the MUSCL-superbee faces; about
    1 500 Newton iterations, 35 s."""
    from glacier.physics.exact import BEDROCK_STEP_VOLUME
    from glacier.solver import save_times

    dx = 200.0
    domain = build_domain("bedrock_step", dx=dx)
    result = run(domain, save_at=SaveAt(save_times(50_000.0, 10_000.0)),
                 scheme=ImplicitEuler(dt=100.0, tol=TIGHT))
    assert result.failure is None, result.failure
    H = result.thickness
    assert H.min() >= 0.0
    error = float(H[-1][0].sum() * dx / 2.0) / BEDROCK_STEP_VOLUME - 1.0
    assert abs(error) <= 0.035, error
    assert budget_residual(result).max() <= 1e-9
