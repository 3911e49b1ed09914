"""Shallow-ice approximation on a staggered grid with a positivity-preserving flux limiter.

The continuity equation (e.g. Jarosch, Schoof & Anslow 2013, The Cryosphere 7, Eq. 1-4)

    dH/dt = div(D grad S) + b,   S = B + H,
    D = Gamma H^(n+2) |grad S|^(n-1) + fs (rho g)^n H^n |grad S|^(n-1),
    Gamma = 2 A (rho g)^n / (n + 2),

is discretised in flux form on cell faces. The thickness entering the face diffusivity is the
MUSCL reconstruction with the superbee limiter, taken from the upstream side of the face (Jarosch
et al. 2013, Eqs. 19-23). This is what keeps the steep-bed benchmark (the bedrock step) within a
few per cent of the exact volume, where upstream or Mahaffy-type schemes gain 67 to 141 %.

Positivity. On top of the MUSCL scheme, each face flux is scaled by the donor cell's factor
``min(1, H / outflow)`` so that no cell can export more ice than it holds in one step (a
conservative flux limiter in the spirit of flux-corrected transport). It moves ice only between
cells, so it neither creates nor removes mass; it is inactive in ordinary steps within the
stability limit. The domain is surrounded by ghost cells with H = 0 and the bed of the edge cell:
ice that reaches the edge leaves through it and is counted by the solver.

All functions are pure; arrays are ``[y, x]`` with units metres and years.
"""

from __future__ import annotations

import functools
from typing import Protocol

import jax
import jax.numpy as jnp

from ..grid import Grid, cell_to_face, faces_within
from . import native
from .faces import face_states_autodiff
from .faces_adjoint import face_states_custom
from .stencils import ghost_surface, pad


class Rheology(Protocol):
    """What the solver needs of a flow law, physical or learned; it cannot tell them apart."""

    def diffusivity(self, H, slope2, axis):
        """Diffusivity D [m^2 a^-1] from thickness H [m] and |grad S|^2 at faces normal to
        ``axis`` (1: x-faces of shape (ny, nx+1), 0: y-faces of shape (ny+1, nx))."""

    def surface_speed(self, H, slope2):
        """Surface speed [m a^-1] at cell centres from H and |grad S|^2 of shape (ny, nx)."""


def power(x, p: float):
    """``x**p`` for a static exponent: repeated multiplication when p is a whole number."""
    p = float(p)
    if p.is_integer():
        return x ** int(p)
    safe = jnp.where(x > 0, x, 1.0)
    return jnp.where(x > 0, safe**p, 0.0)


def glen_gamma(A, n: float, rho: float, g: float):
    """Gamma = 2 A (rho g)^n / (n + 2) [m^-n a^-1 when A is in Pa^-n a^-1]."""
    return 2.0 * A * (rho * g) ** n / (n + 2.0)


def glen_diffusivity_parts(H, slope2, A, *, n: float, rho: float, g: float, fs=0.0):
    """Deformation and sliding diffusivities of the SIA [m^2 a^-1].

    D_deform = Gamma H^(n+2) |grad S|^(n-1)  (Cuffey & Paterson 2010, Eq. 8.35 integrated);
    D_slide = fs (rho g)^n H^n |grad S|^(n-1) (the Budd-type sliding of Oerlemans 1997 / OGGM).

    Args:
        H: ice thickness [m], any shape.
        slope2: squared surface slope |grad S|^2 [-], broadcastable with H.
        A: Glen's rate factor [Pa^-n a^-1], scalar or broadcastable with H.
        n, rho, g: Glen exponent, ice density [kg m^-3], gravity [m s^-2] (static).
        fs: sliding parameter [Pa^-n m^2 a^-1], scalar or broadcastable; 0 disables sliding.
    """
    s = power(slope2, 0.5 * (n - 1.0))
    deform = glen_gamma(A, n, rho, g) * power(H, n + 2.0) * s
    slide = fs * (rho * g) ** n * power(H, n) * s
    return deform, slide


def glen3_coefficients(A, fs, *, n: float, rho: float, g: float):
    """(Gamma, fs (rho g)^n) as one array, the coefficients of ``coef_diffusivity``, when the
    native kernel can take the law (n = 3): of shape (2,) for scalar A and fs; when either is
    a (ny, nx) field, (3, ny, nx): the two per cell (a scalar one broadcast) and an outline
    weight of 1 (``laws.ClosedOutline`` sets it to its mask); None otherwise."""
    shapes = {jnp.shape(A), jnp.shape(fs)} - {()}
    if float(n) != 3.0 or len(shapes) > 1 or any(len(s) != 2 for s in shapes):
        return None
    dtype = jnp.result_type(A, fs)
    parts = [jnp.asarray(glen_gamma(A, n, rho, g), dtype), jnp.asarray(fs * (rho * g) ** n, dtype)]
    if shapes:
        shape = next(iter(shapes))
        parts = [jnp.broadcast_to(p, shape) for p in parts] + [jnp.ones(shape, dtype)]
    return jnp.stack(parts)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def coefficients_to_cells(coef, shape: tuple[int, int]):
    """The scalar coefficients ``coef`` (k,) as k uniform cell fields (k, *shape) (a law in a
    closed outline: ``laws.ClosedOutline.native_coefficients``). Its cotangent, the sum of
    each field's, is one matrix-vector product: XLA's reduction of the two fields took about
    60 us of a 100 x 100 gradient step."""
    return jnp.broadcast_to(coef[:, None, None], (coef.shape[0], *shape))


