"""The adjoint kernel of the native face fluxes (``sia_faces_adjoint.cc``) against JAX's AD of
the XLA expressions, and the gradients of a solve with both adjoint kernels against those
without the kernels."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glacier.grid import Grid
from glacier.laws import GlenLaw
from glacier.physics import native, sia

from ._helpers import needs_kernel
from .test_native import _case

PERIODIC = [(False, False), (True, False), (False, True), (True, True)]


def _reference(grid):
    """(qx, qy, D_max) as XLA expressions, differentiated by JAX's own AD (not the hand-derived
    adjoint of ``physics.faces_adjoint``: an independent reference)."""
    def fluxes(H, bed, coef):
        (Hx, s2x, gx), (Hy, s2y, gy) = sia.face_states(H, bed, grid, custom_vjp=False)
        Dx = sia.coef_diffusivity(Hx, s2x, coef, 1)
        Dy = sia.coef_diffusivity(Hy, s2y, coef, 0)
        return -Dx * gx, -Dy * gy, jnp.maximum(jnp.max(Dx), jnp.max(Dy))
    return fluxes


def _coef(dtype):
    return jnp.asarray([float(sia.glen_gamma(7.6e-17, 3.0, 910.0, 9.81)),
                        2e-12 * (910.0 * 9.81) ** 3], dtype)


def _compare(grid, H, bed, coef, rng, ct_dmax, tol):
    shapes = jax.eval_shape(_reference(grid), H, bed, coef)
    cts = (jnp.asarray(rng.normal(size=shapes[0].shape), H.dtype),
           jnp.asarray(rng.normal(size=shapes[1].shape), H.dtype), jnp.asarray(ct_dmax, H.dtype))

    @jax.jit  # one program: op by op, every new shape compiles each of its operations
    def reference(H, bed, coef, cts):
        out, vjp = jax.vjp(_reference(grid), H, bed, coef)
        return out, vjp(cts)

    out, want = reference(H, bed, coef, cts)
    got = jax.jit(lambda *a: native.faces_vjp_call(*a, dx=grid.dx, periodic=grid.periodic))(
        H, bed, coef, out[2], *cts)
    for name, a, b in zip(("H", "bed", "coef"), got, want, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        scale = float(jnp.max(jnp.abs(b)))  # plus round-off where the cotangent is all but 0
        assert float(jnp.max(jnp.abs(a - b))) <= tol * scale + 1e-14, (name, a, b)


@needs_kernel
@pytest.mark.parametrize("periodic", PERIODIC)
@pytest.mark.parametrize("cliffs", [False, True])
@pytest.mark.parametrize("dtype,tol", [(jnp.float64, 1e-12), (jnp.float32, 2e-4)])
def test_faces_adjoint_equals_jax_ad(periodic, cliffs, dtype, tol):
    rng = np.random.default_rng(11)
    grid = Grid(ny=13, nx=17, dx=100.0, periodic=periodic)
    H, bed = _case(rng, grid.ny, grid.nx, dtype, cliffs=cliffs)
    _compare(grid, H, bed, _coef(dtype), rng, 0.37, tol)
    _compare(grid, H, bed, _coef(dtype), rng, 0.0, tol)  # D_max's cotangent zero: skipped


@needs_kernel
@pytest.mark.parametrize("periodic", [(False, False), (True, True)])
@pytest.mark.parametrize("kind", ["plane", "flat", "bare", "ratios"])
def test_faces_adjoint_at_ties(periodic, kind):
    """Kinks everywhere: a uniform slab on an inclined plane (every interior face has D_max:
    its cotangent shared by all, and the limiters at their ties), on a flat bed (zero slopes:
    the upwind switch at g = 0), no ice at all, and thickness steps of 1, 2 and 4 m along both
    axes (superbee's ties at |a| / |b| = 1/2, 1 and 2, the MC limiter's between its centred
    and one-sided slopes)."""
    rng = np.random.default_rng(12)
    grid = Grid(ny=8, nx=8, dx=64.0, periodic=periodic)
    if kind == "ratios":
        steps = np.cumsum([0.0, 1.0, 2.0, 4.0, 2.0, 1.0, 1.0, 2.0])
        H = jnp.asarray(128.0 + np.add.outer(steps, 2.0 * steps))
    else:
        H = jnp.zeros((8, 8)) if kind == "bare" else jnp.full((8, 8), 128.0)
    plane = np.add.outer(np.zeros(8), 16.0 * np.arange(8))
    bed = jnp.asarray(plane if kind == "plane" else np.zeros((8, 8)))
    _compare(grid, H, bed, jnp.asarray([1e-10, 3e-13]), rng, 1.7, 1e-12)


@needs_kernel
def test_faces_adjoint_batches_under_vmap():
    rng = np.random.default_rng(13)
    grid = Grid(ny=9, nx=10, dx=100.0)
    H, bed = _case(rng, 9, 10, jnp.float64, cliffs=True)
    Hs = jnp.stack([H, 0.5 * H, 0.0 * H])
    coefs = jnp.stack([_coef(jnp.float64), 2.0 * _coef(jnp.float64), _coef(jnp.float64)])
    check_batched_gradient(grid, bed, Hs, coefs)


class _Law:
    """Glen's n = 3 law given by its native coefficients (a traced array), for the tests."""

    def __init__(self, coef):
        self.coef = coef

    def native_coefficients(self):
        return self.coef

    def diffusivity(self, H, slope2, axis):
        return sia.coef_diffusivity(H, slope2, self.coef, axis)


