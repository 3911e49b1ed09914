"""Unit tests of glacier.grid: the static Grid and the cell-to-face averaging."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glacier.grid import Grid, cell_to_face

C2F = jax.jit(cell_to_face, static_argnums=1)  # one compilation per shape, not per primitive


@pytest.mark.parametrize("ny, nx", [(2, 5), (5, 2), (0, 4), (1, 1), (-3, 3)])
def test_grid_rejects_fewer_than_three_cells(ny, nx):
    with pytest.raises(ValueError, match="at least 3 x 3"):
        Grid(ny=ny, nx=nx, dx=100.0)


@pytest.mark.parametrize("dx", [0.0, -1.0, np.nan, np.inf, -np.inf])
def test_grid_rejects_bad_spacing(dx):
    with pytest.raises(ValueError, match="dx must be positive and finite"):
        Grid(ny=4, nx=5, dx=dx)


def test_grid_accepts_smallest_grid_and_converts_types():
    g = Grid(ny=3, nx=3, dx=50, x0=1, y0=2, periodic=[1, 0])
    assert g.shape == (3, 3)
    assert type(g.dx) is float and g.dx == 50.0
    assert type(g.x0) is float and type(g.y0) is float
    assert g.periodic == (True, False)
    assert isinstance(g.periodic, tuple)


def test_shape_and_cell_area():
    g = Grid(ny=4, nx=7, dx=25.0)
    assert g.shape == (4, 7)
    assert g.cell_area == 625.0


def test_coordinates_ascend_from_origin():
    g = Grid(ny=4, nx=6, dx=10.0, x0=-30.0, y0=500.0)
    np.testing.assert_array_equal(g.x, [-30.0, -20.0, -10.0, 0.0, 10.0, 20.0])
    np.testing.assert_array_equal(g.y, [500.0, 510.0, 520.0, 530.0])
    assert g.x.shape == (6,) and g.y.shape == (4,)
    assert np.all(np.diff(g.x) > 0) and np.all(np.diff(g.y) > 0)


def test_meshgrid_is_indexed_y_x():
    g = Grid(ny=3, nx=5, dx=2.0, x0=1.0, y0=-4.0)
    X, Y = g.meshgrid()
    assert X.shape == (3, 5) and Y.shape == (3, 5)
    # X varies along columns only, Y along rows only.
    for j in range(3):
        np.testing.assert_array_equal(X[j], g.x)
    for i in range(5):
        np.testing.assert_array_equal(Y[:, i], g.y)
    assert X[0, 0] == 1.0 and Y[0, 0] == -4.0
    assert X[2, 4] == 9.0 and Y[2, 4] == 0.0


def test_transpose_swaps_axes():
    g = Grid(ny=3, nx=5, dx=2.0, x0=1.0, y0=-4.0, periodic=(True, False))
    t = g.transpose()
    assert t.shape == (5, 3)
    assert (t.x0, t.y0) == (-4.0, 1.0)
    assert t.periodic == (False, True)
    assert t.dx == g.dx
    np.testing.assert_array_equal(t.x, g.y)
    np.testing.assert_array_equal(t.y, g.x)
    X, Y = g.meshgrid()
    Xt, Yt = t.meshgrid()
    np.testing.assert_array_equal(Xt, Y.T)
    np.testing.assert_array_equal(Yt, X.T)
    assert t.transpose() == g


def test_grid_is_hashable_and_compares_by_value():
    a = Grid(ny=4, nx=5, dx=10)
    b = Grid(ny=4, nx=5, dx=10.0, x0=0, y0=0.0, periodic=[False, False])
    c = Grid(ny=4, nx=5, dx=10.0, x0=1.0)
    assert a == b and hash(a) == hash(b)
    assert a != c
    assert len({a, b, c}) == 2
    with pytest.raises(AttributeError):
        a.nx = 6  # frozen


def test_grid_works_as_static_jit_argument():
    calls = []

    def f(x, grid):
        calls.append(grid)
        return x * grid.cell_area

    jf = jax.jit(f, static_argnums=1)
    assert float(jf(2.0, Grid(ny=3, nx=3, dx=3.0))) == 18.0
    assert float(jf(1.0, Grid(ny=3, nx=3, dx=3.0))) == 9.0
    assert len(calls) == 1  # the equal grid hit the cache


def _field(ny=3, nx=5):
    return jnp.asarray(np.arange(ny * nx, dtype=np.float64).reshape(ny, nx) ** 2)


def test_cell_to_face_on_x_faces():
    f = _field()
    fx = C2F(f, 1)
    assert fx.shape == (3, 6)
    assert fx.dtype == jnp.float64
    np.testing.assert_array_equal(fx[:, 1:-1], 0.5 * (f[:, 1:] + f[:, :-1]))
    np.testing.assert_array_equal(fx[:, 0], f[:, 0])
    np.testing.assert_array_equal(fx[:, -1], f[:, -1])


def test_cell_to_face_on_y_faces():
    f = _field()
    fy = C2F(f, 0)
    assert fy.shape == (4, 5)
    np.testing.assert_array_equal(fy[1:-1], 0.5 * (f[1:] + f[:-1]))
    np.testing.assert_array_equal(fy[0], f[0])
    np.testing.assert_array_equal(fy[-1], f[-1])


def test_cell_to_face_known_values():
    f = jnp.array([[0.0, 2.0, 6.0], [1.0, 1.0, 1.0], [4.0, 0.0, -4.0]])
    np.testing.assert_array_equal(
        C2F(f, 1),
        [[0.0, 1.0, 4.0, 6.0], [1.0, 1.0, 1.0, 1.0], [4.0, 2.0, -2.0, -4.0]])
    np.testing.assert_array_equal(
        C2F(f, 0),
        [[0.0, 2.0, 6.0], [0.5, 1.5, 3.5], [2.5, 0.5, -1.5], [4.0, 0.0, -4.0]])


def test_cell_to_face_transposes_consistently():
    f = _field()
    np.testing.assert_array_equal(C2F(f, 1), np.asarray(C2F(f.T, 0)).T)
    # and the eager call gives the same as the jitted one
    np.testing.assert_array_equal(cell_to_face(f, 1), C2F(f, 1))


def test_cell_to_face_keeps_constant_field():
    f = jnp.asarray(np.full((3, 5), 7.5))
    np.testing.assert_array_equal(C2F(f, 1), np.full((3, 6), 7.5))
    np.testing.assert_array_equal(C2F(f, 0), np.full((4, 5), 7.5))


@pytest.mark.parametrize("value", [3.25, jnp.float64(-1.5), np.float64(2.0)])
@pytest.mark.parametrize("axis", [0, 1])
def test_cell_to_face_passes_scalars_through(value, axis):
    out = cell_to_face(value, axis)
    assert jnp.ndim(out) == 0
    assert float(out) == float(value)
