"""Unit tests of glacier.losses: gap-aware misfits, the thickness scale and regularisers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glacier import losses

NAN = np.nan

# Jitted once per input shape: far fewer compilations than running primitive by primitive.
WMSE = jax.jit(losses.weighted_mse)
SCALE = jax.jit(losses.thickness_scale)
TIK = jax.jit(losses.tikhonov)


def test_observed_marks_finite_values():
    obs = jnp.array([1.0, NAN, 0.0, -2.0, jnp.inf])
    out = losses.observed(obs)
    np.testing.assert_array_equal(out, [1.0, 0.0, 1.0, 1.0, 0.0])
    assert out.dtype == jnp.float64


def test_weighted_mse_plain_mean():
    model = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    obs = jnp.array([[0.0, 2.0], [1.0, 8.0]])
    # squared errors 1, 0, 4, 16
    assert float(WMSE(model, obs)) == pytest.approx(21.0 / 4.0, rel=1e-15)


def test_weighted_mse_ignores_nan_gaps():
    model = jnp.array([1.0, 2.0, 3.0, 4.0])
    obs = jnp.array([0.0, NAN, 1.0, NAN])
    # only cells 0 and 2: errors 1 and 2 -> (1 + 4) / 2
    assert float(WMSE(model, obs)) == pytest.approx(2.5, rel=1e-15)
    # whatever the model holds at a gap, the misfit is the same
    model2 = model.at[1].set(1e6).at[3].set(-7.0)
    assert float(WMSE(model2, obs)) == float(WMSE(model, obs))


def test_weighted_mse_gap_does_not_leak_nan_into_value_or_gradient():
    obs = jnp.array([1.0, NAN, 3.0])
    model = jnp.array([2.0, 5.0, 3.0])
    value, grad = jax.jit(jax.value_and_grad(losses.weighted_mse))(model, obs)
    assert np.isfinite(float(value))
    # d/dm_i of sum((m - o)^2)/2 = (m_i - o_i) over observed cells, 0 at the gap
    np.testing.assert_allclose(grad, [1.0, 0.0, 0.0], atol=1e-15)


def test_weighted_mse_all_gaps_is_zero():
    obs = np.full((3, 3), NAN)
    assert float(WMSE(np.ones((3, 3)), obs)) == 0.0


def test_weighted_mse_scale_divides():
    model = jnp.array([3.0, 5.0, -1.0])
    obs = jnp.array([1.0, NAN, 1.0])
    base = float(WMSE(model, obs))
    assert base == pytest.approx(4.0, rel=1e-15)
    assert float(WMSE(model, obs, scale=2.0)) == pytest.approx(base / 4.0)
    assert float(WMSE(model, obs, scale=0.5)) == pytest.approx(base * 4.0)


def test_weighted_mse_weights():
    model = jnp.array([1.0, 1.0, 1.0])
    obs = jnp.array([0.0, 3.0, NAN])
    w = jnp.array([3.0, 1.0, 100.0])
    # errors 1 and 2 with weights 3 and 1; the NaN cell's weight does not count
    expected = (3 * 1.0 + 1 * 4.0) / (3 + 1)
    assert float(WMSE(model, obs, weight=w)) == pytest.approx(expected, rel=1e-15)
    # a zero weight removes a cell like a gap
    w0 = jnp.array([0.0, 1.0, 1.0])
    assert float(WMSE(model, obs, weight=w0)) == pytest.approx(4.0, rel=1e-15)
    # uniform weights change nothing; the misfit is a weighted mean, not a sum
    assert float(WMSE(model, obs, weight=7.0)) == pytest.approx(
        float(WMSE(model, obs)), rel=1e-15)


def test_weighted_mse_broadcasts_weights_over_time():
    model = np.zeros((2, 2, 3))
    obs = np.stack([np.ones((2, 3)), 2.0 * np.ones((2, 3))])
    w = jnp.array([[1.0, 1.0, 1.0], [0.0, 0.0, 2.0]])
    # per-cell sum of weights is 4 per time slice; errors 1 and 4 in the two slices
    expected = (4 * 1.0 + 4 * 4.0) / 8.0
    assert float(WMSE(model, obs, weight=w)) == pytest.approx(expected)


def test_weighted_mse_does_not_grow_with_size():
    small = WMSE(np.ones((2, 2)), np.zeros((2, 2)))
    big = WMSE(np.ones((20, 20)), np.zeros((20, 20)))
    assert float(small) == float(big) == 1.0


def test_thickness_scale_is_mean_observed_thickness():
    obs = jnp.array([[100.0, NAN], [300.0, 200.0]])
    assert float(SCALE(obs)) == pytest.approx(200.0, rel=1e-15)


def test_thickness_scale_floor():
    obs = jnp.array([0.2, 0.4, NAN])
    assert float(SCALE(obs)) == 1.0  # default floor 1 m
    assert float(SCALE(obs, floor=0.1)) == pytest.approx(0.3, rel=1e-15)
    assert float(SCALE(obs, floor=50.0)) == 50.0
    # no observation at all: the floor
    assert float(SCALE(np.full(4, NAN), floor=5.0)) == 5.0


def test_tikhonov_zero_for_constant_field():
    assert float(TIK(np.full((4, 5), 3.7), 10.0)) == 0.0
    assert float(TIK(np.full((4, 5), -2.0), 1.0, mask=np.ones((4, 5)))) == 0.0


def test_tikhonov_linear_ramp_known_value():
    ny, nx, dx = 4, 5, 20.0
    j = np.arange(nx, dtype=np.float64)[None, :]
    i = np.arange(ny, dtype=np.float64)[:, None]
    # ramp along x only: gradient a everywhere along x, 0 along y
    a = 0.5
    f = a * dx * j + 0.0 * i
    n_x, n_y = ny * (nx - 1), (ny - 1) * nx  # 16 x-differences, 15 y-differences
    expected = n_x * a**2 / (n_x + n_y)
    assert float(TIK(f, dx)) == pytest.approx(expected, rel=1e-14)
    # a plane with slopes (a, b): mean of a^2 over x-differences and b^2 over y-differences
    b = -2.0
    f = a * dx * j + b * dx * i
    expected = (n_x * a**2 + n_y * b**2) / (n_x + n_y)
    assert float(TIK(f, dx)) == pytest.approx(expected, rel=1e-14)
    # same field, doubled spacing: the gradient halves, the penalty quarters
    assert float(TIK(f, 2 * dx)) == pytest.approx(expected / 4, rel=1e-14)


def test_tikhonov_mask_respected():
    dx = 1.0
    f = np.tile(np.arange(5, dtype=np.float64), (4, 1))  # slope 1 along x
    mask = np.zeros((4, 5))
    mask[1:3, 0:3] = 1.0
    # inside the 2 x 3 mask: 2 * 2 x-pairs with gradient 1, 1 * 3 y-pairs with 0
    assert float(TIK(f, dx, mask=mask)) == pytest.approx(4.0 / 7.0, rel=1e-14)
    # values outside the mask (and across its edge) do not count
    wild = f.copy()
    wild[0] = 1e6
    wild[:, 3:] = -1e6
    assert float(TIK(wild, dx, mask=mask)) == pytest.approx(4.0 / 7.0, rel=1e-14)
    # a full mask equals no mask
    assert float(TIK(f, dx, mask=np.ones((4, 5)))) == pytest.approx(
        float(TIK(f, dx)), rel=1e-14)
    # an empty mask gives 0, not NaN
    assert float(TIK(f, dx, mask=np.zeros((4, 5)))) == 0.0


def test_l2_sums_squares_of_leaves():
    leaves = [jnp.array([1.0, -2.0]), jnp.array([[3.0], [0.5]]), jnp.array(-1.0)]
    assert float(jax.jit(losses.l2)(leaves)) == pytest.approx(1 + 4 + 9 + 0.25 + 1, rel=1e-15)
    assert float(losses.l2([])) == 0.0
    tree = {"a": np.ones(3), "b": (np.full((2, 2), 2.0),)}
    assert float(jax.jit(losses.l2)(jax.tree_util.tree_leaves(tree))) == pytest.approx(3 + 16)
    grads = jax.jit(jax.grad(losses.l2))(leaves)
    for g, x in zip(grads, leaves, strict=True):
        np.testing.assert_allclose(g, 2 * x)
