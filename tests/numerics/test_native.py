"""The native SIA face kernel (``physics.native``) against the XLA expressions it replaces."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glacier.grid import Grid
from glacier.laws import GlenLaw
from glacier.physics import native, sia

from ._helpers import needs_kernel


def test_the_kernel_builds_where_there_is_a_compiler():
    """Where a C++ compiler is found, the kernel must build and load (a failure would only
    warn and fall back to XLA's expressions: this test is what notices)."""
    if native.compiler() is None:
        pytest.skip("no C++ compiler here")
    assert native.load()


def _case(rng, ny, nx, dtype, *, cliffs=False):
    H = np.maximum(rng.normal(120.0, 90.0, (ny, nx)), 0.0)
    if cliffs:  # ice cliffs, bare cells and a bedrock step: every limiter branch
        H[:, nx // 2:] = 0.0
        H[ny // 3, :] = 400.0
    bed = rng.normal(2000.0, 25.0, (ny, nx)) + np.linspace(0.0, 600.0, nx)[None, :]
    if cliffs:
        bed[ny // 2:, :] += 300.0
    return jnp.asarray(H, dtype), jnp.asarray(bed, dtype)


def _both(fn, *args):
    """fn(*args) with the kernel and with the XLA expressions (each its own trace)."""
    fast = jax.jit(lambda *a: fn(*a))(*args)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GLACIER_NATIVE", "0")
        slow = jax.jit(lambda *a: fn(*a))(*args)
    return fast, slow


def _rel(a, b):
    scale = float(jnp.max(jnp.abs(b))) or 1.0
    return float(jnp.max(jnp.abs(a - b))) / scale


@needs_kernel
@pytest.mark.parametrize("periodic", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("dtype,tol", [(jnp.float64, 1e-13), (jnp.float32, 1e-5)])
@pytest.mark.parametrize("cliffs", [False, True])
def test_fluxes_equal_the_xla_expressions(periodic, dtype, tol, cliffs):
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        pytest.skip("float64 needs x64")
    rng = np.random.default_rng(3)
    grid = Grid(ny=17, nx=29, dx=100.0, periodic=periodic)
    H, bed = _case(rng, grid.ny, grid.nx, dtype, cliffs=cliffs)
    law = GlenLaw(A=jnp.asarray(7.6e-17, dtype), fs=jnp.asarray(2e-12, dtype))
    fast, slow = _both(lambda H, b: sia.fluxes(H, b, law, grid), H, bed)
    for name, a, b in zip(("qx", "qy", "D_max"), fast, slow, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        assert _rel(a, b) <= tol, (name, _rel(a, b))


@needs_kernel
def test_the_kernel_runs_in_the_step_and_batches_under_vmap():
    grid = Grid(ny=12, nx=9, dx=50.0)
    rng = np.random.default_rng(0)
    H, bed = _case(rng, 12, 9, jnp.float64)
    law = GlenLaw(A=7.6e-17)
    hlo = jax.jit(lambda H, b: sia.fluxes(H, b, law, grid)).lower(H, bed).as_text()
    assert native.TARGETS[np.dtype("float64")] in hlo
    Hs = jnp.stack([H, 0.5 * H, 0.0 * H])
    fast, slow = _both(jax.vmap(lambda H: sia.fluxes(H, bed, law, grid)), Hs)
    for a, b in zip(fast, slow, strict=True):
        assert _rel(a, b) <= 1e-13
    assert float(fast[2][2]) == 0.0  # no ice, no diffusivity


@needs_kernel
def test_nan_reaches_d_max():
    grid = Grid(ny=8, nx=8, dx=100.0)
    H, bed = _case(np.random.default_rng(1), 8, 8, jnp.float64)
    H = H.at[4, 4].set(jnp.nan)
    _, _, d_max = jax.jit(lambda H: sia.fluxes(H, bed, GlenLaw(A=7.6e-17), grid))(H)
    assert not np.isfinite(float(d_max))


def test_other_laws_keep_the_xla_expressions():
    """Glen's law with n other than 3 keeps the XLA expressions (a field A or fs of the grid's
    shape takes the kernel: ``test_native_fields.py``)."""
    grid = Grid(ny=6, nx=7, dx=100.0)
    H, bed = _case(np.random.default_rng(2), 6, 7, jnp.float64)
    law = GlenLaw(A=jnp.full((6, 7), 7.6e-17), n=4.0)
    assert law.native_coefficients() is None
    hlo = jax.jit(lambda H, b: sia.fluxes(H, b, law, grid)).lower(H, bed).as_text()
    assert "glacier_sia_faces" not in hlo


@needs_kernel
def test_gradients_are_those_of_the_xla_expressions():
    """Reverse mode through the adjoint kernel gives the XLA expressions' gradient to
    round-off, with respect to the thickness and to A."""
    grid = Grid(ny=10, nx=11, dx=100.0)
    H, bed = _case(np.random.default_rng(4), 10, 11, jnp.float64)

    def loss(H, logA):
        qx, qy, d_max = sia.fluxes(H, bed, GlenLaw(A=jnp.exp(logA)), grid)
        return jnp.sum(qx**2) + jnp.sum(jnp.sin(qy)) + 1e-3 * d_max

    g = jax.grad(loss, argnums=(0, 1))
    fast, slow = _both(g, H, jnp.log(7.6e-17))
    assert _rel(fast[0], slow[0]) <= 1e-12
    assert abs(float(fast[1] - slow[1])) <= 1e-12 * abs(float(slow[1]))


@needs_kernel
def test_build_is_cached_and_reports_a_missing_compiler(tmp_path, monkeypatch):
    first = native.build(tmp_path)
    assert first.exists() and native.build(tmp_path) == first
    monkeypatch.setattr(native.shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        native.build(tmp_path / "other")


def test_a_wrapped_law_is_not_taken_for_glen():
    """A wrapper that forwards its law's attributes (as ``ClosedOutline`` does) but changes the
    diffusivity: the kernel must not see through it to the wrapped law's coefficients.
    (``ClosedOutline`` gives coefficients of its own: ``test_native_fields.py``.)"""

    class Doubled:
        def __init__(self, law):
            self.law = law

        def diffusivity(self, H, slope2, axis):
            return 2.0 * self.law.diffusivity(H, slope2, axis)

        def __getattr__(self, name):
            return getattr(self.law, name)

    grid = Grid(ny=6, nx=7, dx=100.0)
    H, bed = _case(np.random.default_rng(2), 6, 7, jnp.float64)
    law = Doubled(GlenLaw(A=7.6e-17))
    assert law.native_coefficients() is not None  # forwarded, yet not used
    hlo = jax.jit(lambda H, b: sia.fluxes(H, b, law, grid)).lower(H, bed).as_text()
    assert "glacier_sia_faces" not in hlo


@needs_kernel
@pytest.mark.parametrize("periodic", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("dtype,tol", [(jnp.float64, 1e-13), (jnp.float32, 1e-5)])
def test_limited_divergence_equals_the_xla_expressions(periodic, dtype, tol):
    """The outflow limiter (active: a step long enough that cells would export more than they
    hold) and the divergence and edge outflow of the limited fluxes."""
    rng = np.random.default_rng(5)
    grid = Grid(ny=13, nx=19, dx=100.0, periodic=periodic)
    H, bed = _case(rng, grid.ny, grid.nx, dtype, cliffs=True)
    qx, qy, _ = sia.fluxes(H, bed, GlenLaw(A=jnp.asarray(7.6e-17, dtype)), grid,
                           custom_vjp=False)
    for dt in (1e-4, 0.5, 50.0):  # the limiter off, partly on, on almost everywhere
        dt = jnp.asarray(dt, dtype)
        fast, slow = _both(lambda H, qx, qy, dt: sia.limited_divergence(H, qx, qy, dt, grid),
                           H, qx, qy, dt)
        scale = float(jnp.max(jnp.abs(qx))) / grid.dx
        assert float(jnp.max(jnp.abs(fast[0] - slow[0]))) <= tol * scale
        assert abs(float(fast[1] - slow[1])) <= tol * float(jnp.sum(jnp.abs(qx)) + 1.0)


@needs_kernel
def test_a_step_with_both_kernels_matches_and_conserves_mass():
    """The explicit scheme's steps with both kernels: the XLA steps' thickness to round-off
    and the mass budget closed (a run through the solver, outflow at the edges included)."""
    from glacier.physics import mass_balance
    from glacier.solver import SaveAt, simulate

    grid = Grid(ny=20, nx=24, dx=200.0)
    X, Y = grid.meshgrid()
    bed = 3000.0 - 0.08 * X + 0.0 * Y
    H0 = jnp.where((X > 1000.0) & (X < 3500.0), 150.0, 0.0) + 0.0 * Y

    def run():
        tr = simulate(H0, bed, grid=grid, rheology=GlenLaw(A=2.4e-16),
                      smb=mass_balance.linear(2900.0, 0.005, max_rate=2.0),
                      save_at=SaveAt((0.0, 30.0)))
        return tr

    fast, slow = _both(lambda: run())
    assert float(jnp.max(jnp.abs(fast.thickness[-1] - slow.thickness[-1]))) <= 1e-8
    V = jnp.sum(fast.thickness, axis=(1, 2)) * grid.cell_area
    budget = V[-1] - V[0] - (fast.smb_volume[-1] - fast.outflow_volume[-1])
    assert abs(float(budget)) <= 1e-9 * float(V[0])


@needs_kernel
def test_switched_off_by_the_environment_and_back(monkeypatch):
    monkeypatch.setenv("GLACIER_NATIVE", "off")
    assert not native.load() and not native.usable(jnp.zeros((3, 3)))
    monkeypatch.delenv("GLACIER_NATIVE")
    assert native.load() and native.usable(jnp.zeros((3, 3)))
    assert not native.usable(jnp.zeros((3, 3), jnp.int32))
