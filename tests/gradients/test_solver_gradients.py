"""Reverse-mode gradients through the adaptive SIA solve.

Checks (reference/VERIFICATION.md, section 5): gradients equal central finite differences of
the same discrete program in float64 (relative error and angle, several step sizes), and the
checkpointed gradient equals the plain (store-everything) one.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glacier.grid import Grid
from glacier.laws import GlenLaw
from glacier.physics import mass_balance
from glacier.schemes import ExplicitMUSCL
from glacier.solver import Checkpointed, ForwardOnly, SaveAt, StoreAll, simulate

jax.config.update("jax_enable_x64", True)

GRID = Grid(ny=12, nx=10, dx=100.0)
SCHEME = ExplicitMUSCL(cfl=0.1, max_dt=0.5, max_steps=64)
TIMES = SaveAt((0.0, 1.0, 2.0))
ADJOINTS = {"none": ForwardOnly(), "checkpointed": Checkpointed(checkpoint_every=8),
            "plain": StoreAll(), "stored": Checkpointed(),
            "chunked": Checkpointed(memory_budget=0)}


def _case():
    X, Y = GRID.meshgrid()
    xc, yc = X.mean(), Y.mean()
    # Asymmetric on purpose: with a mirror symmetry the discrete program sits on kinks (the
    # largest diffusivity, which sets dt, is attained at two faces at once; two neighbouring
    # cells have equal thickness, where the MUSCL limiter switches branch), and a one-sided
    # directional derivative there differs from the gradient.
    bed = 2800.0 - 0.1 * Y + 0.03 * X + 2e-4 * (X - xc) ** 2
    r2 = ((X - xc - 60.0) / 350.0) ** 2 + ((Y - yc + 40.0) / 450.0) ** 2
    H0 = 120.0 * np.exp(-r2) + 5.0  # smooth, positive everywhere: no margin kinks
    return jnp.asarray(H0), jnp.asarray(bed)


def _loss(log_A, H0, bed, adjoint, A_field=None):
    A = jnp.exp(log_A) if A_field is None else jnp.exp(log_A + A_field)
    law = GlenLaw(A=A)
    smb = mass_balance.linear(2750.0, 0.005)
    tr = simulate(H0, bed, grid=GRID, rheology=law, smb=smb, save_at=TIMES, scheme=SCHEME,
                  adjoint=ADJOINTS[adjoint])
    return jnp.sum(tr.thickness[1:] ** 2) / 1e4


LOG_A = jnp.log(2.4e-24 * 365.25 * 86400)


def _rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def test_step_count_is_inside_budget():
    H0, bed = _case()
    tr = simulate(H0, bed, grid=GRID, rheology=GlenLaw(A=jnp.exp(LOG_A)),
                  smb=mass_balance.linear(2750.0, 0.005), save_at=TIMES, scheme=SCHEME)
    steps = np.asarray(tr.steps)
    assert np.all(steps[1:] > 5), steps  # several adaptive steps per interval
    assert np.all(steps < SCHEME.max_steps), steps
    assert np.all(np.asarray(tr.status) == 0)


def test_checkpointed_equals_plain():
    H0, bed = _case()
    g_ck = jax.grad(_loss, argnums=(0, 1))(LOG_A, H0, bed, "checkpointed")
    g_pl = jax.grad(_loss, argnums=(0, 1))(LOG_A, H0, bed, "plain")
    for a, b in zip(g_ck, g_pl, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-300)
    v_none = _loss(LOG_A, H0, bed, "none")
    assert float(v_none) == pytest.approx(float(_loss(LOG_A, H0, bed, "checkpointed")),
                                          rel=1e-14)


def test_memory_budget_decides_between_stored_states_and_chunks():
    H0, bed = _case()
    state_bytes = H0.size * 8 + 64  # one thickness field and a few scalars
    n_intervals = len(TIMES.times) - 1
    stored, chunked = ADJOINTS["stored"], ADJOINTS["chunked"]
    assert stored.split(n_intervals).stores_all(SCHEME.max_steps, state_bytes)
    assert not chunked.stores_all(SCHEME.max_steps, state_bytes)
    assert not ADJOINTS["checkpointed"].stores_all(SCHEME.max_steps, state_bytes)  # explicit
    tight = Checkpointed(memory_budget=n_intervals * SCHEME.max_steps * state_bytes // 2)
    assert not tight.split(n_intervals).stores_all(SCHEME.max_steps, state_bytes)
    with pytest.raises(ValueError, match="memory_budget"):
        Checkpointed(memory_budget=-1)
    # Both paths give the store-everything gradient.
    g_pl = jax.grad(_loss, argnums=(0, 1))(LOG_A, H0, bed, "plain")
    for name in ("stored", "chunked"):
        g = jax.grad(_loss, argnums=(0, 1))(LOG_A, H0, bed, name)
        for a, b in zip(g, g_pl, strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-300)


def test_stored_path_keeps_one_field_per_step():
    """The stored path's temporary memory grows by one thickness field per step of the
    budget: the closed-over bed is not stacked per step as well (the checkpoint goes around
    the lax.cond that skips steps; inside it, the bed left the cond as a per-step residual)."""
    H0, bed = _case()

    def temp_bytes(max_steps):
        scheme = SCHEME.with_budget(max_steps)

        def loss(log_A, bed):
            tr = simulate(H0, bed, grid=GRID, rheology=GlenLaw(A=jnp.exp(log_A)),
                          smb=mass_balance.linear(2750.0, 0.005), save_at=SaveAt((0.0, 1.0)),
                          scheme=scheme, adjoint=Checkpointed())
            return jnp.sum(tr.thickness[-1] ** 2)
        mem = jax.jit(jax.grad(loss)).lower(LOG_A, bed).compile().memory_analysis()
        return None if mem is None else mem.temp_size_in_bytes

    small, big = temp_bytes(64), temp_bytes(320)
    if small is None:
        pytest.skip("no memory analysis on this backend")
    state = H0.size * 8
    assert 256 * state <= big - small <= 1.2 * 256 * state, (big - small) / (256 * state)


@pytest.mark.slow  # four compilations; the budget's decision is in the default run above
def test_stored_states_need_memory_linear_in_steps_chunks_sublinear():
    """XLA's temporary buffers of the compiled gradient: with every state stored they grow
    with the step budget (and stay within the memory budget); chunked, they grow as its
    square root."""
    H0, bed = _case()

    def temp_bytes(adjoint, max_steps):
        scheme = SCHEME.with_budget(max_steps)

        def loss(log_A):
            tr = simulate(H0, bed, grid=GRID, rheology=GlenLaw(A=jnp.exp(log_A)),
                          smb=mass_balance.linear(2750.0, 0.005), save_at=SaveAt((0.0, 1.0)),
                          scheme=scheme, adjoint=adjoint)
            return jnp.sum(tr.thickness[-1] ** 2)
        mem = jax.jit(jax.grad(loss)).lower(LOG_A).compile().memory_analysis()
        return None if mem is None else mem.temp_size_in_bytes

    state = H0.size * 8
    small, big = temp_bytes(Checkpointed(), 256), temp_bytes(Checkpointed(), 1024)
    if small is None:
        pytest.skip("no memory analysis on this backend")
    # One field per step in the program (what the budget counts): no copy of the stack, and
    # no per-step copy of the bed (the checkpoint goes around the lax.cond that skips steps).
    assert 768 * state <= big - small <= 1.2 * 768 * state
    assert big <= 1024 * state * 1.1 + 2**20
    c_small = temp_bytes(Checkpointed(memory_budget=0), 256)
    c_big = temp_bytes(Checkpointed(memory_budget=0), 1024)
    assert c_big - c_small < 0.1 * (big - small)  # 32 + 32 states against 16 + 16


@pytest.mark.parametrize("eps", [1e-4, 1e-6])
def test_gradient_wrt_log_A_matches_finite_differences(eps):
    H0, bed = _case()
    g = float(jax.grad(_loss)(LOG_A, H0, bed, "checkpointed"))
    fd = float((_loss(LOG_A + eps, H0, bed, "none") - _loss(LOG_A - eps, H0, bed, "none"))
               / (2 * eps))
    assert abs(g - fd) / abs(fd) <= 1e-5, (g, fd)


@pytest.mark.parametrize("eps", [1e-4, 1e-5, 1e-6])
def test_gradient_wrt_initial_thickness_matches_directional_fd(eps):
    H0, bed = _case()
    g = jax.grad(_loss, argnums=1)(LOG_A, H0, bed, "checkpointed")
    rng = np.random.default_rng(0)
    for _ in range(3):
        v = jnp.asarray(rng.normal(size=GRID.shape)) * (H0 > 1.0)
        fd = (_loss(LOG_A, H0 + eps * v, bed, "none")
              - _loss(LOG_A, H0 - eps * v, bed, "none")) / (2 * eps)
        ad = jnp.vdot(g, v)
        assert abs(float(ad - fd)) / abs(float(fd)) <= 1e-5, (float(ad), float(fd))


def test_gradient_wrt_gridded_A_matches_fd_and_angle():
    H0, bed = _case()
    field0 = jnp.zeros(GRID.shape)
    g = jax.grad(lambda f: _loss(LOG_A, H0, bed, "checkpointed", f))(field0)
    rng = np.random.default_rng(1)
    eps = 1e-5
    ads, fds = [], []
    for _ in range(4):
        v = jnp.asarray(rng.normal(size=GRID.shape))
        fd = (_loss(LOG_A, H0, bed, "none", eps * v) - _loss(LOG_A, H0, bed, "none", -eps * v)) \
            / (2 * eps)
        ads.append(float(jnp.vdot(g, v)))
        fds.append(float(fd))
    ads, fds = np.array(ads), np.array(fds)
    assert np.max(np.abs(ads - fds) / np.abs(fds)) <= 1e-5, (ads, fds)
    cos = ads @ fds / (np.linalg.norm(ads) * np.linalg.norm(fds))
    assert cos > 1 - 1e-9
