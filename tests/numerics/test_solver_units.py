"""Unit tests of the time stepper (``glacier.solver``) and the positivity limiter
(``glacier.physics.sia.limit_outflow``), on tiny grids.

The limiter is the conservative flux scaling of flux-corrected transport used with the
MUSCL-superbee fluxes of Jarosch, Schoof & Anslow (2013), The Cryosphere 7, 229-240: no cell
exports more ice than it holds, whatever the step.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from glacier import solver as slv
from glacier.domains import build_domain
from glacier.grid import Grid
from glacier.laws import GlenLaw, glen_law
from glacier.physics import sia
from glacier.physics.mass_balance import MassBalance
from glacier.schemes import ExplicitMUSCL
from glacier.simulation import run
from glacier.solver import Checkpointed, SaveAt, StoreAll

LAW = GlenLaw(A=1e-16)
PERIODIC = Grid(ny=5, nx=6, dx=1000.0, periodic=(True, True))


def slab(times, *, rate=1.0, H0=10.0, **stepping):
    """A uniform slab on a flat, doubly periodic bed: no flow, H(t) = H0 + rate t exactly."""
    H = jnp.full(PERIODIC.shape, H0)
    return slv.simulate(H, jnp.zeros(PERIODIC.shape), grid=PERIODIC, rheology=LAW,
                        smb=MassBalance(base=rate), save_at=SaveAt(times),
                        scheme=ExplicitMUSCL(**stepping))


def test_save_times_schedule():
    assert slv.save_times(10.0, 2.5) == (0.0, 2.5, 5.0, 7.5, 10.0)
    assert slv.save_times(10.0, 3.0) == (0.0, 3.0, 6.0, 9.0, 10.0)  # t_end saved last
    assert slv.save_times(10.0) == (0.0, 10.0)
    assert slv.save_times(10.0, 20.0) == (0.0, 10.0)
    times = slv.save_times(1.0, 0.1)
    assert len(times) == 11 and times[-1] == 1.0
    with pytest.raises(ValueError):
        slv.save_times(0.0, 1.0)
    with pytest.raises(ValueError):
        slv.save_times(float("inf"), 1.0)


@pytest.mark.parametrize("times", [(0.0, 0.75, 1.0, 2.5, 3.0), slv.save_times(10.0, 3.0),
                                   slv.save_times(1.0, 1.0 / 3.0)])
def test_save_times_are_landed_exactly(times, strict_promotion):
    """Every interval ends exactly on its save time: H = H0 + t to round-off (a step that
    overshot would add up to max_dt = 0.25 m)."""
    traj = slab(times, max_dt=0.25)
    assert np.array_equal(np.asarray(traj.times), np.asarray(times, np.float64))
    assert np.asarray(traj.times)[-1] == times[-1]
    H = np.asarray(traj.thickness)
    expected = 10.0 + np.asarray(times)[:, None, None]
    assert np.abs(H - expected).max() <= 1e-12 * expected.max()
    assert np.all(np.asarray(traj.status) == slv.STATUS_OK)


def test_dt_never_exceeds_max_dt(strict_promotion):
    """A slab has no stability limit, so every step is max_dt except the shortened last one:
    exactly ceil(interval / max_dt) steps per interval."""
    times = (0.0, 0.75, 1.0, 2.5, 3.0)
    traj = slab(times, max_dt=0.25)
    assert list(np.asarray(traj.steps)) == [0, 3, 1, 6, 2]


def test_dt_never_exceeds_max_dt_when_flowing():
    """A flowing case: never fewer steps than the cap allows."""
    domain = build_domain("halfar", dx=200e3)
    max_dt = 7.0
    res = run(domain, save_at=SaveAt((0.0, 100.0, 250.0)), scheme=ExplicitMUSCL(max_dt=max_dt))
    for k in (1, 2):
        interval = res.times[k] - res.times[k - 1]
        assert res.steps[k] >= math.ceil(interval / max_dt - 1e-12)


def test_step_budget_exhausted(strict_promotion):
    traj = slab((0.0, 0.5, 2.0, 3.0), max_dt=0.25, max_steps=2)
    assert list(np.asarray(traj.status)) == [0, 0, slv.STATUS_MAX_STEPS, slv.STATUS_MAX_STEPS]
    assert traj.first_failure() == 2
    assert int(traj.steps[2]) == 2
    # The saved state after the budget ran out is the state after the steps actually taken.
    assert np.allclose(np.asarray(traj.thickness[2]), 10.0 + 0.5 + 2 * 0.25, rtol=0, atol=1e-12)


def test_area_under_strict_promotion(strict_promotion):
    grid = Grid(ny=3, nx=3, dx=10.0)
    assert float(slv.area(jnp.ones(grid.shape), grid)) == 900.0


def test_step_budget_reported_by_run():
    domain = build_domain("halfar", dx=200e3)
    res = run(domain, save_at=SaveAt((0.0, 1000.0, 2000.0)),
              scheme=ExplicitMUSCL(max_dt=1.0, max_steps=10))
    assert res.failure is not None and "step budget" in res.failure
    assert len(res.times) == 1  # only the initial state is good


def test_nan_sets_status_nonfinite(strict_promotion):
    H0 = np.full(PERIODIC.shape, 10.0)
    H0[2, 3] = np.nan
    traj = slv.simulate(jnp.asarray(H0), jnp.zeros(PERIODIC.shape), grid=PERIODIC,
                        rheology=LAW, smb=MassBalance(base=1.0), save_at=SaveAt((0.0, 1.0, 2.0)),
                        scheme=ExplicitMUSCL(max_dt=0.25))
    status = np.asarray(traj.status)
    assert status[1] == slv.STATUS_NONFINITE and status[2] != slv.STATUS_OK
    assert traj.first_failure() == 1
    assert int(traj.steps[1]) == 1  # stopped at the first bad step


def _pillar():
    """A 1000 m column of ice on a 500 m pillar in the middle of a flat 9 x 9 grid."""
    grid = Grid(ny=9, nx=9, dx=1000.0)
    bed = np.zeros(grid.shape)
    bed[4, 4] = 500.0
    H0 = np.zeros(grid.shape)
    H0[4, 4] = 1000.0
    return grid, jnp.asarray(bed), jnp.asarray(H0)


def test_limiter_one_huge_step(strict_promotion):
    """cfl = 0.25 (the largest allowed): the unlimited step would export 1500 m from a 1000 m
    column (4 faces x 0.25 x the 1500 m surface drop) and leave -500 m. The limiter empties
    the column exactly and conserves volume."""
    grid, bed, H0 = _pillar()
    traj = slv.simulate(H0, bed, grid=grid, rheology=LAW, smb=MassBalance(),
                        save_at=SaveAt((0.0, 1e9)),
                        scheme=ExplicitMUSCL(cfl=0.25, max_dt=1e9, max_steps=1))
    H1 = np.asarray(traj.thickness[1])
    assert int(traj.steps[1]) == 1
    assert H1.min() >= 0.0
    assert H1[4, 4] <= 1e-9
    assert abs(H1.sum() - 1000.0) <= 1e-12 * 1000.0
    np.testing.assert_allclose(H1[3, 4], 250.0, rtol=1e-12)  # shared by the 4 neighbours


def test_limiter_long_run(strict_promotion):
    """Same column run for 1000 a with the largest steps: H >= 0 at every save and the budget
    (with outflow through the edges) closes."""
    grid, bed, H0 = _pillar()
    traj = slv.simulate(H0, bed, grid=grid, rheology=LAW, smb=MassBalance(),
                        save_at=SaveAt((0.0, 1.0, 10.0, 100.0, 1000.0)),
                        scheme=ExplicitMUSCL(cfl=0.25, max_dt=1e3))
    assert traj.first_failure() is None
    H = np.asarray(traj.thickness)
    assert H.min() >= 0.0
    V = np.asarray(slv.volume(traj.thickness, grid))
    booked = np.asarray(traj.smb_volume) - np.asarray(traj.outflow_volume)
    assert np.abs(V - V[0] - booked).max() <= 1e-12 * V[0]


def test_limit_outflow_is_conservative_and_positive(strict_promotion):
    """Random thickness (half the cells empty) and random face fluxes with a huge step: no cell
    goes negative, and the change in total volume equals the net edge outflow."""
    rng = np.random.default_rng(1)
    grid = Grid(ny=12, nx=10, dx=100.0)
    H = rng.uniform(0.0, 50.0, grid.shape) * (rng.uniform(size=grid.shape) > 0.5)
    qx = rng.normal(0.0, 1e4, (grid.ny, grid.nx + 1))
    qy = rng.normal(0.0, 1e4, (grid.ny + 1, grid.nx))
    dt = 1e3
    qx, qy = sia.limit_outflow(jnp.asarray(H), jnp.asarray(qx), jnp.asarray(qy), dt, grid)
    H1 = H - dt * np.asarray(sia.flux_divergence(qx, qy, grid.dx))
    assert H1.min() >= -1e-12 * H.max()
    out = dt * grid.dx * float(sia.edge_outflow(qx, qy))
    assert abs((H1.sum() - H.sum()) * grid.cell_area + out) <= 1e-12 * H.sum() * grid.cell_area
    # Empty cells export nothing.
    empty = H == 0.0
    qx = np.asarray(qx)
    assert np.all(qx[:, 1:][empty] <= 0.0) and np.all(qx[:, :-1][empty] >= 0.0)


@pytest.mark.parametrize("adjoint", [Checkpointed(), StoreAll()])
def test_bounded_loops_match_while_loop(adjoint, strict_promotion):
    """The bounded loops for reverse mode (checkpointed or plain) give the forward run of the
    while loop."""
    domain = build_domain("synthetic_valley", nx=12, ny=16, dx=200.0)
    law = glen_law(domain.physics)
    kw = dict(grid=domain.grid, rheology=law, smb=domain.smb, save_at=SaveAt((0.0, 1.0, 2.0)))
    H0 = jnp.full(domain.grid.shape, 30.0)
    bed = jnp.asarray(domain.bed)
    a = slv.simulate(H0, bed, scheme=ExplicitMUSCL(max_dt=31 / 365.25), **kw)
    b = slv.simulate(H0, bed, scheme=ExplicitMUSCL(max_dt=31 / 365.25, max_steps=400),
                     adjoint=adjoint, **kw)
    assert a.first_failure() is None and b.first_failure() is None
    assert np.array_equal(np.asarray(a.steps), np.asarray(b.steps))
    np.testing.assert_allclose(np.asarray(b.thickness), np.asarray(a.thickness), rtol=1e-12,
                               atol=1e-10)


@pytest.mark.parametrize("leaf", ["A", "smb"])
def test_float32_run_with_float64_array_leaves(leaf):
    """A float32 run whose law or balance holds NumPy float64 fields (as domains provide)."""
    A = np.full(PERIODIC.shape, 1e-16) if leaf == "A" else 1e-16
    base = np.full(PERIODIC.shape, 1.0) if leaf == "smb" else 1.0
    traj = slv.simulate(jnp.full(PERIODIC.shape, 10.0, jnp.float32),
                        jnp.zeros(PERIODIC.shape, jnp.float32), grid=PERIODIC,
                        rheology=GlenLaw(A=A), smb=MassBalance(base=base),
                        save_at=SaveAt((0.0, 1.0)), scheme=ExplicitMUSCL(max_dt=0.25))
    assert traj.thickness.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(traj.thickness[-1]), 11.0, rtol=1e-6)
