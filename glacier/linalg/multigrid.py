"""Five-point operators on a cell grid and a multigrid V-cycle to precondition them.

The linearised implicit SIA step is, to first order, a conservative operator on the cells

    (A v)_i = m_i v_i + sum over the faces f of cell i of +-F_f(v),
    F_f(v) = t_f (v_L - v_R) + max(c_f, 0) v_L + min(c_f, 0) v_R,

a flux across every face from its low (L) to its high (R) cell: diffusion with coupling
``t_f >= 0`` and first-order upwind advection with signed coefficient ``c_f`` (positive: towards
+x / +y). Ghost cells beyond the domain edges hold v = 0. ``FaceOperator`` holds (m, t, c) and
coarsens by aggregation of 2 x 2 cells: masses and advective fluxes add up (as in the Galerkin
product with piecewise-constant prolongation), and the diffusive couplings of the two fine
faces on a coarse face are averaged, which is what rediscretising the diffusion on the coarse
cells gives (the plain Galerkin sum would make the coarse diffusion twice too stiff). Odd sizes
are padded with one empty row or column. ``FivePoint`` is the assembled stencil of one level,
with its transpose (the adjoint solve of a step is preconditioned by the transposed V-cycle).

``VCycle``: red-black Gauss-Seidel smoothing, restriction by summing 2 x 2 cells,
piecewise-constant prolongation, and a dense LU solve on the coarsest level (a few hundred
cells at most). Setting it up costs a few stencil passes and one small factorisation; one
application costs about (pre + post + 2) fine-grid stencil passes times 4/3.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FivePoint:
    """(A v)_ij = diag v_ij - west v_i,j-1 - east v_i,j+1 - south v_i-1,j - north v_i+1,j,
    with v = 0 beyond the edges; all arrays (ny, nx)."""

    diag: jax.Array
    west: jax.Array
    east: jax.Array
    south: jax.Array
    north: jax.Array

    def __call__(self, v):
        return self.diag * v - _neighbours(self.west, self.east, self.south, self.north, v)

    def transpose(self) -> FivePoint:
        """The stencil of A^T."""
        return FivePoint(diag=self.diag, west=_from_west(self.east), east=_from_east(self.west),
                         south=_from_south(self.north), north=_from_north(self.south))

    def dense(self) -> jax.Array:
        """The (ny nx, ny nx) matrix (for the coarsest level and for tests)."""
        ny, nx = self.diag.shape
        idx = np.arange(ny * nx).reshape(ny, nx)
        A = jnp.zeros((ny * nx, ny * nx), self.diag.dtype)
        A = A.at[idx.ravel(), idx.ravel()].set(self.diag.ravel())
        for coef, di, dj in ((self.west, 0, -1), (self.east, 0, 1), (self.south, -1, 0),
                             (self.north, 1, 0)):
            i, j = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
            ok = (i + di >= 0) & (i + di < ny) & (j + dj >= 0) & (j + dj < nx)
            rows = idx[i[ok], j[ok]]
            cols = idx[i[ok] + di, j[ok] + dj]
            A = A.at[rows, cols].add(-coef[ok])
        return A


def _neighbours(w, e, s, n, v):
    """w v_west + e v_east + s v_south + n v_north (one pad: XLA fuses it into one pass)."""
    vp = jnp.pad(v, 1)
    return w * vp[1:-1, :-2] + e * vp[1:-1, 2:] + s * vp[:-2, 1:-1] + n * vp[2:, 1:-1]


def _from_west(v):   # v[i, j-1], 0 at j = 0
    return jnp.pad(v[:, :-1], ((0, 0), (1, 0)))


def _from_east(v):   # v[i, j+1]
    return jnp.pad(v[:, 1:], ((0, 0), (0, 1)))


def _from_south(v):  # v[i-1, j]
    return jnp.pad(v[:-1, :], ((1, 0), (0, 0)))


def _from_north(v):  # v[i+1, j]
    return jnp.pad(v[1:, :], ((0, 1), (0, 0)))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FaceOperator:
    """A conservative cell operator given by face couplings (module docstring).

    Attributes:
        mass: m, (ny, nx), positive.
        tx, ty: diffusive couplings on x-faces (ny, nx+1) and y-faces (ny+1, nx), >= 0.
        cx, cy: signed upwind advective coefficients on the same faces.
    """

    mass: jax.Array
    tx: jax.Array
    ty: jax.Array
    cx: jax.Array
    cy: jax.Array

    def stencil(self) -> FivePoint:
        cxp, cxm = jnp.maximum(self.cx, 0.0), jnp.minimum(self.cx, 0.0)
        cyp, cym = jnp.maximum(self.cy, 0.0), jnp.minimum(self.cy, 0.0)
        tx, ty = self.tx, self.ty
        diag = (self.mass + tx[:, 1:] + cxp[:, 1:] + tx[:, :-1] - cxm[:, :-1]
                + ty[1:, :] + cyp[1:, :] + ty[:-1, :] - cym[:-1, :])
        zx = jnp.zeros_like(self.mass[:, :1])
        zy = jnp.zeros_like(self.mass[:1, :])
        # Couplings to ghosts (the edge faces) are dropped: ghosts hold 0.
        east = jnp.concatenate([(tx[:, 1:] - cxm[:, 1:])[:, :-1], zx], axis=1)
        west = jnp.concatenate([zx, (tx[:, :-1] + cxp[:, :-1])[:, 1:]], axis=1)
        north = jnp.concatenate([(ty[1:, :] - cym[1:, :])[:-1, :], zy], axis=0)
        south = jnp.concatenate([zy, (ty[:-1, :] + cyp[:-1, :])[1:, :]], axis=0)
        return FivePoint(diag=diag, west=west, east=east, south=south, north=north)

    def __call__(self, v):
        return self.stencil()(v)

    def coarsen(self) -> FaceOperator:
        """The operator on 2 x 2 aggregates (module docstring); odd sizes padded."""
        ny, nx = self.mass.shape
        py, px = ny % 2, nx % 2
        mass = jnp.pad(self.mass, ((0, py), (0, px)))
        cy_, cx_ = (ny + py) // 2, (nx + px) // 2
        mass = mass.reshape(cy_, 2, cx_, 2).sum(axis=(1, 3))
        # x-faces: pad rows to even and one face column per padded cell column.
        tx = jnp.pad(self.tx, ((0, py), (0, px)))[:, ::2]
        cx = jnp.pad(self.cx, ((0, py), (0, px)))[:, ::2]
        tx = 0.5 * (tx[0::2] + tx[1::2])
        cx = cx[0::2] + cx[1::2]
        ty = jnp.pad(self.ty, ((0, py), (0, px)))[::2, :]
        cyv = jnp.pad(self.cy, ((0, py), (0, px)))[::2, :]
        ty = 0.5 * (ty[:, 0::2] + ty[:, 1::2])
        cyv = cyv[:, 0::2] + cyv[:, 1::2]
        return FaceOperator(mass=mass, tx=tx, ty=ty, cx=cx, cy=cyv)


def restrict(r, coarse_shape):
    """Sum over 2 x 2 aggregates (odd sizes padded with zeros)."""
    ny, nx = r.shape
    r = jnp.pad(r, ((0, ny % 2), (0, nx % 2)))
    return r.reshape(coarse_shape[0], 2, coarse_shape[1], 2).sum(axis=(1, 3))


def prolong(e, fine_shape):
    """Piecewise-constant prolongation of a coarse field to ``fine_shape``."""
    return jnp.repeat(jnp.repeat(e, 2, axis=0), 2, axis=1)[: fine_shape[0], : fine_shape[1]]


def _colour(shape):
    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    return jnp.asarray((i + j) % 2 == 0)


def gauss_seidel(A: FivePoint, x, b, sweeps: int, *, reverse: bool = False):
    """Red-black Gauss-Seidel sweeps (black-red when ``reverse``, for a symmetric cycle)."""
    inv = 1.0 / A.diag
    w, e, s, n, bi = A.west * inv, A.east * inv, A.south * inv, A.north * inv, b * inv
    red = _colour(x.shape)
    order = (~red, red) if reverse else (red, ~red)
    for _ in range(sweeps):
        for colour in order:
            x = jnp.where(colour, bi + _neighbours(w, e, s, n, x), x)
    return x


@dataclasses.dataclass(frozen=True)
class VCycle:
    """A multigrid V-cycle approximating A^-1 (or A^-T), built inside a jitted function.

    Args (``build``):
        op: the fine-level ``FaceOperator``.
        transpose: precondition A^T instead of A.
        pre, post: Gauss-Seidel sweeps before and after the coarse-grid correction.
        coarsest: largest number of cells solved directly.
    """

    levels: tuple[FivePoint, ...]
    lu: tuple
    pre: int
    post: int

    @classmethod
    def build(cls, op: FaceOperator, *, transpose: bool = False, pre: int = 2, post: int = 2,
              coarsest: int = 256) -> VCycle:
        levels = []
        while True:
            A = op.stencil()
            levels.append(A.transpose() if transpose else A)
            ny, nx = op.mass.shape
            if ny * nx <= coarsest or min(ny, nx) <= 2:
                break
            op = op.coarsen()
        lu = jsl.lu_factor(levels[-1].dense())
        return cls(levels=tuple(levels), lu=lu, pre=pre, post=post)

    @property
    def depth(self) -> int:
        return len(self.levels)

    def __call__(self, b):
        return self._cycle(0, b)

    def _cycle(self, k: int, b):
        A = self.levels[k]
        if k == len(self.levels) - 1:
            return jsl.lu_solve(self.lu, b.ravel()).reshape(b.shape)
        x = gauss_seidel(A, jnp.zeros_like(b), b, self.pre)
        coarse = self.levels[k + 1].diag.shape
        e = self._cycle(k + 1, restrict(b - A(x), coarse))
        x = x + prolong(e, b.shape)
        return gauss_seidel(A, x, b, self.post, reverse=True)