def _to_cells_fwd(coef, shape):
    return coefficients_to_cells(coef, shape), None


def _to_cells_bwd(shape, _, ct):
    ones = jnp.ones((shape[0] * shape[1],), ct.dtype)
    return (ct.reshape(ct.shape[0], -1) @ ones,)


coefficients_to_cells.defvjp(_to_cells_fwd, _to_cells_bwd)


def coef_diffusivity(H, slope2, coef, axis: int | None = None):
    """Glen's n = 3 diffusivity from ``glen3_coefficients``: Gamma H^5 s2 + fs (rho g)^3 H^3 s2
    (``glen_diffusivity_parts`` summed). Coefficient fields (3, ny, nx) are averaged to the
    faces normal to ``axis`` (``grid.cell_to_face``, as ``laws.GlenLaw`` does a field A) and
    weighted by the outline's ``grid.faces_within`` (``laws.ClosedOutline``)."""
    coef = coef.astype(H.dtype)
    if coef.ndim == 1:
        return coef[0] * power(H, 5.0) * slope2 + coef[1] * power(H, 3.0) * slope2
    gamma, slide = cell_to_face(coef[0], axis), cell_to_face(coef[1], axis)
    D = gamma * power(H, 5.0) * slope2 + slide * power(H, 3.0) * slope2
    return D * faces_within(coef[2], axis)


def face_states(H, bed, grid: Grid, *, custom_vjp: bool = True):
    """Upstream MUSCL thickness, squared slope and normal surface gradient at the faces.

    Returns ``((H_x, slope2_x, dSdx), (H_y, slope2_y, dSdy))``, x-face arrays of shape
    (ny, nx + 1) and y-face arrays of shape (ny + 1, nx). The two directions use the same
    expressions with the axes swapped, so transposing the domain transposes the result.

    The cross-slope at a face (dS/dy at x-faces, dS/dx at y-faces) is the mean of the limited
    slopes of its two cells (monotonised-central limiter: the centred difference where the
    surface is smooth, at most twice the smaller one-sided difference at an ice cliff or
    bedrock step), so that a cliff across the face does not inflate the diffusivity of the
    faces beside it (which would force needlessly tiny steps).

    Args:
        custom_vjp: differentiate in reverse mode with the hand-derived adjoint of
            ``physics.faces_adjoint`` (a ``jax.custom_vjp``) instead of JAX's automatic VJP.
            The two agree to round-off, kinks included (``tests/gradients/test_sia_vjp.py``);
            on the 100 x 100 valley (CPU, float64) the custom one makes the VJP of a solver
            step about 3x and the checkpointed gradient of a solve about 1.6x cheaper
            (``scripts/profile_vjp.py``). With it, ``face_states`` has no forward-mode
            derivative (``jax.jvp``): pass False for forward-over-reverse (Hessian-vector
            products). The values are those of ``face_states_autodiff`` either way.
    """
    if custom_vjp:
        return face_states_custom(H, bed, grid)
    return face_states_autodiff(H, bed, grid)


