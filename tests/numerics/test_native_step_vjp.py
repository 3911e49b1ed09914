"""The fused adjoint of the limiter and the step's end (``native.limit_update_vjp_call``,
sia_limit_adjoint.cc; ``sia.limited_step_end``) against ``jax.vjp`` of the XLA expressions it
differentiates: the outflow limiter, the flux divergence and edge outflow, then
H_new = max(H - dt div + dt b, 0) with the applied balance and the emptied ice-free cells.
The adjoint remakes div q row by row; its kinks are JAX's (half to each side of a tie, as at
a bare cell whose balance is 0: H_flow + dt b = 0 exactly)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glacier.grid import Grid
from glacier.physics import native, sia

from ._helpers import needs_kernel
from .test_native_limit_vjp import PERIODIC, _random_case, _rel

NAMES = ("ct_H", "ct_qx", "ct_qy", "ct_dt", "ct_b", "ct_ice_free")


def reference(H, qx, qy, dt, b, ice_free, grid):
    """The XLA expressions: (H_new, applied, removed, edge outflow)."""
    lx, ly = sia.limit_outflow(H, qx, qy, dt, grid)
    div, edge = sia.flux_divergence(lx, ly, grid.dx), sia.edge_outflow(lx, ly)
    return (*sia.step_end(H, div, dt, b, ice_free, custom_vjp=False), edge)


@functools.partial(jax.jit, static_argnames=("grid", "masked"))
def _xla_vjp(H, qx, qy, dt, b, ice_free, cts, grid, masked):
    if masked:
        _, vjp = jax.vjp(lambda *a: reference(*a, grid), H, qx, qy, dt, b, ice_free)
        return vjp(cts)
    _, vjp = jax.vjp(lambda *a: reference(*a, None, grid), H, qx, qy, dt, b)
    return (*vjp(cts), jnp.zeros_like(H))


@functools.partial(jax.jit, static_argnames=("grid", "masked"))
def _native_vjp(H, qx, qy, dt, b, ice_free, cts, grid, masked):
    ct_out, ct_applied, ct_removed, ct_edge = cts
    return native.limit_update_vjp_call(H, qx, qy, dt, b, ice_free if masked else None,
                                        ct_edge, ct_out, ct_applied, ct_removed, dx=grid.dx,
                                        periodic=grid.periodic)


def _case(rng, grid, dtype):
    """Ice with bare ground (zero fluxes there), a balance that builds ice on some bare cells,
    leaves others at exactly 0 (the tie of max(x, 0)) and ablates the rest, and the outer
    ring held ice-free."""
    H, qx, qy = _random_case(rng, grid.ny, grid.nx, dtype, bare=True)
    b = rng.normal(0.0, 2.0, H.shape)
    b[:, grid.nx // 2 + 1::3] = 0.0  # bare, no flux, no balance: x = 0 exactly
    ring = np.ones(H.shape)
    ring[1:-1, 1:-1] = 0.0
    return H, qx, qy, jnp.asarray(b, dtype), jnp.asarray(ring, dtype)


def _cotangents(rng, H):
    dtype = H.dtype
    return (jnp.asarray(rng.normal(size=H.shape), dtype), jnp.asarray(rng.normal(), dtype),
            jnp.asarray(rng.normal(), dtype), jnp.asarray(rng.normal(), dtype))


@needs_kernel
@pytest.mark.parametrize("masked", [True, False], ids=["ice_free", "no_ice_free"])
@pytest.mark.parametrize("periodic", PERIODIC)
@pytest.mark.parametrize("dtype,tol", [(jnp.float64, 1e-12), (jnp.float32, 1e-5)])
def test_the_fused_adjoint_is_jaxs_vjp(masked, periodic, dtype, tol):
    rng = np.random.default_rng(11)
    grid = Grid(ny=13, nx=17, dx=100.0, periodic=periodic)
    H, qx, qy, b, ring = _case(rng, grid, dtype)
    for dt in (0.05, 40.0):  # the limiter off, then on for most cells
        dt = jnp.asarray(dt, dtype)
        cts = _cotangents(rng, H)
        fast = _native_vjp(H, qx, qy, dt, b, ring, cts, grid, masked)
        slow = _xla_vjp(H, qx, qy, dt, b, ring, cts, grid, masked)
        compared = len(NAMES) if masked else len(NAMES) - 1
        for name, a, c in zip(NAMES[:compared], fast, slow, strict=False):
            assert a.shape == c.shape and a.dtype == c.dtype, name
            assert np.all(np.isfinite(np.asarray(a))), name
            assert _rel(a, c) <= tol, (name, float(dt), _rel(a, c))
        if not masked:  # no ice-free field: a (1, 1) zero stands for its cotangent
            assert fast[5].shape == (1, 1) and not np.any(np.asarray(fast[5]))
        # a tie of max(x, 0) at the zero-balance bare cells: half of the cotangent
        x = H - dt * 0.0 + dt * b  # no flux there
        tied = np.asarray((x == 0) & (H == 0) & (ring == 0))
        assert tied.any()


def _ice_cap(grid, dtype):
    """A cap of ice on a sloping bed inside a bare margin, its fluxes from the face kernel
    (none leaves a cell without ice), a balance that builds, ablates and ties at 0."""
    y, x = np.mgrid[0:grid.ny, 0:grid.nx]
    r2 = ((y - grid.ny / 2) / (grid.ny / 3)) ** 2 + ((x - grid.nx / 2) / (grid.nx / 3)) ** 2
    H = jnp.asarray(np.maximum(0.0, 150.0 * (1.0 - r2)), dtype)
    bed = jnp.asarray(1000.0 + 8.0 * x + 3.0 * y, dtype)
    coef = jnp.asarray([sia.glen_gamma(2.4e-24 * 3.15e7, 3.0, 910.0, 9.81), 0.0], dtype)
    qx, qy, _ = native.faces_call(H, bed, coef, dx=grid.dx, periodic=grid.periodic)
    b = np.where(np.asarray(H) > 0, np.linspace(-2.0, 2.0, grid.nx)[None, :], 0.5)
    b[0, :] = 0.0  # bare, no flux, no balance: the tie of max(x, 0)
    return H, qx, qy, jnp.asarray(b, dtype)


@needs_kernel
@pytest.mark.parametrize("periodic", PERIODIC)
def test_the_fused_adjoint_with_and_without_limited_cells(periodic):
    """With the face kernel's fluxes and a step that limits no cell (the common case) the
    fused adjoint skips the factors' cotangents (``sia_limit_adjoint.cc``, pass A); with a
    step long enough to limit the margin's thin cells it takes them. JAX's VJP either way."""
    rng = np.random.default_rng(3)
    grid = Grid(ny=15, nx=18, dx=200.0, periodic=periodic)
    H, qx, qy, b = _ice_cap(grid, jnp.float64)
    ring = jnp.zeros_like(H).at[:, 0].set(1.0)
    out = (jnp.maximum(qx[:, 1:], 0.0) + jnp.maximum(-qx[:, :-1], 0.0)
           + jnp.maximum(qy[1:, :], 0.0) + jnp.maximum(-qy[:-1, :], 0.0)) / grid.dx
    assert not np.any(np.asarray((H == 0) & (out > 0)))  # no flux leaves a bare cell
    small = 0.5 * float(jnp.min(jnp.where(H > 0, H / jnp.maximum(out, 1e-30), jnp.inf)))
    for dt, limited in ((small, False), (200.0 * small, True)):
        assert bool(jnp.any((H > 0) & (H <= out * dt))) == limited
        dt = jnp.asarray(dt)
        for masked in (True, False):
            cts = _cotangents(rng, H)
            fast = _native_vjp(H, qx, qy, dt, b, ring, cts, grid, masked)
            slow = _xla_vjp(H, qx, qy, dt, b, ring, cts, grid, masked)
            compared = len(NAMES) if masked else len(NAMES) - 1
            for name, a, c in zip(NAMES[:compared], fast, slow, strict=False):
                assert np.all(np.isfinite(np.asarray(a))), name
                assert _rel(a, c) <= 1e-12, (name, limited, masked, _rel(a, c))


@needs_kernel
@pytest.mark.parametrize("masked", [True, False], ids=["ice_free", "no_ice_free"])
def test_values_and_a_batch(masked):
    """The forward values are the two kernels' (equal to the XLA expressions to round-off),
    and under ``vmap`` each glacier of a batch gets its own adjoint."""
    rng = np.random.default_rng(5)
    grid = Grid(ny=9, nx=12, dx=50.0, periodic=(False, False))
    cases = [_case(rng, grid, jnp.float64) for _ in range(3)]
    dts = jnp.asarray([0.5, 30.0, 1e-3])
    free = (lambda r: r) if masked else (lambda r: None)

    def run(H, qx, qy, dt, b, ring):
        return native.limited_step_end_native(
            H, qx, qy, dt, b, free(ring), lambda *a: reference(*a, grid), dx=grid.dx,
            periodic=grid.periodic)

    H, qx, qy, b, ring = cases[0]
    got = run(H, qx, qy, dts[0], b, ring)
    want = reference(H, qx, qy, dts[0], b, free(ring), grid)
    for a, c in zip(got, want, strict=True):
        np.testing.assert_allclose(a, c, rtol=1e-13, atol=1e-10)
    stacked = [jnp.stack(parts) for parts in zip(*cases, strict=True)]
    H, qx, qy, b, ring = stacked

    def loss(H, qx, qy, dt, b, ring):
        H_new, applied, removed, edge = run(H, qx, qy, dt, b, ring)
        return jnp.sum(jnp.sin(H_new)) + 0.3 * applied - 0.7 * removed + 1e-3 * edge

    grads = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1, 2, 3, 4))))(H, qx, qy, dts, b, ring)
    for k in range(3):
        one = jax.grad(loss, argnums=(0, 1, 2, 3, 4))(H[k], qx[k], qy[k], dts[k], b[k], ring[k])
        for a, c in zip(grads, one, strict=True):
            np.testing.assert_array_equal(a[k], c)


@needs_kernel
def test_gradients_through_limited_step_end(monkeypatch):
    """``sia.limited_step_end`` in reverse mode: the fused kernel (default, in the program)
    gives the gradient of the XLA expressions' VJP (``GLACIER_NATIVE_VJP=0``)."""
    rng = np.random.default_rng(3)
    grid = Grid(ny=11, nx=10, dx=100.0, periodic=(False, True))
    H, qx, qy, b, ring = _case(rng, grid, jnp.float64)
    dt = jnp.asarray(25.0)
    w = jnp.asarray(rng.normal(size=H.shape))

    def loss(H, qx, qy, dt, b):
        H_new, applied, removed, edge = sia.limited_step_end(H, qx, qy, dt, b, ring, grid)
        return jnp.sum(w * H_new ** 2) + applied + 2.0 * removed + 0.3 * edge

    def grad():  # fresh traces: the switch is read when tracing
        g = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3, 4)))
        return g(H, qx, qy, dt, b), g.lower(H, qx, qy, dt, b).as_text()

    target = native.LIMIT_UPDATE_VJP_TARGETS[np.dtype("float64")]
    monkeypatch.delenv("GLACIER_NATIVE_VJP", raising=False)
    fast, hlo = grad()
    assert target in hlo
    monkeypatch.setenv("GLACIER_NATIVE_VJP", "0")
    slow, hlo = grad()
    assert target not in hlo
    for name, a, c in zip(("H", "qx", "qy", "dt", "b"), fast, slow, strict=True):
        assert _rel(a, c) <= 1e-12, (name, _rel(a, c))


@needs_kernel
def test_a_traced_ice_free_field_in_a_checkpointed_loop():
    """The ice-free field an argument of the compiled program (as a padded batch of glaciers
    passes it), the step in a checkpointed scan: the adjoint takes the field from its
    residuals, not from the enclosing trace (a closure over it leaked a tracer)."""
    rng = np.random.default_rng(2)
    grid = Grid(ny=8, nx=9, dx=100.0, periodic=(False, False))
    H, qx, qy, b, ring = _case(rng, grid, jnp.float64)

    def loss(H, ring):
        def step(H, _):
            H_new, applied, removed, edge = sia.limited_step_end(
                H, qx, qy, jnp.asarray(0.5), b, ring, grid)
            return H_new, applied + removed + edge
        H_end, books = jax.lax.scan(jax.checkpoint(step), H, None, length=3)
        return jnp.sum(H_end ** 2) + jnp.sum(books)

    fast = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1))))(jnp.stack([H, H]),
                                                             jnp.stack([ring, ring]))
    slow = jax.grad(lambda H, r: loss(H, r), argnums=(0, 1))(H, ring)
    for a, c in zip(fast, slow, strict=True):
        np.testing.assert_allclose(a[1], c, rtol=1e-12, atol=1e-12)
