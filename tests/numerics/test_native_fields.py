"""The native face kernel and its adjoint with the law's coefficients as cell fields: Glen's law
with a field A and a field (or scalar) sliding fs, as ``glacier-invert`` runs it (invert.A=field,
invert.sliding=field), and inside a closed outline (``laws.ClosedOutline``, invert.outline=
closed). Each face takes the mean of its two cells' coefficients (the edge cell's at the
domain's edges: ``grid.cell_to_face``, as ``laws.GlenLaw.diffusivity``) times the product of
their outline weights (``grid.faces_within``: no flux across the outline). The values must
equal the laws' XLA expressions, the adjoint JAX's AD of them, and a solve's gradient with
respect to the fields that without the kernels."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glacier.grid import Grid
from glacier.laws import ClosedOutline, GlenLaw
from glacier.physics import native, sia

from ._helpers import needs_kernel
from .test_native import _case, _rel
from .test_native_adjoint import _compare, check_batched_gradient
from .test_native_ice_free import _islands

PERIODIC = [(False, False), (True, False), (False, True), (True, True)]


def _fields(rng, ny, nx, dtype, *, sliding="field"):
    """A field A about 7.6e-17 (a factor e^0.5 either way) and fs field, scalar or none."""
    A = jnp.asarray(7.6e-17 * np.exp(rng.normal(0.0, 0.5, (ny, nx))), dtype)
    fs = {"field": jnp.asarray(2e-12 * np.exp(rng.normal(0.0, 0.5, (ny, nx))), dtype),
          "scalar": jnp.asarray(2e-12, dtype), "none": 0.0}[sliding]
    return GlenLaw(A=A, fs=fs)


def _outline(ny, nx):
    """A glacier outline (0/1) that does not reach the domain's edges on two sides, with a
    notch: faces between a cell inside and one outside carry no flux."""
    mask = np.zeros((ny, nx))
    mask[2:ny - 3, 1:] = 1.0
    mask[ny // 2, nx // 3] = 0.0
    return mask


def _law_expressions(H, bed, law, grid):
    """(qx, qy, D_max) as the law's own XLA expressions (``GlenLaw.diffusivity``)."""
    return sia.fluxes(H, bed, law, grid, custom_vjp=False)


@needs_kernel
@pytest.mark.parametrize("periodic", PERIODIC)
@pytest.mark.parametrize("sliding,dtype,tol", [("field", jnp.float64, 1e-13),
                                               ("scalar", jnp.float64, 1e-13),
                                               ("none", jnp.float64, 1e-13),
                                               ("field", jnp.float32, 1e-5)])