def fluxes(H, bed, rheology: Rheology, grid: Grid, *, custom_vjp: bool = True,
           through: bool = False):
    """Face fluxes q = -D dS/dn [m^2 a^-1] and the largest face diffusivity.

    Returns ``(qx, qy, D_max)``: qx on x-faces (ny, nx+1), positive towards +x; qy on y-faces
    (ny+1, nx), positive towards +y; with ``through``, ``(qx, qy, D_max, H)``: the thickness
    for the caller's other uses of it (the same values; on the native path its cotangent is
    added by the face adjoint's kernel, ``native.fluxes_native``). ``custom_vjp``: as
    ``face_states``. D_max is what the explicit step is sized from: the largest D, or, for a
    rheology with a ``stiffness(H, slope2, axis)`` (a learned law, whose D may grow faster
    with slope or thickness than Glen's n = 3, for which the step limits were set), the
    largest D times that factor.

    A law with ``native_coefficients`` (Glen's, n = 3, A and sliding scalars or fields) runs
    on the CPU as one native kernel (``physics.native``), differentiated by its adjoint kernel:
    the same values and gradients to round-off (``GLACIER_NATIVE_VJP=0``: reverse mode through
    the expressions below).
    """
    # Looked up on the class: a wrapper that forwards attributes (as laws.ClosedOutline does)
    # changes the diffusivity, so it must not hand over its wrapped law's coefficients
    # (ClosedOutline gives its own: the wrapped law's with the outline as their weight).
    native_coef = getattr(type(rheology), "native_coefficients", None)
    coef = native_coef(rheology) if (native_coef is not None and custom_vjp) else None
    if (coef is not None and jnp.ndim(H) == 2 and jnp.shape(coef)[1:] in ((), jnp.shape(H))
            and native.usable(H)):
        def reference(H, bed, coef):  # the same quantities as XLA expressions, for gradients
            (Hx, s2x, gx), (Hy, s2y, gy) = face_states(H, bed, grid, custom_vjp=True)
            Dx = coef_diffusivity(Hx, s2x, coef, 1)
            Dy = coef_diffusivity(Hy, s2y, coef, 0)
            return -Dx * gx, -Dy * gy, jnp.maximum(jnp.max(Dx), jnp.max(Dy))
        return native.fluxes_native(H, bed, coef, reference, dx=grid.dx,
                                    periodic=grid.periodic, through=through)
    (Hx, s2x, gx), (Hy, s2y, gy) = face_states(H, bed, grid, custom_vjp=custom_vjp)
    Dx = rheology.diffusivity(Hx, s2x, 1)
    Dy = rheology.diffusivity(Hy, s2y, 0)
    stiffness = getattr(rheology, "stiffness", None)
    if stiffness is None:
        D_max = jnp.maximum(jnp.max(Dx), jnp.max(Dy))
    else:  # laws whose linearisation is stiffer than Glen's (n = 3) at the same D
        D_max = jnp.maximum(jnp.max(Dx * stiffness(Hx, s2x, 1)),
                            jnp.max(Dy * stiffness(Hy, s2y, 0)))
    if through:
        return -Dx * gx, -Dy * gy, D_max, H
    return -Dx * gx, -Dy * gy, D_max


def limit_outflow(H, qx, qy, dt, grid: Grid):
    """Scale face fluxes so that no cell exports more than it holds in a step of ``dt``.

    Each face flux is multiplied by its donor cell's factor min(1, H / (dt * outflow / dx)).
    Ghost cells (outside the domain) hold no ice, so nothing flows in from them. Conservative:
    what leaves one cell enters its neighbour or crosses the domain edge.
    """
    out = (
        jnp.maximum(qx[:, 1:], 0.0)
        + jnp.maximum(-qx[:, :-1], 0.0)
        + jnp.maximum(qy[1:, :], 0.0)
        + jnp.maximum(-qy[:-1, :], 0.0)
    ) * (dt / grid.dx)
    # min(1, H / out). The floor keeps the derivative -H/out^2 finite: 1e-30 m in float64; in
    # float32 (where out^2 underflows much earlier) 1e-6 m, so only sub-micrometre outflows,
    # which cannot matter, are limited a little more than needed.
    floor = 1e-30 if H.dtype == jnp.float64 else 1e-6
    scale = jnp.minimum(1.0, H / jnp.maximum(out, floor))
    sx = pad(scale, (0, 1), grid.periodic, "zero")  # ice-free ghosts: factor 0
    sy = pad(scale, (1, 0), grid.periodic, "zero")
    qx = qx * jnp.where(qx > 0.0, sx[:, :-1], sx[:, 1:])
    qy = qy * jnp.where(qy > 0.0, sy[:-1, :], sy[1:, :])
    return qx, qy


def limited_divergence(H, qx, qy, dt, grid: Grid, *, custom_vjp: bool = True):
    """div q [m a-1] of the fluxes limited by ``limit_outflow`` and their net outflow through
    the domain edges per unit face length [m^2 a^-1]: one native kernel on the CPU
    (``physics.native``, differentiated by its adjoint kernel), else the XLA expressions.
    ``custom_vjp=False``: the XLA expressions only (forward mode, as in ``fluxes``)."""
    def reference(H, qx, qy, dt):
        lx, ly = limit_outflow(H, qx, qy, dt, grid)
        return flux_divergence(lx, ly, grid.dx), edge_outflow(lx, ly)
    if custom_vjp and jnp.ndim(H) == 2 and native.usable(H):
        return native.limited_divergence_native(H, qx, qy, dt, reference, dx=grid.dx,
                                                periodic=grid.periodic)
    return reference(H, qx, qy, dt)


