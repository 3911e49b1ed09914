"""Symmetries of the discrete SIA: transposing, rotating or mirroring the domain does the same to
the solution.

The y-face states are the x-face states of the transposed problem (``physics.sia.face_states``),
so a transposed domain gives the transposed result up to the order of floating-point sums. The
MUSCL-superbee reconstruction (Jarosch, Schoof & Anslow 2013, The Cryosphere 7, Eqs. 19-22) is
mirror-symmetric because superbee satisfies phi(r)/r = phi(1/r), so mirrored and rotated domains
must agree to round-off as well. The Halfar dome (Bueler et al. 2005, J. Glaciol. 51, Test B) is
radially symmetric and must stay symmetric under the square's eight symmetries.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from glacier import solver as slv
from glacier.domains import build_domain
from glacier.grid import Grid
from glacier.laws import glen_law
from glacier.physics.mass_balance import MassBalance
from glacier.schemes import ExplicitMUSCL
from glacier.solver import SaveAt

from ._helpers import run_domain

TIMES = (0.0, 10.0, 30.0)
RTOL = 1e-10  # relative to max H; measured: 1e-13 to 2e-13 m on 120 m


def _valley_case():
    """A valley 40 (y) x 30 (x) at 200 m made asymmetric: tilted sideways, with a seeded
    roughness and a patchy balance, plus an initial slab with a cliff."""
    domain = build_domain("synthetic_valley", nx=30, ny=40, dx=200.0)
    rng = np.random.default_rng(0)
    X, Y = domain.grid.meshgrid()
    bed = domain.bed + 60.0 * X / X.max() + rng.normal(0.0, 5.0, domain.grid.shape)
    base = rng.normal(0.0, 0.3, domain.grid.shape)
    H0 = np.where((Y < 1500.0) & (X > -1000.0), 80.0, 0.0)
    return domain, bed, base, H0


def _run(grid, bed, base, H0, law):
    smb = MassBalance(base=jnp.asarray(base), gradient=3e-3 * 1000 / 900, reference=2600.0)
    traj = slv.simulate(jnp.asarray(H0), jnp.asarray(bed), grid=grid, rheology=law, smb=smb,
                        save_at=SaveAt(TIMES), scheme=ExplicitMUSCL(max_dt=31.0 / 365.25))
    assert traj.first_failure() is None
    return np.asarray(traj.thickness)


def _rotated_grid(grid: Grid, k: int) -> Grid:
    return grid if k % 2 == 0 else grid.transpose()


TRANSFORMS = {
    "transpose": (lambda a: a.T, lambda g: g.transpose()),
    "rot90": (lambda a: np.rot90(a, 1), lambda g: _rotated_grid(g, 1)),
    "rot180": (lambda a: np.rot90(a, 2), lambda g: _rotated_grid(g, 2)),
    "rot270": (lambda a: np.rot90(a, 3), lambda g: _rotated_grid(g, 3)),
    "flip_x": (lambda a: a[:, ::-1], lambda g: g),
    "flip_y": (lambda a: a[::-1, :], lambda g: g),
}


@pytest.fixture(scope="module")
def reference():
    domain, bed, base, H0 = _valley_case()
    law = glen_law(domain.physics)
    return domain.grid, bed, base, H0, law, _run(domain.grid, bed, base, H0, law)


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_transformed_domain_gives_transformed_result(name, reference, strict_promotion):
    grid, bed, base, H0, law, H_ref = reference
    field, grid_of = TRANSFORMS[name]
    H = _run(grid_of(grid), field(bed).copy(), field(base).copy(), field(H0).copy(), law)
    assert H_ref[-1].max() > 50.0  # the ice has moved: the test is not vacuous
    expected = np.stack([field(h) for h in H_ref])
    if expected.shape == H_ref.shape:  # the case itself is not symmetric under the transform
        assert np.abs(expected - H_ref).max() > 10.0
    err = np.abs(H - expected).max()
    assert err <= RTOL * H_ref.max(), f"{name}: max difference {err:.3e} m"


def test_transpose_periodic_strip(strict_promotion):
    """The bedrock-step strip (periodic in y) transposed into a strip periodic in x."""
    domain = build_domain("bedrock_step", dx=1000.0)
    law = glen_law(domain.physics)
    smb = domain.smb
    times = (0.0, 500.0, 1000.0)
    stepping = ExplicitMUSCL(max_dt=10.0)
    a = slv.simulate(jnp.asarray(domain.thickness), jnp.asarray(domain.bed), grid=domain.grid,
                     rheology=law, smb=smb, save_at=SaveAt(times), scheme=stepping)
    b = slv.simulate(jnp.asarray(domain.thickness.T), jnp.asarray(domain.bed.T),
                     grid=domain.grid.transpose(), rheology=law,
                     smb=MassBalance(base=jnp.asarray(smb.base).T), save_at=SaveAt(times),
                     scheme=stepping)
    Ha, Hb = np.asarray(a.thickness), np.asarray(b.thickness)
    assert Ha[-1].max() > 100.0
    assert np.abs(Hb - np.swapaxes(Ha, 1, 2)).max() <= RTOL * Ha.max()


def test_halfar_dome_stays_symmetric():
    """Halfar at 60 km after 25 ka: invariant under mirrors and the transpose (measured
    asymmetry ~1e-12 m on 3000 m)."""
    domain = build_domain("halfar", dx=60e3)
    H = run_domain(domain, (0.0, 25_000.0)).thickness[-1]
    for image in (H[::-1], H[:, ::-1], H.T, np.rot90(H)):
        assert np.abs(image - H).max() <= RTOL * H.max()
