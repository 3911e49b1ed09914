"""The adjoint of the native limiter kernel (``native.limit_vjp_call``, sia_limit_adjoint.cc)
against ``jax.vjp`` of the XLA expressions it differentiates (``sia.limit_outflow``,
``sia.flux_divergence``, ``sia.edge_outflow``), kinks included: there the kernel must take the
one-sided derivatives of JAX's AD (half to each argument of a tied min or max)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glacier.grid import Grid
from glacier.physics import native, sia

from ._helpers import needs_kernel

PERIODIC = [(False, False), (True, False), (False, True), (True, True)]


def reference(H, qx, qy, dt, grid):
    lx, ly = sia.limit_outflow(H, qx, qy, dt, grid)
    return sia.flux_divergence(lx, ly, grid.dx), sia.edge_outflow(lx, ly)


@functools.partial(jax.jit, static_argnames="grid")
def _xla_vjp(H, qx, qy, dt, ct_div, ct_edge, grid):
    _, vjp = jax.vjp(lambda *a: reference(*a, grid), H, qx, qy, dt)
    return vjp((ct_div, ct_edge))


@functools.partial(jax.jit, static_argnames="grid")
def _native_vjp(H, qx, qy, dt, ct_div, ct_edge, grid):
    return native.limit_vjp_call(H, qx, qy, dt, ct_div, ct_edge, dx=grid.dx,
                                 periodic=grid.periodic)


def _rel(a, b):
    """The largest error of ``a`` relative to ``|b| + t``, elementwise (t: the median size of
    b's nonzero entries, for entries that cancel to about zero). Elementwise, because the
    cotangents of cells at the floor (H / 1e-30) would hide every other error behind a scale
    taken over the whole array."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mag = np.abs(b)
    typical = float(np.median(mag[mag > 0])) if np.any(mag > 0) else 1.0
    return float(np.max(np.abs(a - b) / (mag + typical)))


def _check(H, qx, qy, dt, grid, tol, rng):
    """Both VJPs for random cotangents of div and edge; returns (native, XLA)."""
    dtype = H.dtype
    ct_div = jnp.asarray(rng.normal(size=H.shape), dtype)
    ct_edge = jnp.asarray(rng.normal(), dtype)
    dt = jnp.asarray(dt, dtype)
    fast = _native_vjp(H, qx, qy, dt, ct_div, ct_edge, grid)
    slow = _xla_vjp(H, qx, qy, dt, ct_div, ct_edge, grid)
    for name, a, b in zip(("ct_H", "ct_qx", "ct_qy", "ct_dt"), fast, slow, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        assert np.all(np.isfinite(np.asarray(a))), name
        assert _rel(a, b) <= tol, (name, _rel(a, b))
    return fast, slow


def _random_case(rng, ny, nx, dtype, *, bare=False):
    """Thickness with bare cells and fluxes of both signs; with ``bare``, an ice-free region
    whose fluxes are exactly zero (the kinks of max(q, 0) at q == 0)."""
    H = np.maximum(rng.normal(100.0, 80.0, (ny, nx)), 0.0)
    qx = rng.normal(0.0, 400.0, (ny, nx + 1))
    qy = rng.normal(0.0, 400.0, (ny + 1, nx))
    if bare:
        H[:, nx // 2:] = 0.0
        qx[:, nx // 2:] = 0.0  # faces of the bare cells (and the one into them)
        qy[:, nx // 2:] = 0.0
        qx[ny // 3, :] = 0.0  # a row of zero x-fluxes across the ice
        qy[:, 1] = 0.0
    return tuple(jnp.asarray(a, dtype) for a in (H, qx, qy))


def _limited_share(H, qx, qy, dt, grid):
    """The share of the cells whose factor is below 1 (the limiter active)."""
    out = (jnp.maximum(qx[:, 1:], 0.0) + jnp.maximum(-qx[:, :-1], 0.0)
           + jnp.maximum(qy[1:, :], 0.0) + jnp.maximum(-qy[:-1, :], 0.0)) * (dt / grid.dx)
    return float(jnp.mean(H < out))


@needs_kernel
@pytest.mark.parametrize("periodic", PERIODIC)
@pytest.mark.parametrize("dtype,tol", [(jnp.float64, 1e-12), (jnp.float32, 1e-5)])
def test_the_adjoint_is_jaxs_vjp(periodic, dtype, tol):
    """Random thickness and fluxes of both signs, and a bare region whose fluxes are zero."""
    rng = np.random.default_rng(11)
    grid = Grid(ny=13, nx=19, dx=100.0, periodic=periodic)
    H, qx, qy = _random_case(rng, grid.ny, grid.nx, dtype, bare=True)
    dt = 25.0
    share = _limited_share(H, qx, qy, jnp.asarray(dt, dtype), grid)
    assert 0.2 < share < 0.8  # the limiter on in part of the cells, off in the rest
    _check(H, qx, qy, dt, grid, tol, rng)


@needs_kernel
@pytest.mark.parametrize("periodic", PERIODIC)
@pytest.mark.parametrize("dtype,tol", [(jnp.float64, 1e-12), (jnp.float32, 1e-5)])
def test_the_ties_take_half(periodic, dtype, tol):
    """Exact kinks: H / out == 1 (powers of two throughout, so out == H exactly), out == 0
    (all fluxes zero: max(out, floor) takes the floor) and zero fluxes (max(q, 0) tied)."""
    grid = Grid(ny=6, nx=8, dx=4.0, periodic=periodic)
    ny, nx = grid.ny, grid.nx
    qx = np.zeros((ny, nx + 1))
    qy = np.zeros((ny + 1, nx))
    qx[0:3, :] = 8.0  # rows 0-2: each cell sends 8 out through its right face
    qx[3, 4:] = -16.0  # row 3, right half: towards -x
    qy[4, 1:4] = 2.0  # cells (3, 1..3) send 2 up, the cells above take it
    qy[5, 5] = -4.0
    dt = 0.5  # out = q * dt / dx = q / 8
    H = np.full((ny, nx), 3.0)
    H[0, :] = 1.0  # out == 1 == H: the ratio is exactly 1
    H[1, ::2] = 0.5  # ratio 1/2: limited
    H[2, 1::2] = 1.0  # ratio 1 again, next to ratios 3
    H[3, 1:4] = 0.25  # out = 2 / 8 == H: ratio 1 with a y-flux
    H[3, 4:] = 2.0  # out = 16 / 8 == H: ratio 1 with a flux towards -x
    H[4, :] = 0.0  # bare cells whose fluxes are all zero: max(out, floor) == floor
    H[5, 2] = 0.0
    fast, slow = _check(*(jnp.asarray(a, dtype) for a in (H, qx, qy)), dt, grid, tol,
                        np.random.default_rng(2))
    # Not vacuous: the ratio-1 cells of row 0 do pass (half of) their factors' cotangents on
    # to H, which the comparison above has checked.
    assert float(jnp.max(jnp.abs(fast[0][0]))) > 0.0


@needs_kernel
@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_below_the_floor_and_the_floor_itself(dtype):
    """Outflows below the floor (and exactly at it): m = max(out, floor) takes the floor and
    the ratio H / floor is finite; a cell with H = 0 and some outflow has ratio 0."""
    floor = 1e-30 if dtype == jnp.float64 else 1e-6
    grid = Grid(ny=4, nx=5, dx=1.0)
    qx = np.zeros((4, 6))
    qy = np.zeros((5, 5))
    qx[1, 2] = floor / 4  # out = floor / 4 (dt = dx = 1): below the floor
    qx[2, 3] = floor  # exactly at the floor: half weights
    qx[3, 1] = -3.0
    H = np.zeros((4, 5))
    H[1, 1] = floor / 8  # ratio 1/8 of the floor
    H[2, 2] = floor  # ratio 1 and out == floor: two ties in one cell
    H[0, :] = 1e-3
    args = tuple(jnp.asarray(a, dtype) for a in (H, qx, qy))
    _check(*args, 1.0, grid, 1e-12 if dtype == jnp.float64 else 1e-5,
           np.random.default_rng(3))


@needs_kernel
def test_a_batch_under_vmap():
    rng = np.random.default_rng(5)
    grid = Grid(ny=9, nx=7, dx=50.0, periodic=(True, False))
    cases = [_random_case(rng, grid.ny, grid.nx, jnp.float64, bare=b) for b in (False, True,
                                                                              False)]
    H, qx, qy = (jnp.stack(a) for a in zip(*cases, strict=True))
    dt = jnp.asarray([10.0, 0.01, 40.0])
    ct_div = jnp.asarray(rng.normal(size=H.shape))
    ct_edge = jnp.asarray(rng.normal(size=3))
    fast = jax.jit(jax.vmap(lambda *a: native.limit_vjp_call(
        *a, dx=grid.dx, periodic=grid.periodic)))(H, qx, qy, dt, ct_div, ct_edge)
    slow = jax.jit(jax.vmap(lambda *a: _xla_vjp(*a, grid)))(H, qx, qy, dt, ct_div, ct_edge)
    for a, b in zip(fast, slow, strict=True):
        assert a.shape == b.shape
        for k in range(3):  # each glacier on its own scale
            assert _rel(a[k], b[k]) <= 1e-12
    # A scalar shared by the batch (ct_edge unbatched) is broadcast to it.
    one = jax.jit(jax.vmap(lambda H, qx, qy, dt, c: native.limit_vjp_call(
        H, qx, qy, dt, c, ct_edge[0], dx=grid.dx, periodic=grid.periodic)))(
        H, qx, qy, dt, ct_div)
    ref = jax.jit(jax.vmap(lambda H, qx, qy, dt, c: _xla_vjp(H, qx, qy, dt, c, ct_edge[0],
                                                            grid)))(H, qx, qy, dt, ct_div)
    for a, b in zip(one, ref, strict=True):
        assert _rel(a, b) <= 1e-12


@needs_kernel
def test_gradients_through_limited_divergence(monkeypatch):
    """``sia.limited_divergence`` in reverse mode: the adjoint kernel (default) gives the
    gradient of the XLA expressions' VJP (``GLACIER_NATIVE_VJP=0``), and the kernel is in the
    program."""
    rng = np.random.default_rng(7)
    grid = Grid(ny=11, nx=10, dx=100.0, periodic=(False, True))
    H, qx, qy = _random_case(rng, grid.ny, grid.nx, jnp.float64, bare=True)
    dt = jnp.asarray(25.0)
    w = jnp.asarray(rng.normal(size=H.shape))

    def loss(H, qx, qy, dt):
        div, edge = sia.limited_divergence(H, qx, qy, dt, grid)
        return jnp.sum(w * div) + jnp.sum(jnp.sin(div)) + 0.3 * edge

    # Three glaciers under vmap: the second with a step that leaves the limiter off.
    batch = (jnp.stack([H, 0.5 * H, H[::-1]]), jnp.stack([qx, qx, -qx]),
             jnp.stack([qy, -qy, qy]), jnp.asarray([25.0, 1e-3, 60.0]))

    def grad():  # fresh traces: the switch is read when tracing
        g = jax.jit(lambda *a: jax.grad(loss, argnums=(0, 1, 2, 3))(*a))
        gb = jax.jit(jax.vmap(lambda *a: jax.grad(loss, argnums=(0, 1, 2, 3))(*a)))
        return g(H, qx, qy, dt), gb(*batch), g.lower(H, qx, qy, dt).as_text()

    target = native.LIMIT_VJP_TARGETS[np.dtype("float64")]
    monkeypatch.delenv("GLACIER_NATIVE_VJP", raising=False)
    fast, fast_batch, hlo = grad()
    assert target in hlo
    monkeypatch.setenv("GLACIER_NATIVE_VJP", "0")
    slow, slow_batch, hlo = grad()
    assert target not in hlo
    for name, a, b in zip(("H", "qx", "qy", "dt"), fast, slow, strict=True):
        assert _rel(a, b) <= 1e-12, (name, _rel(a, b))
    for name, a, b in zip(("H", "qx", "qy", "dt"), fast_batch, slow_batch, strict=True):
        assert a.shape == b.shape and a.shape[0] == 3, name
        assert max(_rel(a[k], b[k]) for k in range(3)) <= 1e-12, name