@pytest.mark.parametrize("outline", [False, True])
def test_fluxes_with_coefficient_fields_equal_the_laws_expressions(periodic, sliding, dtype,
                                                                   tol, outline):
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        pytest.skip("float64 needs x64")
    rng = np.random.default_rng(21)
    grid = Grid(ny=17, nx=23, dx=100.0, periodic=periodic)
    H, bed = _case(rng, grid.ny, grid.nx, dtype, cliffs=True)
    law = _fields(rng, grid.ny, grid.nx, dtype, sliding=sliding)
    if outline:
        law = ClosedOutline(law, jnp.asarray(_outline(grid.ny, grid.nx), dtype))
    run = jax.jit(lambda H, law: sia.fluxes(H, bed, law, grid))
    assert native.TARGETS[np.dtype(dtype)] in run.lower(H, law).as_text()
    fast = run(H, law)
    slow = jax.jit(lambda H, law: _law_expressions(H, bed, law, grid))(H, law)
    for name, a, b in zip(("qx", "qy", "D_max"), fast, slow, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        assert _rel(a, b) <= tol, (name, _rel(a, b))
    if outline:  # nothing crosses the outline (the rows outside it hold ice)
        assert float(jnp.max(jnp.abs(fast[1][2]))) == 0.0 < float(jnp.max(jnp.abs(slow[1][3])))


@needs_kernel
def test_a_closed_outline_around_a_scalar_law_takes_the_kernel():
    """``ClosedOutline`` around Glen's law with scalar A: its coefficients become fields with
    the mask as their weight, and the fluxes equal the wrapper's expressions."""
    rng = np.random.default_rng(26)
    grid = Grid(ny=12, nx=15, dx=100.0)
    H, bed = _case(rng, grid.ny, grid.nx, jnp.float64)
    law = ClosedOutline(GlenLaw(A=7.6e-17, fs=2e-12), jnp.asarray(_outline(12, 15)))
    coef = law.native_coefficients()
    assert coef.shape == (3, 12, 15)
    np.testing.assert_array_equal(coef[2], _outline(12, 15))
    run = jax.jit(lambda H: sia.fluxes(H, bed, law, grid))
    assert native.TARGETS[np.dtype("float64")] in run.lower(H).as_text()
    slow = jax.jit(lambda H: _law_expressions(H, bed, law, grid))(H)
    for a, b in zip(run(H), slow, strict=True):
        assert _rel(a, b) <= 1e-13


def test_the_coefficient_fields_are_gamma_and_sliding_per_cell():
    A = jnp.asarray(np.linspace(1e-17, 9e-17, 12).reshape(3, 4))
    law = GlenLaw(A=A, fs=2e-12)
    coef = law.native_coefficients()
    assert coef.shape == (3, 3, 4)
    np.testing.assert_allclose(coef[0], sia.glen_gamma(A, 3.0, law.rho, law.g), rtol=1e-15)
    np.testing.assert_allclose(coef[1], 2e-12 * (law.rho * law.g) ** 3, rtol=1e-15)
    np.testing.assert_array_equal(coef[2], 1.0)  # no outline
    assert GlenLaw(A=7.6e-17).native_coefficients().shape == (2,)
    assert GlenLaw(A=A, fs=jnp.ones((4, 3))).native_coefficients() is None  # shapes differ


def _field_coef(rng, ny, nx, dtype, *, outline=True):
    """Coefficient fields with an outline weight: the mask of ``_outline``, with a few cells
    at other values than 0 and 1 so that its cotangent is tested away from a mask's values."""
    coef = _fields(rng, ny, nx, dtype).native_coefficients().astype(dtype)
    if not outline:
        return coef
    weight = _outline(ny, nx)
    weight[ny // 2, nx // 2:nx // 2 + 3] = [0.5, 0.8, 1.3]
    return coef.at[2].set(jnp.asarray(weight, dtype))


ADJOINT_CASES = ([(p, "cliffs", jnp.float64, 1e-12) for p in PERIODIC]
                 + [(PERIODIC[3], "islands", jnp.float64, 1e-12),
                    (PERIODIC[1], "islands", jnp.float32, 2e-4)])


@needs_kernel
@pytest.mark.parametrize("periodic,case,dtype,tol", ADJOINT_CASES)
def test_faces_adjoint_with_coefficient_fields_equals_jax_ad(periodic, case, dtype, tol):
    """Cotangents of H, bed and the coefficient fields (outline weight included), with
    D_max's cotangent and without (skipped), on cliffs and bedrock steps and on islands of
    ice (rows skipped)."""
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        pytest.skip("float64 needs x64")
    rng = np.random.default_rng(22)
    grid = Grid(ny=31, nx=19, dx=100.0, periodic=periodic)
    if case == "islands":
        H, bed = _islands(rng, grid.ny, grid.nx, dtype)
    else:
        H, bed = _case(rng, grid.ny, grid.nx, dtype, cliffs=True)
    coef = _field_coef(rng, grid.ny, grid.nx, dtype)
    _compare(grid, H, bed, coef, rng, 0.37, tol)
    _compare(grid, H, bed, coef, rng, 0.0, tol)


@needs_kernel
@pytest.mark.parametrize("periodic", [(False, False), (True, True)])
def test_faces_adjoint_with_coefficient_fields_at_ties(periodic):
    """A uniform slab on an inclined plane with uniform coefficient fields: every interior
    face has D_max (its cotangent shared by all, each face's share half to each cell), and
    the limiters sit at their ties; and no ice at all (zero cotangents)."""
    rng = np.random.default_rng(23)
    grid = Grid(ny=8, nx=8, dx=64.0, periodic=periodic)
    bed = jnp.asarray(np.add.outer(np.zeros(8), 16.0 * np.arange(8)))
    coef = jnp.stack([jnp.full((8, 8), 1e-10), jnp.full((8, 8), 3e-13), jnp.ones((8, 8))])
    for H in (jnp.full((8, 8), 128.0), jnp.zeros((8, 8))):
        _compare(grid, H, bed, coef, rng, 1.7, 1e-12)


@needs_kernel
def test_coefficient_fields_batch_under_vmap():
    rng = np.random.default_rng(24)
    grid = Grid(ny=9, nx=10, dx=100.0)
    H, bed = _case(rng, 9, 10, jnp.float64, cliffs=True)
    Hs = jnp.stack([H, 0.5 * H, 0.0 * H])
    coefs = jnp.stack([_field_coef(rng, 9, 10, jnp.float64) for _ in range(3)])

    check_batched_gradient(grid, bed, Hs, coefs)


@needs_kernel
@pytest.mark.parametrize("periodic", [(False, False), (True, True)])
def test_solve_gradient_with_respect_to_a_field_of_A(periodic, monkeypatch):
    """The gradient of a thickness misfit after 5 a (steps sized by D_max) with respect to a
    field log A, a field fs and H0, with the kernels, equals that without any kernel (1e-9):
    what a field inversion differentiates (in a closed outline on the non-periodic grid)."""
    from glacier.physics import mass_balance
    from glacier.schemes import ExplicitMUSCL
    from glacier.solver import Checkpointed, SaveAt, simulate

    rng = np.random.default_rng(25)
    grid = Grid(ny=24, nx=20, dx=200.0, periodic=periodic)
    H0, bed = _case(rng, grid.ny, grid.nx, jnp.float64)
    log_A = jnp.asarray(np.log(2.4e-16) + rng.normal(0.0, 0.3, (grid.ny, grid.nx)))
    fs = jnp.asarray(1e-12 * np.exp(rng.normal(0.0, 0.3, (grid.ny, grid.nx))))
    target = 0.9 * H0

    mask = jnp.asarray(_outline(grid.ny, grid.nx))

    def loss(log_A, fs, H):
        law = GlenLaw(A=jnp.exp(log_A), fs=fs)
        tr = simulate(H, bed, grid=grid, rheology=law if periodic[0] else ClosedOutline(law, mask),
                      smb=mass_balance.linear(2200.0, 0.005, max_rate=2.0),
                      save_at=SaveAt((0.0, 5.0)), scheme=ExplicitMUSCL(max_dt=1.0, max_steps=400),
                      adjoint=Checkpointed())
        return jnp.mean((tr.thickness[-1] - target) ** 2) + 1e-6 * tr.outflow_volume[-1]

    g = jax.grad(loss, argnums=(0, 1, 2))
    assert native.FACES_VJP_TARGETS[np.dtype("float64")] in jax.jit(g).lower(
        log_A, fs, H0).as_text()
    fast = jax.jit(g)(log_A, fs, H0)
    monkeypatch.setenv("GLACIER_NATIVE", "0")
    slow = jax.jit(lambda *a: g(*a))(log_A, fs, H0)
    for a, b in zip(fast, slow, strict=True):
        assert float(jnp.max(jnp.abs(b))) > 0.0
        assert _rel(a, b) <= 1e-9, _rel(a, b)


@needs_kernel
def test_gradient_of_a_scalar_law_in_a_closed_outline():
    """A scalar A and fs in a closed outline are spread over the cells by
    ``sia.coefficients_to_cells``, whose cotangent sums each field's as a matrix-vector
    product: the gradient with respect to log A, fs and H equals the law's XLA expressions'."""
    rng = np.random.default_rng(27)
    grid = Grid(ny=12, nx=15, dx=100.0)
    H, bed = _case(rng, grid.ny, grid.nx, jnp.float64)
    mask = jnp.asarray(_outline(12, 15))
    w = jnp.asarray(rng.normal(size=(12, 16)))

    def loss(log_A, fs, H, custom_vjp):
        law = ClosedOutline(GlenLaw(A=jnp.exp(log_A), fs=fs), mask)
        qx, qy, d_max = sia.fluxes(H, bed, law, grid, custom_vjp=custom_vjp)
        return jnp.sum(w * qx) + jnp.sum(qy**2) * 1e-9 + 1e-3 * d_max

    args = (jnp.log(7.6e-17), jnp.asarray(2e-12), H)
    fast = jax.jit(jax.grad(lambda *a: loss(*a, True), argnums=(0, 1, 2)))(*args)
    slow = jax.jit(jax.grad(lambda *a: loss(*a, False), argnums=(0, 1, 2)))(*args)
    for a, b in zip(fast, slow, strict=True):
        assert _rel(a, b) <= 1e-12, _rel(a, b)