def check_batched_gradient(grid, bed, Hs, coefs):
    """Under ``vmap``, the gradient with respect to H and the coefficients (scalars or cell
    fields) of a loss of the fluxes through the adjoint kernel equals JAX's AD of the XLA
    expressions (1e-12)."""
    def loss(H, coef):
        qx, qy, d_max = sia.fluxes(H, bed, _Law(coef), grid)
        return jnp.sum(qx * jnp.arange(qx.size).reshape(qx.shape)) + jnp.sum(qy**2) + d_max

    fast = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1))))(Hs, coefs)
    ref = jax.jit(jax.vmap(jax.grad(lambda H, c: _ref_loss(grid, bed, H, c),
                                    argnums=(0, 1))))(Hs, coefs)
    for a, b in zip(fast, ref, strict=True):
        assert a.shape == b.shape
        assert float(jnp.max(jnp.abs(a - b))) <= 1e-12 * (float(jnp.max(jnp.abs(b))) or 1.0)


def _ref_loss(grid, bed, H, coef):
    qx, qy, d_max = _reference(grid)(H, bed, coef)
    return jnp.sum(qx * jnp.arange(qx.size).reshape(qx.shape)) + jnp.sum(qy**2) + d_max


@needs_kernel
def test_the_adjoint_kernels_run_in_a_gradient_and_can_be_switched_off(monkeypatch):
    grid = Grid(ny=10, nx=11, dx=100.0)
    H, bed = _case(np.random.default_rng(14), 10, 11, jnp.float64)

    def loss(H, logA):
        qx, qy, d_max = sia.fluxes(H, bed, GlenLaw(A=jnp.exp(logA)), grid)
        div, edge = sia.limited_divergence(H, qx, qy, jnp.asarray(0.5), grid)
        return jnp.sum(div**2) + edge + 1e-3 * d_max

    g = jax.grad(loss, argnums=(0, 1))
    hlo = jax.jit(g).lower(H, jnp.log(7.6e-17)).as_text()
    assert "glacier_sia_faces_vjp" in hlo and "glacier_sia_limit_vjp" in hlo
    fast = jax.jit(g)(H, jnp.log(7.6e-17))
    monkeypatch.setenv("GLACIER_NATIVE_VJP", "0")
    hlo = jax.jit(lambda *a: g(*a)).lower(H, jnp.log(7.6e-17)).as_text()
    assert "_vjp" not in hlo and "glacier_sia_faces" in hlo
    slow = jax.jit(lambda *a: g(*a))(H, jnp.log(7.6e-17))
    assert float(jnp.max(jnp.abs(fast[0] - slow[0]))) <= 1e-12 * float(jnp.max(jnp.abs(slow[0])))
    assert abs(float(fast[1] - slow[1])) <= 1e-12 * abs(float(slow[1]))


