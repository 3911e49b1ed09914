"""Unit tests of glacier.laws: Cuffey & Paterson's A(T), Glen's law and the learned laws."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glacier import laws
from glacier.constants import SECONDS_PER_YEAR
from glacier.physics.params import Physics

F64 = jnp.float64
PHYS = Physics(A=1e-16)
HIDDEN = (8, 8)

# Jitted entry points: one compilation per shape instead of one per primitive (keeps it fast).
CP = jax.jit(laws.cuffey_paterson_A)
D_CP = jax.jit(jax.vmap(jax.grad(laws.cuffey_paterson_A)))
RATE = jax.jit(lambda law, T: law.rate_factor(T))
DIFF = jax.jit(lambda rheo, H, s2, axis: rheo.diffusivity(H, s2, axis), static_argnums=3)
SPEED = jax.jit(lambda rheo, H, s2: rheo.surface_speed(H, s2))


def cp(T):
    """cuffey_paterson_A on a 1-D array, padded to one fixed length (a single compilation)."""
    T = np.asarray(T, dtype=np.float64)
    assert T.ndim == 1 and T.size <= 2048
    return np.asarray(CP(np.pad(T, (0, 2048 - T.size), constant_values=-10.0)))[:T.size]


# face values of thickness [m] and squared slope, including empty and flat faces
H = jnp.array([[0.0, 10.0, 150.0, 400.0], [55.5, 1.0, 800.0, 0.0]], F64)
SLOPE2 = jnp.array([[0.01, 0.0, 0.0025, 0.09], [0.3, 1e-6, 0.04, 0.0]], F64)


def _deform(A, n, rho, g, H, slope2):
    return 2 * A * (rho * g) ** n / (n + 2) * H ** (n + 2) * np.sqrt(slope2) ** (n - 1)


def _slide(fs, n, rho, g, H, slope2):
    return fs * (rho * g) ** n * H**n * np.sqrt(slope2) ** (n - 1)


def _perturbed(params, seed, size):
    """Params plus Gaussian noise of standard deviation ``size`` (NumPy: nothing to compile)."""
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda x: x + size * rng.standard_normal(x.shape), params)


# ---------------------------------------------------------------------------------------------
# Cuffey & Paterson


def test_cuffey_paterson_table_is_twelve_increasing_points():
    assert laws.CUFFEY_PATERSON_T.shape == laws.CUFFEY_PATERSON_A.shape == (12,)
    assert np.all(np.diff(laws.CUFFEY_PATERSON_T) > 0)
    assert np.all(np.diff(laws.CUFFEY_PATERSON_A) > 0)


def test_cuffey_paterson_A_matches_the_table():
    expected = laws.CUFFEY_PATERSON_A * SECONDS_PER_YEAR
    got = cp(laws.CUFFEY_PATERSON_T)
    # exact up to the rounding of exp(log(.)): a few ulps, not bit-identical
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=0)
    # a scalar temperature (one glacier) works too
    assert float(CP(-10.0)) == pytest.approx(3.5e-25 * SECONDS_PER_YEAR, rel=1e-14)


def test_cuffey_paterson_A_is_monotone_and_between_neighbours():
    T = np.linspace(-50.0, 0.0, 2001)
    A = cp(T)
    assert np.all(np.isfinite(A)) and np.all(A > 0)
    assert np.all(np.diff(A) > 0)
    # strictly inside each table interval, A lies between the two table values
    t, a = laws.CUFFEY_PATERSON_T, laws.CUFFEY_PATERSON_A * SECONDS_PER_YEAR
    mid = 0.5 * (t[1:] + t[:-1])
    A_mid = cp(mid)
    assert np.all(A_mid > a[:-1]) and np.all(A_mid < a[1:])


def test_cuffey_paterson_A_is_smooth_and_clamped_outside_table():
    knots = laws.CUFFEY_PATERSON_T[1:-1]
    T = np.concatenate([np.linspace(-49.9, -0.1, 50), knots - 1e-7, knots + 1e-7])
    dA = np.asarray(D_CP(T))
    assert np.all(dA[:50] > 0)
    # across each interior knot the derivative is continuous (C1 at least)
    np.testing.assert_allclose(dA[50:60], dA[60:], rtol=1e-5)
    a = laws.CUFFEY_PATERSON_A * SECONDS_PER_YEAR
    np.testing.assert_allclose(cp([-80.0, -50.0]), a[0], rtol=1e-14)
    np.testing.assert_allclose(cp([0.0, 15.0]), a[-1], rtol=1e-14)


def test_cuffey_paterson_law_has_no_parameters():
    law = laws.CuffeyPaterson()
    assert jax.tree_util.tree_leaves(law) == []
    T = np.array([-20.0, -3.0])
    rate, rheo = jax.jit(lambda law, T: (law.rate_factor(T), law.rheology(T, PHYS)))(law, T)
    np.testing.assert_allclose(rate, cp(T), rtol=1e-15)
    assert isinstance(rheo, laws.GlenLaw)
    np.testing.assert_allclose(rheo.A, cp(T), rtol=1e-15)


# ---------------------------------------------------------------------------------------------
# Glen's law


@pytest.mark.parametrize("n", [3.0, 4.0, 3.5, 1.0])
def test_glen_diffusivity_closed_form(n):
    A, rho, g = 2.4e-17, 917.0, 9.8
    law = laws.GlenLaw(A=A, n=n, rho=rho, g=g)
    expected = _deform(A, n, rho, g, np.asarray(H), np.asarray(SLOPE2))
    for axis in (0, 1):
        got = DIFF(law, H, SLOPE2, axis)
        assert got.shape == H.shape
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


def test_glen_diffusivity_known_number():
    # n = 3, A = 1e-16, rho g = 910 * 9.81, H = 100 m, |grad S| = 0.1:
    # 2e-16 * (8927.1)^3 / 5 * 1e10 * 0.01
    law = laws.GlenLaw(A=1e-16)
    got = float(law.diffusivity(100.0, 0.01, 1))
    assert got == pytest.approx(2e-16 * 8927.1**3 / 5 * 1e10 * 0.01, rel=1e-12)
    assert got == pytest.approx(2845.71, rel=1e-5)


@pytest.mark.parametrize("n", [3.0, 2.5])
def test_glen_diffusivity_with_sliding_closed_form(n):
    A, fs, rho, g = 1e-16, 5.7e-20, 910.0, 9.81
    law = laws.GlenLaw(A=A, fs=fs, n=n, rho=rho, g=g)
    h, s2 = np.asarray(H), np.asarray(SLOPE2)
    expected = _deform(A, n, rho, g, h, s2) + _slide(fs, n, rho, g, h, s2)
    np.testing.assert_allclose(DIFF(law, H, SLOPE2, 1), expected, rtol=1e-12, atol=0)
    assert np.all(np.asarray(DIFF(law, H, SLOPE2, 0)) >= _deform(A, n, rho, g, h, s2))


def test_glen_diffusivity_averages_gridded_A_and_fs_to_faces():
    A_cells = jnp.array([[1e-16, 3e-16, 5e-16], [2e-16, 2e-16, 2e-16], [1e-16, 1e-16, 4e-16]])
    fs_cells = 1e-4 * A_cells
    law = laws.GlenLaw(A=A_cells, fs=fs_cells)
    rho_g = 910.0 * 9.81
    for axis, shape in ((1, (3, 4)), (0, (4, 3))):
        Hf = np.full(shape, 100.0)
        s2 = np.full(shape, 0.04)
        A_f = np.asarray(laws.cell_to_face(A_cells, axis))
        fs_f = np.asarray(laws.cell_to_face(fs_cells, axis))
        expected = (2 * A_f * rho_g**3 / 5 * 100.0**5 * 0.2**2
                    + fs_f * rho_g**3 * 100.0**3 * 0.2**2)
        got = DIFF(law, Hf, s2, axis)
        assert got.shape == shape
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    # x-face between cells (0, 0) and (0, 1): the mean of 1e-16 and 3e-16
    got = DIFF(law, np.full((3, 4), 100.0), np.full((3, 4), 0.04), 1)
    ref = laws.GlenLaw(A=2e-16, fs=2e-20).diffusivity(100.0, 0.04, 1)
    assert float(got[0, 1]) == pytest.approx(float(ref), rel=1e-12)


@pytest.mark.parametrize("n", [3.0, 3.5])
def test_glen_surface_speed_closed_form(n):
    A, fs, rho, g = 1e-16, 2e-20, 910.0, 9.81
    h, s2 = np.asarray(H), np.asarray(SLOPE2)
    s = np.sqrt(s2)
    u_def = 2 * A * (rho * g) ** n / (n + 1) * h ** (n + 1) * s**n
    law = laws.GlenLaw(A=A, n=n, rho=rho, g=g)
    np.testing.assert_allclose(SPEED(law, H, SLOPE2), u_def, rtol=1e-12, atol=0)
    u_slide = np.where(h > 0, fs * (rho * g) ** n * np.where(h > 0, h, 1.0) ** (n - 1) * s**n, 0)
    law_s = laws.GlenLaw(A=A, fs=fs, n=n, rho=rho, g=g)
    np.testing.assert_allclose(SPEED(law_s, H, SLOPE2), u_def + u_slide, rtol=1e-12,
                               atol=0)
    # no ice, no speed
    assert np.all(np.asarray(SPEED(law_s, H, SLOPE2))[h == 0] == 0)


def test_glen_surface_speed_relates_to_diffusivity():
    # without sliding: u_s = D |grad S| (n + 2) / ((n + 1) H) for n = 3
    law = laws.GlenLaw(A=1e-16)
    Hc, s2 = 250.0, 0.0016
    D = float(law.diffusivity(Hc, s2, 1))
    u = float(law.surface_speed(Hc, s2))
    assert u == pytest.approx(D * 0.04 * 5 / (4 * 250.0), rel=1e-12)


@pytest.mark.parametrize("n", [0.0, 0.99, -3.0, math.nan, "3", None])
def test_glen_law_rejects_bad_exponent(n):
    with pytest.raises(ValueError, match="Glen exponent n must be a number >= 1"):
        laws.GlenLaw(A=1e-16, n=n)


def test_glen_law_accepts_n_of_one_and_int():
    assert laws.GlenLaw(A=1e-16, n=1).n == 1
    assert laws.GlenLaw(A=1e-16, n=1.0).n == 1.0


def test_glen_law_pytree_leaves_are_A_and_fs():
    law = laws.GlenLaw(A=1e-16, fs=3e-20, n=3.0, rho=917.0)
    leaves, treedef = jax.tree_util.tree_flatten(law)
    assert leaves == [1e-16, 3e-20]
    back = jax.tree_util.tree_unflatten(treedef, [2e-16, 0.0])
    assert (back.A, back.fs, back.n, back.rho) == (2e-16, 0.0, 3.0, 917.0)


def test_glen_law_from_physics():
    p = Physics(A=2e-16, n=3.5, rho=917.0, g=9.8, fs=1e-20)
    law = laws.glen_law(p)
    assert (law.A, law.fs, law.n, law.rho, law.g) == (2e-16, 1e-20, 3.5, 917.0, 9.8)
    field = np.full((3, 3), 5e-17)
    law2 = laws.glen_law(p, A=field)
    assert law2.A is field and law2.fs == 1e-20 and law2.n == 3.5


# ---------------------------------------------------------------------------------------------
# ConstantA


@pytest.mark.parametrize("A", [1e-16, 7.57e-17, 2.4e-24 * SECONDS_PER_YEAR])
def test_constant_A_round_trip(A):
    law = laws.ConstantA.from_value(A)
    assert float(law.log_A) == pytest.approx(math.log(A), rel=1e-15)
    assert float(jnp.exp(law.log_A)) == pytest.approx(A, rel=1e-14)
    T = jnp.array([[-20.0, -5.0], [0.0, 3.0]])
    rf = RATE(law, T)
    assert rf.shape == (2, 2)
    np.testing.assert_allclose(rf, A, rtol=1e-14)
    assert float(law.rate_factor(-10.0)) == pytest.approx(A, rel=1e-14)


def test_constant_A_rheology_uses_own_A_and_physics_for_the_rest():
    law = laws.ConstantA.from_value(3e-17)
    p = Physics(A=1e-16, n=3.0, rho=917.0, g=9.8, fs=1e-20)
    rheo = law.rheology(-7.0, p)
    assert isinstance(rheo, laws.GlenLaw)
    assert float(rheo.A) == pytest.approx(3e-17, rel=1e-14)  # not physics.A
    assert (rheo.fs, rheo.n, rheo.rho, rheo.g) == (1e-20, 3.0, 917.0, 9.8)
    D = DIFF(rheo, H, SLOPE2, 1)
    ref = DIFF(laws.GlenLaw(A=3e-17, fs=1e-20, rho=917.0, g=9.8), H, SLOPE2, 1)
    np.testing.assert_allclose(D, ref, rtol=1e-13)


# ---------------------------------------------------------------------------------------------
# Learned laws


def test_prior_bounds():
    lo, hi = laws.prior_bounds(2.0, 10.0)
    assert (lo, hi) == (0.2, 20.0)
    assert math.sqrt(lo * hi) == pytest.approx(2.0)
    lo, hi = laws.PRIOR_BOUNDS
    assert math.sqrt(lo * hi) == pytest.approx(laws.A_PRIOR, rel=1e-14)
    for bad in ((0.0, 10.0), (1.0, 1.0), (-1.0, 2.0), (1.0, 0.5)):
        with pytest.raises(ValueError, match="A_prior > 0 and factor > 1"):
            laws.prior_bounds(*bad)


@pytest.fixture(scope="module")
def neural_A():
    return laws.NeuralAofT.create(hidden=HIDDEN, seed=3)


T_GRID = np.linspace(-60.0, 10.0, 15)


@pytest.mark.parametrize("bounds", [laws.A_BOUNDS, laws.PRIOR_BOUNDS])
def test_neural_A_of_T_starts_at_geometric_middle(bounds):
    law = laws.NeuralAofT.create(hidden=HIDDEN, seed=0, bounds=bounds)
    assert law.bounds == bounds
    assert (law.T_mean, law.T_scale) == (-12.5, 12.5)
    A = np.asarray(RATE(law, T_GRID))
    assert A.shape == T_GRID.shape and A.dtype == np.float64
    np.testing.assert_allclose(A, math.sqrt(bounds[0] * bounds[1]), rtol=1e-13)
    if bounds == laws.PRIOR_BOUNDS:
        np.testing.assert_allclose(A, laws.A_PRIOR, rtol=1e-13)
    rheo = jax.jit(lambda law, T: law.rheology(T, PHYS))(law, T_GRID)
    assert isinstance(rheo, laws.GlenLaw)
    np.testing.assert_allclose(rheo.A, A, rtol=1e-15)


def test_neural_A_of_T_stays_within_bounds_after_perturbation(neural_A):
    lo, hi = neural_A.bounds
    for seed, size in ((0, 0.5), (1, 3.0), (2, 30.0)):
        law = neural_A.__class__(params=_perturbed(neural_A.params, seed, size),
                                 graphdef=neural_A.graphdef, bounds=neural_A.bounds)
        A = np.asarray(RATE(law, T_GRID))
        assert np.all(np.isfinite(A))
        # allow the few-ulp overshoot of log_bounded at saturation
        assert np.all(A >= lo * (1 - 1e-13)) and np.all(A <= hi * (1 + 1e-13))
        assert np.ptp(A) > 0  # the perturbed network does depend on T


def test_neural_A_of_T_rejects_bad_arguments():
    with pytest.raises(ValueError, match="0 < lo < hi"):
        laws.NeuralAofT.create(hidden=HIDDEN, bounds=(1.0, 1.0))
    with pytest.raises(ValueError, match="0 < lo < hi"):
        laws.NeuralAofT.create(hidden=HIDDEN, bounds=(0.0, 1.0))
    with pytest.raises(ValueError, match="0 < lo < hi"):
        laws.NeuralAofT.create(hidden=HIDDEN, bounds=(1.0, math.inf))
    with pytest.raises(ValueError, match="T_scale must be positive"):
        laws.NeuralAofT.create(hidden=HIDDEN, T_scale=0.0)


@pytest.fixture(scope="module")
def neural_D():
    return laws.NeuralDiffusivity.create(hidden=HIDDEN, seed=1)


def _glen_envelope(law, Hf, s2):
    lo, hi = law.bounds
    shape = Hf ** (law.n + 2) * np.sqrt(s2) ** (law.n - 1)
    gamma = 2 * (law.rho * law.g) ** law.n / (law.n + 2)
    return gamma * lo * shape, gamma * hi * shape


def test_neural_diffusivity_rheology_and_initial_value(neural_D):
    p = Physics(A=1e-16, rho=917.0, fs=1e-20)
    rheo = neural_D.rheology(-8.0, p)
    assert isinstance(rheo, laws.LearnedDiffusivity)
    assert (rheo.n, rheo.rho, rheo.g) == (3.0, 917.0, 9.81)
    assert rheo.bounds == laws.A_BOUNDS and rheo.scales == neural_D.scales
    D = np.asarray(DIFF(rheo, H, SLOPE2, 1))
    lo, hi = laws.A_BOUNDS
    # a fresh network: Glen's law at the geometric middle of the bounds; no sliding term,
    # although physics.fs > 0 (the learned diffusivity drops fs)
    expected = _deform(math.sqrt(lo * hi), 3.0, 917.0, 9.81, np.asarray(H), np.asarray(SLOPE2))
    np.testing.assert_allclose(D, expected, rtol=1e-12, atol=0)


def test_neural_diffusivity_positive_and_within_glen_bounds(neural_D):
    Hf = np.array([[5.0, 80.0, 300.0, 900.0], [1.0, 40.0, 150.0, 2000.0]])
    s2 = np.array([[1e-4, 0.01, 0.04, 0.25], [0.5, 1e-3, 0.09, 1e-5]])
    T_cells = np.array([[-30.0, -12.0, -2.0], [-20.0, -5.0, 0.0], [-40.0, -1.0, -15.0]])
    for seed, size in ((0, 0.0), (1, 1.0), (2, 10.0)):
        law = neural_D.__class__(params=_perturbed(neural_D.params, seed, size),
                                 graphdef=neural_D.graphdef)
        rheo = law.rheology(T_cells, PHYS)
        for axis, shape in ((1, (3, 4)), (0, (4, 3))):
            Hs = np.resize(Hf, shape)
            ss = np.resize(s2, shape)
            D = np.asarray(DIFF(rheo, Hs, ss, axis))
            assert D.shape == shape
            assert np.all(np.isfinite(D)) and np.all(D > 0)
            d_lo, d_hi = _glen_envelope(rheo, Hs, ss)
            assert np.all(D >= d_lo * (1 - 1e-12)) and np.all(D <= d_hi * (1 + 1e-12))
        u = np.asarray(SPEED(rheo, np.resize(Hf, (3, 3)), np.resize(s2, (3, 3))))
        assert u.shape == (3, 3) and np.all(u > 0)


def test_neural_diffusivity_rate_factor_on(neural_D):
    rate_on = jax.jit(lambda law, H, s, T: law.rate_factor_on(H, s, T))
    A = np.asarray(rate_on(neural_D, np.array([10.0, 200.0]), np.array([0.05, 0.3]), -10.0))
    lo, hi = neural_D.bounds
    np.testing.assert_allclose(A, math.sqrt(lo * hi), rtol=1e-13)


def test_neural_diffusivity_rejects_bad_scales():
    with pytest.raises(ValueError, match="input scales must be positive"):
        laws.NeuralDiffusivity.create(hidden=HIDDEN, scales=(0.0, 0.2, -12.5, 12.5))
    with pytest.raises(ValueError, match="0 < lo < hi"):
        laws.NeuralDiffusivity.create(hidden=HIDDEN, bounds=(2.0, 1.0))


# ---------------------------------------------------------------------------------------------
# Gradients with respect to a law


def _loss(law, temperature=-10.0):
    rheo = law.rheology(temperature, PHYS)
    return jnp.sum(rheo.diffusivity(H, SLOPE2, 1)) / 1e3


def _all_finite(tree):
    leaves = jax.tree_util.tree_leaves(tree)
    return bool(leaves) and all(np.all(np.isfinite(np.asarray(x))) for x in leaves)


def test_grad_with_respect_to_constant_A():
    law = laws.ConstantA.from_value(1e-16)
    loss, g = jax.jit(jax.value_and_grad(_loss))(law)
    assert isinstance(g, laws.ConstantA) and _all_finite(g)
    # D is proportional to A = exp(log_A), so d loss / d log_A = loss
    assert float(loss) > 0
    assert float(g.log_A) == pytest.approx(float(loss), rel=1e-12)


def test_grad_with_respect_to_glen_law():
    law = laws.GlenLaw(A=1e-16, fs=1e-20)

    def loss(law):
        return jnp.sum(law.diffusivity(H, SLOPE2, 0)) + jnp.sum(law.surface_speed(H, SLOPE2))

    g = jax.jit(jax.grad(loss))(law)
    assert _all_finite(g)
    assert float(g.A) > 0 and float(g.fs) > 0


def test_grad_with_respect_to_neural_A_of_T(neural_A):
    g = jax.jit(jax.grad(_loss))(neural_A)
    assert isinstance(g, laws.NeuralAofT) and _all_finite(g)
    # at init the output layer is zero: only it sees a gradient, and its bias does
    assert float(jnp.abs(g.params["out"]["bias"][...]).sum()) > 0
    for layer in g.params["hidden"].values():
        np.testing.assert_array_equal(layer["kernel"][...], 0.0)


def test_grad_with_respect_to_neural_diffusivity(neural_D):
    T_cells = np.array([[-10.0, -4.0, -20.0], [-1.0, -12.0, -30.0]])  # x-faces: shape of H

    @jax.jit
    @jax.grad
    def grad(law):
        rheo = law.rheology(T_cells, PHYS)
        return jnp.sum(rheo.diffusivity(H, SLOPE2 + 1e-4, 1)) / 1e3

    g = grad(neural_D)
    assert isinstance(g, laws.NeuralDiffusivity) and _all_finite(g)
    assert float(jnp.abs(g.params["out"]["kernel"][...]).sum()) > 0
    # and after a perturbation every layer receives a finite gradient
    law = neural_D.__class__(params=_perturbed(neural_D.params, 0, 0.5),
                             graphdef=neural_D.graphdef)
    g2 = grad(law)
    assert _all_finite(g2)
    assert float(jnp.abs(g2.params["hidden"][0]["kernel"][...]).sum()) > 0


def test_a_closed_outline_keeps_the_ice_inside_its_mask():
    """``ClosedOutline``: D = 0 on the faces between the mask and the cells outside (and only
    there), so a glacier on a slope running out of its mask keeps every cubic metre inside
    it (no mass balance), where the open law loses ice across the outline."""
    from glacier.grid import Grid, faces_within
    from glacier.physics import mass_balance
    from glacier.solver import SaveAt, simulate

    mask = np.zeros((12, 14))
    mask[3:9, 2:10] = 1.0
    fx, fy = np.asarray(faces_within(mask, 1)), np.asarray(faces_within(mask, 0))
    assert fx.shape == (12, 15) and fy.shape == (13, 14)
    assert fx[5, 2] == 0 and fx[5, 3] == 1 and fx[5, 10] == 0 and fx[5, 0] == 0
    assert fy[3, 5] == 0 and fy[4, 5] == 1 and fy.sum() == 5 * 8
    grid = Grid(ny=12, nx=14, dx=100.0)
    X, _ = grid.meshgrid()
    bed = 2000.0 - 0.1 * X  # slopes down towards +x, out through the mask's side at x = 10
    H0 = 80.0 * mask
    glen = laws.GlenLaw(A=2.4e-16)
    closed = laws.ClosedOutline(glen, jnp.asarray(mask))
    assert jax.tree_util.tree_leaves(closed)[-1].shape == mask.shape  # a pytree: A, fs, mask
    np.testing.assert_array_equal(
        np.asarray(closed.diffusivity(jnp.full((12, 15), 50.0), jnp.full((12, 15), 0.01), 1)),
        np.asarray(glen.diffusivity(jnp.full((12, 15), 50.0), jnp.full((12, 15), 0.01), 1)) * fx)

    def run(rheology):
        return simulate(jnp.asarray(H0), jnp.asarray(bed), grid=grid, rheology=rheology,
                        smb=mass_balance.zero(), save_at=SaveAt((0.0, 20.0)))

    inside = run(closed).thickness[-1]
    assert float(np.abs(inside * (1 - mask)).max()) == 0.0
    np.testing.assert_allclose(float(inside.sum()), float(H0.sum()), rtol=1e-12)
    assert float(inside[:, 9].mean()) > float(H0[:, 9].mean())  # piled up against the side
    leaky = run(glen).thickness[-1]
    assert float((leaky * (1 - mask)).sum()) > 0.01 * float(H0.sum())
