"""The native kernel of the explicit step's end (``sia_update.cc``, ``sia.step_end``) against
the XLA expressions it replaces: the thickness bit for bit, the two sums to round-off, NaN kept,
batches, gradients and the step that uses it."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glacier.physics import sia

from ._helpers import needs_kernel
from .test_native import _both


def _fields(rng, shape, dtype):
    """Thickness with bare cells, a divergence and a balance that clip about a third of the
    cells (x < 0), ties x == 0 and a ring of ice-free cells."""
    H = np.maximum(rng.normal(50.0, 60.0, shape), 0.0)
    div = rng.normal(0.0, 30.0, shape)
    b = rng.normal(-2.0, 6.0, shape)
    b.flat[::7] = 0.0
    div.flat[::7] = 0.0
    H.flat[::7] = 0.0  # x == 0 exactly: H = 0, div = 0, b = 0
    free = np.zeros(shape)
    free[..., 0, :] = free[..., -1, :] = free[..., :, 0] = free[..., :, -1] = 1.0
    return tuple(jnp.asarray(a, dtype) for a in (H, div, b, free))


def _reference(H, div, dt, b, free):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GLACIER_NATIVE", "0")
        return jax.jit(sia.step_end)(H, div, dt, b, free)


@needs_kernel
@pytest.mark.parametrize("shape", [(17, 29), (1, 1), (3, 5), (64, 64)])
@pytest.mark.parametrize("with_free", [True, False])
@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_step_end_equals_the_xla_expressions(shape, with_free, dtype):
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        pytest.skip("float64 needs x64")
    H, div, b, free = _fields(np.random.default_rng(5), shape, dtype)
    free = free if with_free else None
    dt = jnp.asarray(0.37, dtype)
    fast, slow = _both(sia.step_end, H, div, dt, b, free)
    # The thickness bit for bit (no fused multiply-adds), clipped where the balance removes
    # more than there is, and emptied where cells are held ice-free.
    np.testing.assert_array_equal(np.asarray(fast[0]), np.asarray(slow[0]))
    assert float(jnp.min(fast[0])) >= 0.0
    if with_free:
        assert not np.any(np.asarray(fast[0])[np.asarray(free) == 1.0])
    # The sums in another order: round-off.
    tol = 1e-13 if dtype == jnp.float64 else 1e-5
    for f, s in zip(fast[1:], slow[1:], strict=True):
        assert abs(float(f) - float(s)) <= tol * max(1.0, abs(float(s))), (f, s)
    if not with_free:
        assert float(fast[2]) == 0.0


@needs_kernel
def test_step_end_keeps_nan_and_batches_under_vmap():
    rng = np.random.default_rng(6)
    H, div, b, free = _fields(rng, (4, 9, 11), jnp.float32)
    H = H.at[1, 3, 4].set(jnp.nan)  # a blown-up cell: NaN must reach H_new (and the sums)
    dt = jnp.asarray([0.1, 0.2, 0.3, 0.4], jnp.float32)
    fast, slow = _both(jax.vmap(sia.step_end), H, div, dt, b, free)
    assert np.isnan(np.asarray(fast[0])[1, 3, 4]) and np.isnan(float(fast[1][1]))
    np.testing.assert_array_equal(np.asarray(fast[0]), np.asarray(slow[0]))
    ok = np.array([0, 2, 3])
    np.testing.assert_allclose(np.asarray(fast[1])[ok], np.asarray(slow[1])[ok], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(fast[2]), np.asarray(slow[2]), rtol=1e-5)


@needs_kernel
def test_step_end_gradients_are_those_of_the_xla_expressions():
    if not jax.config.jax_enable_x64:
        pytest.skip("float64 needs x64")
    H, div, b, free = _fields(np.random.default_rng(7), (13, 10), jnp.float64)
    w = jnp.asarray(np.random.default_rng(8).normal(size=H.shape))

    def loss(H, div, dt, b):
        Hn, applied, removed = sia.step_end(H, div, dt, b, free)
        return jnp.sum(w * Hn) + 0.3 * applied - 0.7 * removed

    g = jax.grad(loss, argnums=(0, 1, 2, 3))
    fast, slow = _both(g, H, div, jnp.asarray(0.37), b)
    for f, s in zip(fast, slow, strict=True):
        np.testing.assert_allclose(np.asarray(f), np.asarray(s), rtol=1e-13, atol=1e-300)
    # and the kernel is in the forward program: one custom call, no XLA reductions
    hlo = jax.jit(lambda *a: sia.step_end(*a, free)).lower(H, div, jnp.asarray(0.37), b)
    assert "glacier_sia_update_f64" in hlo.as_text()


@needs_kernel
@pytest.mark.parametrize("with_free", [True, False])
@pytest.mark.parametrize("dtype,tol", [(jnp.float64, 1e-13), (jnp.float32, 1e-5)])
def test_the_adjoint_kernel_equals_jax_autodiff(with_free, dtype, tol, monkeypatch):
    """The step end's adjoint kernel against JAX's AD of the XLA expressions
    (``GLACIER_NATIVE_VJP=0``), kinks included: x == 0 exactly (half the cotangent), x < 0,
    NaN-free cells; the cotangents of the three outputs all nonzero."""
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        pytest.skip("float64 needs x64")
    rng = np.random.default_rng(9)
    H, div, b, free = _fields(rng, (11, 13), dtype)
    free = free if with_free else None
    ct = (jnp.asarray(rng.normal(size=H.shape), dtype), jnp.asarray(0.3, dtype),
          jnp.asarray(-0.7, dtype))

    def vjp(H, div, dt, b, free):
        if free is None:
            _, pull = jax.vjp(lambda *a: sia.step_end(*a, None), H, div, dt, b)
        else:
            _, pull = jax.vjp(sia.step_end, H, div, dt, b, free)
        return pull(ct)

    args = (H, div, jnp.asarray(0.37, dtype), b, free)
    fresh = lambda: jax.jit(lambda *a: vjp(*a))  # noqa: E731  (a new trace: the switch is read then)
    native_ = fresh()(*args)
    assert "glacier_sia_update_vjp" in fresh().lower(*args).as_text()
    monkeypatch.setenv("GLACIER_NATIVE_VJP", "0")
    reference = fresh()(*args)
    assert "glacier_sia_update_vjp" not in fresh().lower(*args).as_text()
    for a, r in zip(native_, reference, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(r), rtol=tol,
                                   atol=tol * float(jnp.max(jnp.abs(r)) or 1.0))


@needs_kernel
@pytest.mark.parametrize("with_free", [True, False])
def test_the_forward_loop_writes_the_new_thickness_in_place(with_free):
    """The step-end kernel writes H_new over H (``input_output_aliases``), so the forward time
    loop carries the thickness without copying it every step (the copy took 1.4 us of a 43 us
    valley step); in reverse mode's forward sweep, where H is kept, it does not (XLA would copy
    H first); the values stay those of the XLA expressions."""
    from glacier import solver as slv
    from glacier.grid import Grid
    from glacier.laws import GlenLaw
    from glacier.physics import mass_balance

    grid = Grid(nx=24, ny=20, dx=100.0)
    yy, xx = np.mgrid[:20, :24]
    bed = jnp.asarray(2000.0 - 8.0 * xx, jnp.float64)
    H0 = jnp.asarray(np.maximum(0.0, 120.0 - 0.8 * ((xx - 12) ** 2 + (yy - 10) ** 2)),
                     jnp.float64)
    free = np.zeros((20, 24))
    free[0, :] = free[-1, :] = 1.0
    free = jnp.asarray(free) if with_free else None
    law = GlenLaw(A=1e-16, rho=910.0, g=9.81)
    smb = mass_balance.linear(1950.0, 0.005)

    def run(H):
        return slv.simulate(H, bed, grid=grid, rheology=law, smb=smb,
                            save_at=slv.SaveAt((0.0, 2.0)), ice_free=free).thickness[-1]

    def loss(H):
        tr = slv.simulate(H, bed, grid=grid, rheology=law, smb=smb,
                          save_at=slv.SaveAt((0.0, 2.0)), ice_free=free,
                          adjoint=slv.Checkpointed())
        return jnp.sum(tr.thickness[-1] ** 2)

    field = "f64[20,24]{1,0} copy("
    hlo = jax.jit(run).lower(H0).compile().as_text()
    bodies = [block for block in hlo.split("\n\n") if "glacier_sia_update_f64" in block]
    assert bodies, "the step-end kernel is not in the compiled loop"
    assert all(field not in block for block in bodies), "the loop copies the thickness"
    # Reverse mode: H is not copied for the call (its first operand is no copy).
    hlo = jax.jit(jax.grad(loss)).lower(H0).compile().as_text()
    calls = re.findall(r"custom-call\((%[\w.\-]+),[^\n]*glacier_sia_update_f64", hlo)
    assert calls
    copies = set(re.findall(r"(%[\w.\-]+) = f64\[20,24\]\{1,0\} copy\(", hlo))
    assert not copies & set(calls), "reverse mode copies H for the step-end kernel"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GLACIER_NATIVE", "0")
        reference = jax.jit(run)(H0)
    np.testing.assert_allclose(np.asarray(jax.jit(run)(H0)), np.asarray(reference),
                               rtol=1e-12, atol=1e-9)
