"""The native kernels skip ice-free ground (``glacier_native::ice_span``): a face whose MUSCL
stencil holds no ice has q = 0 and zero derivatives, and a row of ice-free cells without flux
adds nothing to the limiter or its adjoint. On glaciers that cover a small part of their
domain (islands of ice, ice on the domain's edges and corners, wrapped across a periodic
edge, whole bands of rows with no ice) the kernels and their adjoints must still equal the
XLA expressions and JAX's AD of them, and a solve's gradient that without the kernels."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glacier.grid import Grid
from glacier.laws import GlenLaw
from glacier.physics import native, sia

from ._helpers import needs_kernel
from .test_native import _both, _rel
from .test_native_adjoint import _coef, _compare, check_solve_gradient
from .test_native_limit_vjp import _check

PERIODIC = [(False, False), (True, False), (False, True), (True, True)]


def _islands(rng, ny, nx, dtype):
    """Ice in a few islands: one inside, single cells in two corners, a strip on the top edge
    and one on the right edge; the rows between them hold no ice (more than a band of 16 at
    the bottom), so that whole rows, row bands and runs of columns are skipped."""
    H = np.zeros((ny, nx))
    H[20:24, 5:10] = rng.uniform(40.0, 160.0, (4, 5))
    H[0, 0] = 35.0
    H[ny - 1, nx - 1] = 12.0
    H[ny - 1, 11:15] = rng.uniform(5.0, 80.0, 4)
    H[27:29, nx - 1] = 60.0
    bed = rng.normal(2000.0, 25.0, (ny, nx)) + np.linspace(0.0, 600.0, nx)[None, :]
    return jnp.asarray(H, dtype), jnp.asarray(bed, dtype)


GRID = dict(ny=31, nx=19, dx=100.0)


@needs_kernel
@pytest.mark.parametrize("periodic", PERIODIC)
@pytest.mark.parametrize("dtype,tol", [(jnp.float64, 1e-13), (jnp.float32, 1e-5)])
def test_fluxes_and_limiter_on_islands_equal_the_xla_expressions(periodic, dtype, tol):
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        pytest.skip("float64 needs x64")
    grid = Grid(**GRID, periodic=periodic)
    H, bed = _islands(np.random.default_rng(1), grid.ny, grid.nx, dtype)
    law = GlenLaw(A=jnp.asarray(7.6e-17, dtype), fs=jnp.asarray(2e-12, dtype))
    fast, slow = _both(lambda H, b: sia.fluxes(H, b, law, grid), H, bed)
    for name, a, b in zip(("qx", "qy", "D_max"), fast, slow, strict=True):
        assert _rel(a, b) <= tol, (name, _rel(a, b))
    qx, qy = slow[0], slow[1]
    assert float(jnp.max(jnp.abs(qx[1:18]))) == 0.0 < float(jnp.max(jnp.abs(qx)))  # skipped
    for dt in (0.5, 40.0):  # the limiter idle, and active at the islands' fronts
        dt = jnp.asarray(dt, dtype)
        fast, slow = _both(lambda *a: sia.limited_divergence(*a, grid), H, qx, qy, dt)
        assert _rel(fast[0], slow[0]) <= tol
        # The edge outflow cancels to round-off of the fluxes where both axes wrap.
        q_max = max(float(jnp.max(jnp.abs(qx))), float(jnp.max(jnp.abs(qy))))
        assert abs(float(fast[1] - slow[1])) <= tol * max(abs(float(slow[1])), q_max)


@needs_kernel
@pytest.mark.parametrize("periodic", PERIODIC)
@pytest.mark.parametrize("dtype,tol", [(jnp.float64, 1e-12), (jnp.float32, 2e-4)])
def test_adjoints_on_islands_equal_jax_ad(periodic, dtype, tol):
    grid = Grid(**GRID, periodic=periodic)
    rng = np.random.default_rng(2)
    H, bed = _islands(rng, grid.ny, grid.nx, dtype)
    _compare(grid, H, bed, _coef(dtype), rng, 0.37, tol)  # D_max's cotangent too
    _compare(grid, H, bed, _coef(dtype), rng, 0.0, tol)
    qx, qy, _ = native.faces_call(H, bed, _coef(dtype), dx=grid.dx, periodic=periodic)
    # In float32 the limiter's adjoint at the islands' fronts (every cell limited at dt = 40)
    # loses a few more digits to cancellation; the kernel did before it skipped anything.
    for dt in (0.5, 40.0):
        _check(H, qx, qy, dt, grid, 1e-12 if dtype == jnp.float64 else 1e-3, rng)


@needs_kernel
@pytest.mark.parametrize("periodic", [(False, False), (True, True)])
def test_gradient_of_a_solve_on_islands_equals_that_without_the_kernels(periodic, monkeypatch):
    """A run whose steps are sized by D_max, on islands of ice that spread and thin: the
    gradient with respect to log A and to the initial thickness with the kernels (skipping the
    ice-free ground) against the same with none."""
    grid = Grid(**GRID, periodic=periodic)
    H0, bed = _islands(np.random.default_rng(3), grid.ny, grid.nx, jnp.float64)
    check_solve_gradient(grid, H0, bed, 2300.0, monkeypatch)