@needs_kernel
@pytest.mark.parametrize("periodic", [(False, False), (True, True)])
def test_gradient_of_a_solve_equals_that_without_the_kernels(periodic, monkeypatch):
    """Reverse mode through a run of the explicit scheme whose steps are sized by D_max (its
    cotangent is not zero), with the outflow limiter active at the glacier's front: the
    gradient with respect to log A and to the initial thickness, with both adjoint kernels,
    against the same without any kernel."""
    grid = Grid(ny=14, nx=18, dx=200.0, periodic=periodic)
    X, Y = grid.meshgrid()
    bed = 3000.0 - 0.08 * X + 20.0 * jnp.sin(Y / 700.0)
    H0 = jnp.where((X > 800.0) & (X < 2600.0), 150.0 + 0.01 * X, 0.0) + 0.0 * Y
    check_solve_gradient(grid, H0, bed, 2900.0, monkeypatch)


def check_solve_gradient(grid, H0, bed, ela, monkeypatch):
    """The gradient of a thickness misfit after 5 a (steps sized by D_max) with respect to
    log A and H0, with the kernels, equals that without any kernel (1e-9)."""
    from glacier.physics import mass_balance
    from glacier.schemes import ExplicitMUSCL
    from glacier.solver import Checkpointed, SaveAt, simulate

    target = 0.9 * H0

    def loss(logA, H):
        tr = simulate(H, bed, grid=grid, rheology=GlenLaw(A=jnp.exp(logA)),
                      smb=mass_balance.linear(ela, 0.005, max_rate=2.0),
                      save_at=SaveAt((0.0, 5.0)), scheme=ExplicitMUSCL(max_dt=1.0, max_steps=400),
                      adjoint=Checkpointed())
        return jnp.mean((tr.thickness[-1] - target) ** 2) + 1e-6 * tr.outflow_volume[-1]

    args = (jnp.log(2.4e-16), H0)
    g = jax.grad(loss, argnums=(0, 1))
    fast = jax.jit(g)(*args)
    monkeypatch.setenv("GLACIER_NATIVE", "0")
    slow = jax.jit(lambda *a: g(*a))(*args)
    assert abs(float(fast[0] - slow[0])) <= 1e-9 * abs(float(slow[0]))
    assert float(jnp.max(jnp.abs(fast[1] - slow[1]))) <= 1e-9 * float(jnp.max(jnp.abs(slow[1])))


@needs_kernel
@pytest.mark.parametrize("dtype,tol", [(jnp.float64, 1e-12), (jnp.float32, 2e-4)])
def test_fluxes_through_add_the_thicknesss_other_cotangents_in_the_kernel(dtype, tol):
    """``sia.fluxes(through=True)`` hands the thickness on for the step's other uses; their
    cotangent reaches the adjoint kernel as an input that it adds (in place) to its own. The
    gradient of a function that uses the fluxes and the handed-on thickness equals JAX's AD
    of the XLA expressions, under vmap too; the kernel adds what it is given."""
    rng = np.random.default_rng(5)
    grid = Grid(ny=11, nx=14, dx=100.0, periodic=(False, True))
    H, bed = _case(rng, grid.ny, grid.nx, dtype, cliffs=True)
    law = GlenLaw(A=jnp.asarray(7.6e-17, dtype), fs=jnp.asarray(2e-12, dtype))
    wx = jnp.asarray(rng.normal(size=(grid.ny, grid.nx + 1)), dtype)
    wy = jnp.asarray(rng.normal(size=(grid.ny + 1, grid.nx)), dtype)
    wh = jnp.asarray(rng.normal(size=(grid.ny, grid.nx)), dtype)

    def loss(H, bed, custom_vjp):
        qx, qy, dmax, Hn = sia.fluxes(H, bed, law, grid, custom_vjp=custom_vjp, through=True)
        return jnp.sum(wx * qx) + jnp.sum(wy * qy) + 0.3 * dmax + jnp.sum(wh * Hn ** 2)

    want = jax.grad(loss, argnums=(0, 1))(H, bed, False)
    got = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)(H, bed, True)
    for a, b in zip(got, want, strict=True):
        assert float(jnp.max(jnp.abs(a - b))) <= tol * float(jnp.max(jnp.abs(b))) + 1e-14
    batched = jax.vmap(jax.grad(loss), in_axes=(0, 0, None))(jnp.stack([H, 0.5 * H]),
                                                              jnp.stack([bed, bed]), True)
    single = jax.grad(loss)(0.5 * H, bed, False)
    assert float(jnp.max(jnp.abs(batched[1] - single))) <= tol * float(
        jnp.max(jnp.abs(single))) + 1e-14
    coef = _coef(dtype)
    out = native.faces_call(H, bed, coef, dx=grid.dx, periodic=grid.periodic)
    cts = (wx, wy, jnp.asarray(0.3, dtype))
    alone = native.faces_vjp_call(H, bed, coef, out[2], *cts, dx=grid.dx,
                                  periodic=grid.periodic)
    added = jax.jit(lambda extra: native.faces_vjp_call(
        H, bed, coef, out[2], *cts, extra, dx=grid.dx, periodic=grid.periodic))(wh)
    # the kernel starts from the input and adds its own terms one by one: round-off apart
    np.testing.assert_allclose(np.asarray(added[0]), np.asarray(alone[0] + wh),
                               rtol=4 * float(jnp.finfo(dtype).eps), atol=0)
    np.testing.assert_array_equal(np.asarray(added[1]), np.asarray(alone[1]))


