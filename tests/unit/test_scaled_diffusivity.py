"""law=nn_D: the scaled diffusivity law, its function class, and the twin's diagnostics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from glacier import diffusivity_twin as dt
from glacier import laws
from glacier.physics.params import Physics

PHYS = Physics(A=laws.A_PRIOR)
H = np.geomspace(10.0, 600.0, 25)
S = np.geomspace(0.02, 0.5, 20)
HH, SS = np.meshgrid(H, S, indexing="ij")


def _glen3(A):
    return np.asarray(laws.diffusivity_on(laws.glen_law(PHYS, A), HH, SS))


def _factor_needed(truth_D):
    """F = D_true / Glen(n = 3, A_PRIOR)."""
    return truth_D / _glen3(laws.A_PRIOR)


@pytest.mark.parametrize("n", [2.0, 2.5, 3.5, 4.0])
@pytest.mark.parametrize("T", [-25.0, -10.0, 0.0])
def test_glen_with_any_exponent_is_inside_the_bounds(n, T):
    truth = laws.GlenTruth(n=n)
    D = np.asarray(laws.diffusivity_on(truth.rheology(T, PHYS), HH, SS))
    F = _factor_needed(D)
    lo, hi = laws.SCALED_BOUNDS
    assert lo < F.min() and F.max() < hi, (F.min(), F.max())
    # and in the network's inputs ln F is a plane: slope (n - 3) in ln H and in ln |grad S|
    g_h = np.diff(np.log(F), axis=0) / np.diff(np.log(HH), axis=0)
    np.testing.assert_allclose(g_h, n - 3.0, atol=1e-9)


@pytest.mark.parametrize("ratio", [0.0, 1.0, 10.0])
@pytest.mark.parametrize("T", [-25.0, -5.0])
def test_glen_with_budd_sliding_is_inside_the_bounds(ratio, T):
    A = float(laws.cuffey_paterson_A(T))
    truth = laws.GlenTruth(fs=laws.budd_fs_for_ratio(A, ratio))
    D = np.asarray(laws.diffusivity_on(truth.rheology(T, PHYS), HH, SS))
    # the ratio of sliding to deformation is `ratio` under 100 m of ice
    np.testing.assert_allclose(D / _glen3(A), 1.0 + ratio * (100.0 / HH) ** 2, rtol=1e-12)
    F = _factor_needed(D)
    lo, hi = laws.SCALED_BOUNDS
    F_well = F[HH >= 20.0]  # sliding x10 at 100 m is x250 at 20 m
    assert lo < F_well.min() and F_well.max() < hi, (F_well.min(), F_well.max())


def test_fresh_law_is_glen_with_A_ref_and_positive():
    law = laws.NeuralScaledDiffusivity.create(hidden=(8,), seed=3)
    D = np.asarray(laws.diffusivity_on(law.rheology(-5.0, PHYS), HH, SS))
    np.testing.assert_allclose(D, _glen3(laws.A_PRIOR), rtol=1e-12)
    assert np.all(np.asarray(laws.diffusivity_on(law.rheology(-5.0, PHYS), 0.0 * HH, SS)) == 0)
    with pytest.raises(ValueError, match="bounds"):
        laws.NeuralScaledDiffusivity.create(bounds=(10.0, 1.0))
    with pytest.raises(ValueError, match="enclose 1"):
        laws.NeuralScaledDiffusivity.create(bounds=(2.0, 10.0))


def test_the_network_fits_sliding_within_a_percent():
    """Regression of the law on the sliding truth over the states glaciers visit: the
    function class holds it (the twin then only has to find it through the solver)."""
    T = -5.0
    A = float(laws.cuffey_paterson_A(T))
    truth = laws.GlenTruth(fs=laws.budd_fs_for_ratio(A, 1.0))
    Hs, Ss = np.meshgrid(np.linspace(20, 400, 30), np.linspace(0.05, 0.5, 20), indexing="ij")
    target = np.log(np.asarray(laws.diffusivity_on(truth.rheology(T, PHYS), Hs, Ss)))
    law = laws.NeuralScaledDiffusivity.create(hidden=(16, 16), seed=0)

    def loss(law):
        D = laws.diffusivity_on(law.rheology(T, PHYS), Hs, Ss)
        return jnp.mean((jnp.log(D) - target) ** 2)

    opt = optax.adam(0.02)
    state = opt.init(law)

    @jax.jit
    def step(law, state):
        value, g = jax.value_and_grad(loss)(law)
        updates, state = opt.update(g, state)
        return optax.apply_updates(law, updates), state, value

    for _ in range(1500):
        law, state, value = step(law, state)
    rel = np.abs(np.expm1(np.sqrt(float(value))))
    assert rel < 0.01, rel


def test_weighted_median_and_well_visited_region():
    density = np.array([[0.5, 0.3], [0.15, 0.05]])
    assert dt.well_visited(density, 0.9).tolist() == [[True, True], [True, False]]
    values = np.array([[0.1, 0.2], [0.9, 100.0]])
    # weights 0.5, 0.3, 0.15 over the well-visited bins: the median is the first value
    assert dt.density_weighted_median(values, density) == 0.1
    values = np.array([[0.3, 0.2], [0.1, 100.0]])
    assert dt.density_weighted_median(values, density) == 0.3
    assert np.isnan(dt.density_weighted_median(values, np.zeros((2, 2))))


def test_held_out_valleys_are_spread_and_never_the_ends():
    assert dt.held_out(10, 2) == [3, 6]
    assert dt.held_out(10, 0) == []
    assert all(0 < i < 9 for i in dt.held_out(10, 8))


def test_visited_states_and_slope():
    dx = 100.0
    y, x = np.mgrid[0:10, 0:12] * dx
    bed = 0.1 * y + 0.0 * x
    H = np.where((x > 150) & (x < 900), 50.0, 0.0)
    Hs, slope = dt.visited_states(H[None, None], bed[None], np.zeros((1, 10, 12)), dx)
    assert Hs.size == int((H > 1).sum()) and np.all(Hs == 50.0)
    interior = dt.surface_slope(H, bed, dx)[2:-2, 3:8]
    np.testing.assert_allclose(interior, 0.1, rtol=1e-12)
