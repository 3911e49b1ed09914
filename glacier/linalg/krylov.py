"""Restarted, right-preconditioned GMRES that reports its iterations (pure JAX).

``jax.scipy.sparse.linalg.gmres`` does not say how many iterations it took or whether it
converged, and both are needed here: the Newton loop reports them and a step that did not
converge must fail loudly. This is flexible GMRES(m) (Saad 1993): the preconditioned vectors
are kept, so the preconditioner may be any fixed function (a multigrid cycle), with classical
Gram-Schmidt applied twice and Givens rotations; the residual norm is tracked at every
iteration without extra products. It is never differentiated: the implicit step has its own
adjoint (``glacier.implicit``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax


class GmresResult(NamedTuple):
    """x: the solution; iterations: matrix-vector products used; residual: ||b - A x||_2 as
    tracked by the recurrence; converged: residual <= max(rtol ||b||, atol)."""

    x: jax.Array
    iterations: jax.Array
    residual: jax.Array
    converged: jax.Array


def gmres(matvec: Callable, b, x0=None, *, precond: Callable | None = None, rtol: float = 1e-6,
          atol: float = 0.0, restart: int = 30, max_iter: int = 300) -> GmresResult:
    """Solve A x = b for arrays of any shape.

    Args:
        matvec: v -> A v (same shape as ``b``).
        b: right-hand side.
        x0: initial guess (zeros by default).
        precond: v -> M v with M ~ A^-1 (identity by default), applied on the right.
        rtol, atol: stop when ||b - A x|| <= max(rtol ||b||, atol).
        restart: Krylov dimension of a cycle.
        max_iter: at most this many products in all.
    """
    shape, dtype = b.shape, b.dtype
    m = int(restart)
    M = precond if precond is not None else (lambda v: v)

    def mv(v):
        return matvec(v.reshape(shape)).ravel()

    def pc(v):
        return M(v.reshape(shape)).ravel()

    b = b.ravel()
    x = jnp.zeros_like(b) if x0 is None else x0.ravel().astype(dtype)
    tol = jnp.maximum(rtol * jnp.linalg.norm(b), atol)
    rows = jnp.arange(m + 1)

    def cycle(carry):
        x, its, _ = carry
        r = b - mv(x)
        beta = jnp.linalg.norm(r)
        V = jnp.zeros((m + 1, b.size), dtype).at[0].set(r / jnp.where(beta > 0, beta, 1.0))
        Z = jnp.zeros((m, b.size), dtype)
        R = jnp.zeros((m + 1, m), dtype)
        cs = jnp.zeros(m, dtype)
        sn = jnp.zeros(m, dtype)
        g = jnp.zeros(m + 1, dtype).at[0].set(beta)

        def arnoldi(st):
            j, V, Z, R, cs, sn, g, _ = st
            z = pc(V[j])
            w = mv(z)
            keep = (rows <= j).astype(dtype)
            h = (V @ w) * keep
            w = w - h @ V
            h2 = (V @ w) * keep
            w = w - h2 @ V
            h = h + h2
            hn = jnp.linalg.norm(w)
            V = V.at[j + 1].set(w / jnp.where(hn > 0, hn, 1.0))
            h = h.at[j + 1].set(hn)

            def rotate(i, h):
                hi = cs[i] * h[i] + sn[i] * h[i + 1]
                hi1 = -sn[i] * h[i] + cs[i] * h[i + 1]
                on = i < j
                return h.at[i].set(jnp.where(on, hi, h[i])).at[i + 1].set(
                    jnp.where(on, hi1, h[i + 1]))

            h = lax.fori_loop(0, m - 1, rotate, h)
            den = jnp.hypot(h[j], h[j + 1])
            safe = jnp.where(den > 0, den, 1.0)
            c = jnp.where(den > 0, h[j] / safe, 1.0)
            s = jnp.where(den > 0, h[j + 1] / safe, 0.0)
            h = h.at[j].set(den).at[j + 1].set(0.0)
            gj = g[j]
            g = g.at[j].set(c * gj).at[j + 1].set(-s * gj)
            return (j + 1, V, Z.at[j].set(z), R.at[:, j].set(h), cs.at[j].set(c),
                    sn.at[j].set(s), g, jnp.abs(g[j + 1]))

        def more(st):
            j, res = st[0], st[-1]
            return (j < m) & (res > tol) & (its + j < max_iter) & jnp.isfinite(res)

        j, V, Z, R, cs, sn, g, res = lax.while_loop(
            more, arnoldi, (0, V, Z, R, cs, sn, g, beta))
        used = jnp.arange(m) < j
        Rm = jnp.where(used[:, None] & used[None, :], R[:m], jnp.eye(m, dtype=dtype))
        y = jax.scipy.linalg.solve_triangular(Rm, jnp.where(used, g[:m], 0.0), lower=False)
        return x + y @ Z, its + j, res

    def again(carry):
        _, its, res = carry
        return (res > tol) & (its < max_iter) & jnp.isfinite(res)

    big = jnp.asarray(jnp.finfo(dtype).max, dtype)  # finite: the first cycle always runs
    x, its, res = lax.while_loop(again, cycle, (x, jnp.zeros((), jnp.int32), big))
    return GmresResult(x=x.reshape(shape), iterations=its, residual=res,
                       converged=res <= tol)