@needs_kernel
def test_a_large_batch_shares_its_glaciers_between_threads_with_the_same_results():
    """A batch of glaciers with 32 768 cells or more in all is shared, glacier by glacier,
    with XLA's intra-op threads, in the face and limiter kernels and in their adjoints: each
    glacier's results are those of the glacier alone, bit for bit."""
    rng = np.random.default_rng(21)
    grid = Grid(ny=30, nx=41, dx=100.0)
    n = 28  # 28 x 1 230 cells = 34 440
    cases = [_case(rng, grid.ny, grid.nx, jnp.float64, cliffs=bool(k % 2)) for k in range(n)]
    Hs = jnp.stack([c[0] for c in cases])
    beds = jnp.stack([c[1] for c in cases])
    coefs = jnp.stack([_coef(jnp.float64) * (1.0 + 0.1 * k) for k in range(n)])
    cts = (jnp.asarray(rng.normal(size=(n, grid.ny, grid.nx + 1))),
           jnp.asarray(rng.normal(size=(n, grid.ny + 1, grid.nx))),
           jnp.asarray(rng.normal(size=n)), jnp.asarray(rng.normal(size=(n, grid.ny, grid.nx))))
    kw = dict(dx=grid.dx, periodic=grid.periodic)
    batched = jax.jit(jax.vmap(lambda H, b, c: native.faces_call(H, b, c, **kw)))(Hs, beds, coefs)
    vjp = jax.jit(jax.vmap(lambda H, b, c, m, *ct: native.faces_vjp_call(H, b, c, m, *ct, **kw)))
    grads = vjp(Hs, beds, coefs, batched[2], *cts)
    one = jax.jit(lambda H, b, c: native.faces_call(H, b, c, **kw))
    one_vjp = jax.jit(lambda H, b, c, m, *ct: native.faces_vjp_call(H, b, c, m, *ct, **kw))
    for g in (0, 1, n // 2, n - 1):
        alone = one(Hs[g], beds[g], coefs[g])
        for a, b in zip(batched, alone, strict=True):
            np.testing.assert_array_equal(np.asarray(a[g]), np.asarray(b))
        alone = one_vjp(Hs[g], beds[g], coefs[g], alone[2], *(c[g] for c in cts))
        for a, b in zip(grads, alone, strict=True):
            np.testing.assert_array_equal(np.asarray(a[g]), np.asarray(b))
    dts = jnp.asarray(rng.uniform(0.01, 0.5, size=n))
    ct_div, ct_edge = cts[3], cts[2]
    lim = jax.jit(jax.vmap(lambda *a: native.limit_call(*a, **kw)))
    lim_vjp = jax.jit(jax.vmap(lambda *a: native.limit_vjp_call(*a, **kw)))
    limited = lim(Hs, batched[0], batched[1], dts)
    lgrads = lim_vjp(Hs, batched[0], batched[1], dts, ct_div, ct_edge)
    for g in (0, n - 1):
        args = (Hs[g], batched[0][g], batched[1][g], dts[g])
        for a, b in zip(limited, native.limit_call(*args, **kw), strict=True):
            np.testing.assert_array_equal(np.asarray(a[g]), np.asarray(b))
        alone = native.limit_vjp_call(*args, ct_div[g], ct_edge[g], **kw)
        for a, b in zip(lgrads, alone, strict=True):
            np.testing.assert_array_equal(np.asarray(a[g]), np.asarray(b))
