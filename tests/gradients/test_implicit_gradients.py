"""Gradients through the implicit scheme: implicit-function-theorem VJP of each step.

Checked against central finite differences of the same discrete program (float64) and
against reverse mode through a fully converged, unrolled Newton solve with dense Jacobians on
a tiny grid (what the implicit VJP replaces).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glacier import implicit
from glacier.domains import build_domain
from glacier.laws import GlenLaw
from glacier.schemes import ImplicitEuler
from glacier.solver import SaveAt, StoreAll, simulate


@pytest.fixture(scope="module")
def valley():
    domain = build_domain("synthetic_valley", nx=12, ny=12, dx=800.0)
    H0 = jnp.asarray(domain.thickness, jnp.float64)
    # Grow some ice first (the valley starts without ice), so that the constraint is active
    # in part of the domain and inactive in the rest.
    traj = simulate(H0, jnp.asarray(domain.bed), grid=domain.grid,
                    rheology=GlenLaw(A=jnp.asarray(domain.physics.A)), smb=domain.smb,
                    save_at=SaveAt((0.0, 100.0)), scheme=ImplicitEuler(dt=10.0))
    return domain, traj.thickness[-1]


def _loss(domain, H0, weights, scheme):
    def loss(log_A, H_init):
        traj = simulate(H_init, jnp.asarray(domain.bed), grid=domain.grid,
                        rheology=GlenLaw(A=jnp.exp(log_A)), smb=domain.smb,
                        save_at=SaveAt((0.0, 20.0, 40.0)), scheme=scheme, adjoint=StoreAll())
        return jnp.sum(weights * traj.thickness[-1]) + 0.5 * jnp.sum(traj.thickness[1] ** 2) \
            / 1e4
    return loss


def test_gradient_matches_central_differences(valley):
    domain, H0 = valley
    scheme = ImplicitEuler(dt=10.0, tol=1e-13, adjoint_rtol=1e-12, max_steps=4)
    rng = np.random.default_rng(0)
    weights = jnp.asarray(rng.normal(size=domain.grid.shape))
    loss = jax.jit(_loss(domain, H0, weights, scheme))
    log_A = jnp.log(jnp.asarray(domain.physics.A))
    g_A, g_H = jax.grad(loss, argnums=(0, 1))(log_A, H0)
    # d/d log A
    eps = 1e-5
    fd = (loss(log_A + eps, H0) - loss(log_A - eps, H0)) / (2 * eps)
    assert abs(float(g_A) - float(fd)) <= 1e-5 * abs(float(fd)), (float(g_A), float(fd))
    # along a direction in H0 that keeps ice-free cells ice-free
    v = jnp.asarray(rng.normal(size=domain.grid.shape)) * (H0 > 5.0)
    h = 1e-3
    fd = (loss(log_A, H0 + h * v) - loss(log_A, H0 - h * v)) / (2 * h)
    dd = float(jnp.vdot(g_H, v))
    assert abs(dd - float(fd)) <= 1e-5 * abs(float(fd)), (dd, float(fd))


def _unrolled_step(H_old, t_new, dt, p, grid, start, iterations=3):
    """Semismooth Newton with dense Jacobians from ``start`` (the converged solution, as a
    constant), unrolled and differentiated by plain reverse mode: the derivative reaches the
    result only through the iterations."""
    def Phi(H):
        r, _ = implicit.residual(H, H_old, t_new, dt, p, grid)
        return implicit.phi(H, r, jnp.zeros_like(H))

    def newton(H, _):
        n = H.size
        J = jax.jacfwd(Phi)(H).reshape(n, n)
        return jnp.maximum(H - jnp.linalg.solve(J, Phi(H).ravel()).reshape(H.shape), 0.0), None

    return jax.lax.scan(newton, jax.lax.stop_gradient(start), None, length=iterations)[0]


@pytest.mark.slow  # ~40 s; the central-difference test below checks the same gradient
def test_implicit_vjp_equals_unrolled_newton(valley):
    domain, H0 = valley
    grid = domain.grid
    opts = ImplicitEuler(dt=10.0, tol=1e-13, adjoint_rtol=1e-13).newton_options
    rng = np.random.default_rng(1)
    w = jnp.asarray(rng.normal(size=grid.shape))
    dt = jnp.asarray(10.0)

    def via_ift(log_A, H_old):
        p = implicit.Params(bed=jnp.asarray(domain.bed), rheology=GlenLaw(A=jnp.exp(log_A)),
                            smb=domain.smb)
        fixed = jnp.zeros_like(H_old)
        res = implicit.solve(H_old, jnp.asarray(0.0), dt, p, fixed, grid, opts)
        H = implicit.attach(grid, opts, res.H, H_old, dt, dt, p, fixed)
        return jnp.sum(w * H)

    def via_unrolled(log_A, H_old):
        p = implicit.Params(bed=jnp.asarray(domain.bed), rheology=GlenLaw(A=jnp.exp(log_A)),
                            smb=domain.smb)
        start = implicit.solve(H_old, jnp.asarray(0.0), dt, p, jnp.zeros_like(H_old), grid,
                               opts).H
        return jnp.sum(w * _unrolled_step(H_old, dt, dt, p, grid, start))

    log_A = jnp.log(jnp.asarray(domain.physics.A))
    a = jax.jit(jax.value_and_grad(via_ift, argnums=(0, 1)))(log_A, H0)
    b = jax.jit(jax.value_and_grad(via_unrolled, argnums=(0, 1)))(log_A, H0)
    assert abs(float(a[0]) - float(b[0])) <= 1e-9 * abs(float(b[0]))
    assert abs(float(a[1][0]) - float(b[1][0])) <= 1e-7 * abs(float(b[1][0]))
    scale = float(jnp.max(jnp.abs(b[1][1])))
    assert float(jnp.max(jnp.abs(a[1][1] - b[1][1]))) <= 1e-7 * scale
