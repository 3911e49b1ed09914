"""One backward-Euler step of the SIA: Newton-Krylov with H >= 0 as a complementarity condition,
differentiated by the implicit function theorem.

The step from H_old over dt solves, for the new thickness H, the nonlinear complementarity
problem

    H >= 0,   r(H) >= 0,   H r(H) = 0,     r(H) = H - H_old + dt (div q(H) - b(S, t + dt)),

with q the flux-form SIA of ``physics.sia`` (MUSCL-superbee face thickness, no outflow limiter:
the constraint replaces it) and b the mass balance on the new surface. Where ice remains r = 0
(mass is conserved to the solver tolerance); where the constraint is active (H = 0, r > 0) r is
the ablation that found no ice, booked as not applied, as in the explicit budget. Cells marked
``ice_free`` are held at H = 0 and what would collect there is booked as outflow.

Solver (semismooth Newton on Phi(H) = min(H, r(H)), reduced-space form): the rows of the active
set are the identity, the others the Jacobian of r, applied matrix-free by ``jax.jvp``. Each
Newton system is solved by flexible GMRES (``linalg.gmres``) preconditioned by a multigrid
V-cycle (``linalg.VCycle``) of the first-order (Picard plus upwind) linearisation; the update is
projected onto H >= 0 and damped by backtracking on ||Phi||. Converged when
max |Phi| <= tol (max(H_old) + 1 m). A step that does not converge is retried with half the
step (``max_halvings`` times); then the step fails (``converged`` False) and the caller stops.

Gradients: ``attach`` gives the converged H the derivative of the solution of Phi = 0 (implicit
function theorem): its VJP is one transposed linear solve J^T lam = g (GMRES with the transposed
V-cycle), then -lam^T dPhi/d(H_old, bed, law, smb). Reverse mode never goes through the Newton
iterations, and a step stores only its two states.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from .grid import Grid
from .linalg import VCycle, gmres
from .linalg.multigrid import FaceOperator
from .physics import sia
from .physics.faces import face_states_autodiff


@dataclasses.dataclass(frozen=True)
class NewtonOptions:
    """Static options of the nonlinear and linear solves (see ``schemes.ImplicitEuler``)."""

    tol: float = 1e-8
    max_newton: int = 30
    krylov_rtol: float = 1e-3
    restart: int = 30
    max_krylov: int = 200
    adjoint_rtol: float = 1e-9
    max_halvings: int = 4
    preconditioner: str = "multigrid"


class Params(NamedTuple):
    """What a step depends on besides the old thickness (differentiated by ``attach``)."""

    bed: jax.Array
    rheology: object
    smb: object


class StepResult(NamedTuple):
    H: jax.Array
    dt: jax.Array
    converged: jax.Array
    iterations: jax.Array  # Newton iterations of the accepted attempt
    krylov: jax.Array      # GMRES iterations (matrix-vector products) of the accepted attempt
    residual: jax.Array    # max |Phi| at the end [m]


# --------------------------------------------------------------------------------------------
# The residual


def residual(H, H_old, t_new, dt, p: Params, grid: Grid, *, custom_vjp: bool = False):
    """r(H) [m], the fluxes (qx, qy) [m^2 a^-1] and the mass balance b [m a^-1] at H."""
    qx, qy, _ = sia.fluxes(H, p.bed, p.rheology, grid, custom_vjp=custom_vjp)
    b = p.smb(p.bed + H, t_new)
    r = H - H_old + dt * (sia.flux_divergence(qx, qy, grid.dx) - b)
    return r, (qx, qy, b)


def active_set(H, r, fixed):
    """Rows of Phi = min(H, r) that are the identity: the held cells and where H < r."""
    return (fixed > 0) | (H < r)


def phi(H, r, fixed):
    return jnp.where(active_set(H, r, fixed), H, r)


# --------------------------------------------------------------------------------------------
# The preconditioner: the first-order linearisation of r, as a five-point operator


def linearisation(H, t_new, dt, p: Params, grid: Grid, active) -> FaceOperator:
    """dr/dH to first order: 1 - dt db/dS, diffusion dt D / dx^2 on the faces and upwind
    advection by -dt/dx dD/dH dS/dn; faces next to active cells are cut (those rows are the
    identity)."""
    dx = grid.dx
    (Hx, s2x, gx), (Hy, s2y, gy) = face_states_autodiff(H, p.bed, grid)

    def coefficients(Hf, s2, grad, axis):
        D, dD = jax.jvp(lambda h: p.rheology.diffusivity(h, s2, axis), (Hf,),
                        (jnp.ones_like(Hf),))
        return dt * D / (dx * dx), -dt / dx * dD * grad

    tx, cx = coefficients(Hx, s2x, gx, 1)
    ty, cy = coefficients(Hy, s2y, gy, 0)
    S = p.bed + H
    _, dbdS = jax.jvp(lambda s: p.smb(s, t_new), (S,), (jnp.ones_like(S),))
    mass = jnp.where(active, 1.0, jnp.maximum(1.0 - dt * dbdS, 0.25))
    # A face is kept only if no cell on it is active (ghosts count as inactive).
    cut_x = jnp.pad(active, ((0, 0), (1, 1)))
    cut_y = jnp.pad(active, ((1, 1), (0, 0)))
    mx = ~(cut_x[:, :-1] | cut_x[:, 1:])
    my = ~(cut_y[:-1, :] | cut_y[1:, :])
    return FaceOperator(mass=mass, tx=jnp.where(mx, tx, 0.0), ty=jnp.where(my, ty, 0.0),
                        cx=jnp.where(mx, cx, 0.0), cy=jnp.where(my, cy, 0.0))


def preconditioner(op: FaceOperator, kind: str, *, transpose: bool = False):
    if kind == "multigrid":
        return VCycle.build(op, transpose=transpose)
    if kind == "jacobi":
        diag = op.stencil().diag
        return lambda v: v / diag
    if kind == "none":
        return lambda v: v
    raise ValueError(f"preconditioner must be multigrid, jacobi or none, got {kind!r}.")


# --------------------------------------------------------------------------------------------
# Newton


def _tolerance(H_old, opts: NewtonOptions):
    eps = jnp.finfo(H_old.dtype).eps
    return jnp.maximum(opts.tol, 100.0 * eps) * (jnp.max(H_old) + 1.0)


def newton(H_old, t_new, dt, p: Params, fixed, grid: Grid, opts: NewtonOptions, guess=None):
    """Solve the step's complementarity problem from ``guess`` (default H_old).

    Returns (H, converged, Newton iterations, GMRES iterations, max |Phi|).
    """
    tol = _tolerance(H_old, opts)

    def evaluate(H):
        r, _ = residual(H, H_old, t_new, dt, p, grid)
        F = phi(H, r, fixed)
        return r, F, jnp.max(jnp.abs(F))

    def iteration(carry):
        H, r, F, err, k, kry = carry
        active = active_set(H, r, fixed)

        _, lin = jax.linearize(lambda h: residual(h, H_old, t_new, dt, p, grid)[0], H)

        def J(v):
            return jnp.where(active, v, lin(v))

        M = preconditioner(linearisation(H, t_new, dt, p, grid, active), opts.preconditioner)
        sol = gmres(J, -F, precond=M, rtol=opts.krylov_rtol, restart=opts.restart,
                    max_iter=opts.max_krylov)
        norm0 = jnp.linalg.norm(F)

        def trial(alpha):
            Hn = jnp.maximum(H + alpha * sol.x, 0.0)
            return (Hn, *evaluate(Hn))

        def worse(st):
            alpha, (_, _, Fn, _) = st
            return (alpha > 1.0 / 16) & ~(jnp.linalg.norm(Fn) < (1 - 1e-4 * alpha) * norm0)

        def halve(st):
            alpha = 0.5 * st[0]
            return alpha, trial(alpha)

        alpha, (Hn, rn, Fn, errn) = lax.while_loop(worse, halve, (jnp.ones((), H.dtype),
                                                              trial(1.0)))
        return Hn, rn, Fn, errn, k + 1, kry + sol.iterations

    def more(carry):
        err, k = carry[3], carry[4]
        return (err > tol) & (k < opts.max_newton) & jnp.isfinite(err)

    H0 = H_old if guess is None else jnp.maximum(guess, 0.0)
    r0, F0, err0 = evaluate(H0)
    zero = jnp.zeros((), jnp.int32)
    H, _, _, err, k, kry = lax.while_loop(more, iteration, (H0, r0, F0, err0, zero, zero))
    return H, (err <= tol) & jnp.all(jnp.isfinite(H)), k, kry, err


def solve(H_old, t_old, dt_max, p: Params, fixed, grid: Grid, opts: NewtonOptions) -> StepResult:
    """One step of at most ``dt_max``, halving it when Newton fails (not differentiated: the
    derivative of the result is attached by ``attach``)."""
    H_old, t_old, dt_max, p, fixed = lax.stop_gradient((H_old, t_old, dt_max, p, fixed))
    hdt = H_old.dtype

    def attempt(carry):
        dt, tries, _ = carry
        H, ok, k, kry, err = newton(H_old, (t_old + dt).astype(hdt), dt.astype(hdt), p, fixed,
                                    grid, opts)
        res = StepResult(H=H, dt=dt, converged=ok, iterations=k, krylov=kry, residual=err)
        return jnp.where(ok, dt, 0.5 * dt), tries + 1, res

    def again(carry):
        _, tries, res = carry
        return ~res.converged & (tries <= opts.max_halvings)

    zero = jnp.zeros((), jnp.int32)
    first = StepResult(H=H_old, dt=dt_max, converged=jnp.zeros((), bool), iterations=zero,
                       krylov=zero, residual=jnp.zeros((), hdt))
    _, _, res = lax.while_loop(again, attempt, (dt_max, zero, first))
    return res


# --------------------------------------------------------------------------------------------
# The implicit-function-theorem derivative


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def attach(grid: Grid, opts: NewtonOptions, H, H_old, t_new, dt, p: Params, fixed):
    """``H`` (the converged step) with the derivative of the solution of Phi(H) = 0 with
    respect to H_old and the parameters (module docstring)."""
    return H


def _attach_fwd(grid, opts, H, H_old, t_new, dt, p, fixed):
    return H, (H, H_old, t_new, dt, p, fixed)


def _attach_bwd(grid, opts, res, g):
    H, H_old, t_new, dt, p, fixed = res
    r, vjp_H = jax.vjp(lambda h: residual(h, H_old, t_new, dt, p, grid, custom_vjp=True)[0], H)
    active = active_set(H, r, fixed)

    def JT(lam):
        return jnp.where(active, lam, 0.0) + vjp_H(jnp.where(active, 0.0, lam))[0]

    M = preconditioner(linearisation(H, t_new, dt, p, grid, active), opts.preconditioner,
                       transpose=True)
    lam = gmres(JT, g, precond=M, rtol=opts.adjoint_rtol, restart=opts.restart,
                max_iter=10 * opts.max_krylov).x
    _, vjp_rest = jax.vjp(
        lambda h_old, q: residual(H, h_old, t_new, dt, q, grid, custom_vjp=True)[0], H_old, p)
    c_old, c_p = vjp_rest(-jnp.where(active, 0.0, lam))
    return (jnp.zeros_like(H), c_old, jnp.zeros_like(t_new), jnp.zeros_like(dt), c_p,
            jnp.zeros_like(fixed))


attach.defvjp(_attach_fwd, _attach_bwd)


def budget(H, H_old, t_new, dt, p: Params, fixed, grid: Grid):
    """(applied mass balance, outflow) [m^3] of a converged step.

    Applied: dt b plus, where the constraint is active, the ablation that found no ice (r > 0).
    Held cells book what would collect there as outflow, as the explicit scheme does.
    """
    r, (qx, qy, b) = residual(H, H_old, t_new, dt, p, grid)
    active = active_set(H, r, fixed) & (fixed <= 0)
    held = fixed > 0
    inflow = H_old - dt * sia.flux_divergence(qx, qy, grid.dx)
    kept = jnp.maximum(-r, 0.0)
    applied = jnp.where(held, kept - inflow, dt * b + jnp.where(active, r, 0.0))
    outflow = dt * grid.dx * sia.edge_outflow(qx, qy) + jnp.sum(jnp.where(held, kept, 0.0)) \
        * grid.cell_area
    return jnp.sum(applied) * grid.cell_area, outflow