def step_end(H, div, dt, b, ice_free=None, *, custom_vjp: bool = True):
    """The end of an explicit step: H_flow = H - dt div, then the balance b on it, clipped so
    that ablation removes at most the ice present, H_new = max(H_flow + dt b, 0); cells held
    ``ice_free`` (a 0/1 field, or None) emptied.

    Returns ``(H_new, applied, removed)``: the new thickness [m], sum(max(H_flow + dt b, 0) -
    H_flow) (the balance applied, before emptying) and the sum of what was emptied [m]; times
    the cell area, volumes. On the CPU one native kernel (``physics.native``: one pass where XLA
    makes several, each recomputing the maximum), differentiated by its adjoint kernel
    (``GLACIER_NATIVE_VJP=0``: through the expressions below); ``custom_vjp=False``: the
    expressions only (forward mode, as in ``fluxes``)."""
    def reference(H, div, dt, b, ice_free):
        H_flow = H - dt * div
        H_new = jnp.maximum(H_flow + dt * b, 0.0)
        applied = jnp.sum(H_new - H_flow)
        if ice_free is None:
            return H_new, applied, jnp.zeros_like(applied)
        removed = H_new * ice_free
        return H_new - removed, applied, jnp.sum(removed)
    if custom_vjp and jnp.ndim(H) == 2 and native.usable(H):
        return native.update_native(H, div, dt, b, ice_free, reference)
    return reference(H, div, dt, b, ice_free)


def limited_step_end(H, qx, qy, dt, b, ice_free, grid: Grid, *, custom_vjp: bool = True):
    """``limited_divergence`` then ``step_end``: (H_new, applied, removed, edge outflow). On
    the CPU their kernels, differentiated as one by a fused adjoint kernel that remakes div q
    where it needs it (``native.limited_step_end_native``: reverse mode then reruns neither
    the limiter nor keeps div q); elsewhere, and with ``custom_vjp=False``, the two in turn."""
    def reference(H, qx, qy, dt, b, ice_free):
        div, edge = limited_divergence(H, qx, qy, dt, grid, custom_vjp=False)
        return (*step_end(H, div, dt, b, ice_free, custom_vjp=False), edge)
    if custom_vjp and jnp.ndim(H) == 2 and native.usable(H):
        return native.limited_step_end_native(H, qx, qy, dt, b, ice_free, reference,
                                              dx=grid.dx, periodic=grid.periodic)
    div, edge = limited_divergence(H, qx, qy, dt, grid, custom_vjp=custom_vjp)
    return (*step_end(H, div, dt, b, ice_free, custom_vjp=custom_vjp), edge)


def flux_divergence(qx, qy, dx: float):
    """div q at cell centres [m a^-1], shape (ny, nx)."""
    return (qx[:, 1:] - qx[:, :-1] + qy[1:, :] - qy[:-1, :]) / dx


def edge_outflow(qx, qy):
    """Net flux out through the domain edges per unit face length, summed [m^2 a^-1]."""
    return jnp.sum(qx[:, -1]) - jnp.sum(qx[:, 0]) + jnp.sum(qy[-1, :]) - jnp.sum(qy[0, :])


def stable_dt(D_max, dx: float, cfl: float, max_dt: float):
    """Largest explicit step dt = cfl dx^2 / D_max, capped at ``max_dt`` [a].

    For linear diffusion on a square grid the explicit scheme is stable for dt <= dx^2 / (4 D);
    the nonlinear SIA needs a safety margin below that (``cfl`` of about 0.1 to 0.2).
    """
    return jnp.minimum(max_dt, cfl * dx * dx / jnp.maximum(D_max, 1e-30))


def centred_slope2(H, bed, grid: Grid):
    """|grad S|^2 at cell centres from centred differences over the ghost-padded surface."""
    dx = grid.dx
    Sp = ghost_surface(H, bed, grid.periodic)
    dSdx = (Sp[1:-1, 2:] - Sp[1:-1, :-2]) / (2.0 * dx)
    dSdy = (Sp[2:, 1:-1] - Sp[:-2, 1:-1]) / (2.0 * dx)
    return dSdx * dSdx + dSdy * dSdy


def glen_surface_speed(H, slope2, A, *, n: float, rho: float, g: float, fs=0.0):
    """SIA surface speed [m a^-1]: 2A (rho g)^n H^(n+1) |grad S|^n / (n+1) + sliding.

    Sliding speed fs (rho g)^n H^(n-1) |grad S|^n (Oerlemans 1997); Cuffey & Paterson (2010)
    Eq. 8.34 at the surface for the deformation part.
    """
    s = power(slope2, 0.5 * n)
    u_def = 2.0 * A * (rho * g) ** n / (n + 1.0) * power(H, n + 1.0) * s
    u_slide = fs * (rho * g) ** n * power(H, n - 1.0) * s
    return u_def + jnp.where(H > 0.0, u_slide, 0.0)
