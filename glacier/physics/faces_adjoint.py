"""Hand-derived reverse-mode adjoint (vector-Jacobian product) of the MUSCL face states.

``face_states_custom`` is ``faces.face_states_autodiff`` with the ``jax.custom_vjp`` rules at
the end of this module; ``sia.face_states(..., custom_vjp=True)`` (the default) uses it. Two
things make it cheaper than JAX's automatic VJP:

1. The adjoint is written by hand as a few elementwise expressions over shifted arrays, with
   the limiters' piecewise-constant derivatives precomputed once per cell (one coded number
   per cell and limiter), instead of JAX transposing every slice, pad, select, min and max.
2. What the forward rule computes (the outputs and the adjoint's coefficients) and what the
   backward rule computes are each evaluated in a region that XLA compiles on its own
   (``computed_once``). XLA:CPU otherwise fuses the cheap elementwise forward expressions into
   every loop of the backward pass that reads them, once per reader and stencil offset: the
   MUSCL reconstruction was recomputed about eight times in the VJP of one solver step.

Measured on the 100 x 100 valley (``scripts/profile_vjp.py``, CPU, float64): (1) alone made the
VJP of a solver step about 1.2x cheaper, (1) and (2) together about 3x. ``sia.limit_outflow``
keeps JAX's AD: a hand-written VJP of it measured slower (about 65 against 46 us).

Notation. ``P_k`` is a padded row along one axis, ``d_k = P_{k+1} - P_k`` its differences,
``ct_x`` the cotangent of ``x``: for y = f(x), ct_x = (df/dx)^T ct_y. A slice
``y = x[s:s+m]`` has the adjoint "zero-pad ct_y back to the length of x" (``_pad_axis``), so a
sum of shifted slices in the forward is a sum of shifted zero-pads in the adjoint.

Kinks. The limiters are piecewise linear; where the forward sits on a kink (a tie in a
min/max, |a| = |b| in minmod, a zero difference, g = 0 in the upwind switch) the adjoint takes
the same one-sided derivative as JAX's AD of the forward expressions, so the two agree to
round-off everywhere (``tests/gradients/test_sia_vjp.py``). JAX's rules that decide this:

- ``jnp.where(c, x, y)``: the cotangent goes to the selected branch, none to the predicate;
- ``jnp.minimum``/``jnp.maximum``: weight 1 to the argument equal to the result, 1/2 to each at
  a tie (the "balanced" rule of ``lax.max_p``);
- ``jnp.abs``: derivative +1 at 0; ``jnp.sign``: derivative 0;
- ``minmod(a, b)`` returns ``b`` at |a| = |b|, so b takes the derivative there.

All functions are pure and shape-static; arrays are ``[y, x]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ..grid import Grid
from .faces import face_states_autodiff
from .stencils import minmod, pad, shift


def computed_once(fn, *args):
    """``fn(*args)``, compiled by XLA as a region of its own: its inputs and outputs are
    materialised arrays, and nothing inside is fused into the loops that use the outputs.

    The region is a ``lax.cond`` whose two branches are both ``fn``, so the result does not
    depend on the (data-dependent, hence opaque to XLA) predicate. Under ``jax.vmap`` a batched
    predicate would turn the conditional into a select of both branches (computed twice, and
    fused again); the ``custom_vmap`` rule instead evaluates the batched ``fn`` in one
    conditional whose predicate is a single element of the batch. Neither the conditional nor
    ``custom_vmap`` is meant to be differentiated: this is for the rules of a ``custom_vjp``.
    """
    leaves, tree = jax.tree_util.tree_flatten(args)

    @jax.custom_batching.custom_vmap
    def run(*leaves):
        pred = jnp.isnan(jnp.ravel(leaves[0])[0])  # False in practice; either branch is fn
        return lax.cond(pred, fn, fn, *jax.tree_util.tree_unflatten(tree, leaves))

    @run.def_vmap
    def run_batched(axis_size, in_batched, *leaves):
        leaves = [x if b else jnp.broadcast_to(x, (axis_size,) + jnp.shape(x))
                  for x, b in zip(leaves, in_batched, strict=True)]
        out = computed_once(jax.vmap(fn), *jax.tree_util.tree_unflatten(tree, leaves))
        return out, jax.tree_util.tree_map(lambda _: True, out)

    return run(*leaves)


def _pad_axis(x, axis: int, lo: int, hi: int):
    """Zero-pad ``x`` by ``lo`` and ``hi`` entries along ``axis``: the adjoint of a slice."""
    cfg = [(0, 0), (0, 0)]
    cfg[axis] = (lo, hi)
    return jnp.pad(x, cfg)


def pad_transpose(ct, width: tuple[int, int], periodic: tuple[bool, bool], fill: str):
    """Adjoint of ``stencils.pad(field, width, periodic, fill)``: the cotangent of ``field``.

    Per axis with w ghosts on each side of n entries (the padding is separable, so the axes are
    transposed one after the other, in the reverse order of the forward):

    - "zero": ghosts are constants, ct_field = ct[w:w+n] (crop);
    - "edge": ghosts copy the first and last entry, so those collect the ghosts' cotangents:
      ct_field = ct[w:w+n], ct_field[0] += sum(ct[:w]), ct_field[n-1] += sum(ct[w+n:]);
    - periodic ("wrap", w <= n): the low ghosts copy field[n-w:], the high ghosts field[:w]:
      ct_field = ct[w:w+n], ct_field[n-w:] += ct[:w], ct_field[:w] += ct[w+n:].
    """
    for axis in (1, 0):
        w = width[axis]
        if w == 0:
            continue
        n = ct.shape[axis] - 2 * w
        core = shift(ct, axis, w, w + n)
        lo, hi = shift(ct, axis, None, w), shift(ct, axis, w + n, None)
        if periodic[axis]:
            if w > n:
                raise ValueError(f"wrap padding by {w} of {n} entries is not supported")
            core = core + _pad_axis(lo, axis, n - w, 0) + _pad_axis(hi, axis, 0, n - w)
        elif fill == "edge":
            lo = jnp.sum(lo, axis=axis, keepdims=True)
            hi = jnp.sum(hi, axis=axis, keepdims=True)
            core = core + _pad_axis(lo, axis, 0, n - 1) + _pad_axis(hi, axis, n - 1, 0)
        ct = core
    return ct


def minmod_weights(a, b):
    """Partial derivatives (d/da, d/db) of ``stencils.minmod(a, b)`` as JAX's AD takes them.

    minmod = where(a b > 0, where(|a| < |b|, a, b), 0): (1, 0) where a b > 0 and |a| < |b|,
    (0, 1) where a b > 0 and |a| >= |b| (b wins the tie), else (0, 0).
    """
    same = a * b > 0.0
    pick_a = jnp.abs(a) < jnp.abs(b)
    one, zero = jnp.ones_like(a), jnp.zeros_like(a)
    return jnp.where(same & pick_a, one, zero), jnp.where(same & ~pick_a, one, zero)


def mc_slope_weights(a, b):
    """Partial derivatives (d/da, d/db) of ``stencils.mc_slope(a, b) = minmod(p, q)``,
    p = (a + b)/2, q = 2 minmod(a, b), as JAX's AD takes them (chain rule through the two minmods):

        (1/2, 1/2)        where p q > 0 and |p| < |q|      (the centred difference),
        2 minmod_weights  where p q > 0 and |p| >= |q|     (twice the smaller difference),
        (0, 0)            elsewhere.

    Each is in {0, 1/2, 2}; p q > 0 implies a b > 0.
    """
    p = 0.5 * (a + b)
    q = 2.0 * minmod(a, b)
    outer = p * q > 0.0
    centred = jnp.abs(p) < jnp.abs(q)
    pick_a = jnp.abs(a) < jnp.abs(b)
    half, two, zero = jnp.full_like(a, 0.5), jnp.full_like(a, 2.0), jnp.zeros_like(a)
    wa = jnp.where(outer, jnp.where(centred, half, jnp.where(pick_a, two, zero)), zero)
    wb = jnp.where(outer, jnp.where(centred, half, jnp.where(pick_a, zero, two)), zero)
    return wa, wb


def superbee_slope_weights(a, b):
    """Partial derivatives (d/da, d/db) of ``stencils.superbee_slope(a, b)`` as JAX's AD takes them.

    Where a b > 0 the forward is s = sign(b) max(min(2A, B), min(A, 2B)) with A = |a|, B = |b|
    (sign is piecewise constant, and sign(a) = sign(b), so d/da = dmag/dA and d/db = dmag/dB);
    elsewhere s = 0 and both are 0. JAX differentiates min/max with weight 1/2 to each argument
    at a tie (``lax.max_p``'s balanced rule), which gives, with r = A / B:

        r < 1/2: (2, 0)      r = 1/2: (1, 1/2)    1/2 < r < 1: (0, 1)    r = 1: (1/2, 1/2)
        1 < r < 2: (1, 0)    r = 2: (1/2, 1)      r > 2: (0, 2)

    (the inner min/max tie m1 = m2 happens only at r = 1, where both are A = B). 2A and 2B are
    exact, so the cases are decided by the same comparisons as the forward's min and max.
    """
    abs_a, abs_b = jnp.abs(a), jnp.abs(b)
    two_a, two_b = 2.0 * abs_a, 2.0 * abs_b
    same = a * b > 0.0
    full = lambda v: jnp.full_like(a, v)  # noqa: E731

    def by_ratio(lt_half, at_half, lt_one, at_one, lt_two, at_two, gt_two):
        w = jnp.where(abs_a == two_b, full(at_two), full(gt_two))
        w = jnp.where(abs_a < two_b, full(lt_two), w)
        w = jnp.where(abs_a == abs_b, full(at_one), w)
        w = jnp.where(abs_a < abs_b, full(lt_one), w)
        w = jnp.where(two_a == abs_b, full(at_half), w)
        w = jnp.where(two_a < abs_b, full(lt_half), w)
        return jnp.where(same, w, full(0.0))

    return (by_ratio(2.0, 1.0, 0.0, 0.5, 1.0, 0.5, 0.0),
            by_ratio(0.0, 0.5, 1.0, 0.5, 0.0, 1.0, 2.0))


# The two weights of a limiter as one number per cell (fewer arrays to compute and keep).


def encode_superbee(wa, wb):
    """One number per cell for the superbee weights: wa + 8 wb (the eight pairs of
    ``superbee_slope_weights`` give 0, 2, 5, 8, 4.5, 1, 8.5, 16: all distinct, all exact)."""
    return wa + 8.0 * wb


def decode_superbee(code):
    """Inverse of ``encode_superbee``: wb from the thresholds 4, 8, 16, then wa = code - 8 wb."""
    one = jnp.ones_like(code)
    wb = jnp.where(code >= 16.0, 2.0 * one,
                   jnp.where(code >= 8.0, one, jnp.where(code >= 4.0, 0.5 * one, 0.0 * one)))
    return code - 8.0 * wb, wb


def encode_mc(wa, wb):
    """One number per cell for the mc_slope weights: wa + 4 wb (0, 5/2, 2 or 8)."""
    return wa + 4.0 * wb


def decode_mc(code):
    """Inverse of ``encode_mc``."""
    one = jnp.ones_like(code)
    wb = jnp.where(code >= 8.0, 2.0 * one, jnp.where(code > 2.0, 0.5 * one, 0.0 * one))
    return code - 4.0 * wb, wb


def _surface(H, bed, grid: Grid):
    """S = pad(bed, 1, edge/wrap) + pad(H, 1, zero/wrap), as in ``faces.face_states_autodiff``."""
    Hp = pad(H, (2, 2), grid.periodic, "zero")
    return Hp, pad(bed, (1, 1), grid.periodic, "edge") + Hp[1:-1, 1:-1]


def _differences(Sp, axis: int):
    """e[k] = S[k+1] - S[k] along ``axis`` and its forward and backward parts at the cells."""
    e = shift(Sp, axis, 1, None) - shift(Sp, axis, None, -1)
    return shift(e, axis, 1, None), shift(e, axis, None, -1)


def face_states_residuals(H, bed, grid: Grid):
    """What the adjoint of ``face_states`` multiplies cotangents by, for each axis (1: x,
    0: y), besides the face-normal slopes g (outputs of ``face_states``):

    - ``slope`` (cells with the ghost ring along the other axis: (ny+2, nx) for axis 1): the
      limited cell slope c along ``axis``, mc_slope(e_fwd, e_bwd) / dx, computed as
      (w_fwd e_fwd + w_bwd e_bwd) / dx from its weights (exactly equal: they are 0, 1/2, 2);
    - ``mc`` (same cells): the encoded ``mc_slope_weights`` (w_fwd, w_bwd) of that slope with
      respect to the forward and backward surface differences;
    - ``sb`` (padded cells 1..N+2 of the Hp rows along ``axis``: (ny, nx+2) for axis 1): the
      encoded ``superbee_slope_weights`` of the MUSCL correction with respect to the backward
      and forward thickness differences.

    Same operations on the same values as ``faces.face_states_autodiff``, so every kink is
    decided as there.
    """
    Hp, Sp = _surface(H, bed, grid)
    res = {}
    for axis in (1, 0):
        fwd, bwd = _differences(Sp, axis)
        w_fwd, w_bwd = mc_slope_weights(fwd, bwd)
        rows = shift(Hp, 1 - axis, 2, -2)  # Hp[2:-2, :] for x-faces: (ny, nx+4)
        d = shift(rows, axis, 1, None) - shift(rows, axis, None, -1)
        sb = superbee_slope_weights(shift(d, axis, None, -1), shift(d, axis, 1, None))
        res[axis] = dict(slope=(w_fwd * fwd + w_bwd * bwd) / grid.dx,
                         mc=encode_mc(w_fwd, w_bwd), sb=encode_superbee(*sb))
    return res


def muscl_left_right_vjp(sb_code, axis: int, ct_left, ct_right):
    """Cotangent of the padded row ``P`` (N + 4 entries along ``axis``) of
    ``faces.muscl_left_right(P, axis)``, given the cotangents of its outputs (N + 1 entries) and
    the encoded superbee weights at padded cells 1..N+2.

    Forward: d_k = P_{k+1} - P_k; c_k = superbee_slope(d_{k-1}, d_k) / 2 at padded cell k;
    at face f (between padded cells f+1 and f+2) left_f = P_{f+1} + c_{f+1} and
    right_f = P_{f+2} - c_{f+2}. Adjoint, with (w_a, w_b) the superbee weights at cell k:

        ct_c_k = ct_left_{k-1} - ct_right_{k-2}
        alpha_k = w_a,k ct_c_k / 2   (to d_{k-1}),   beta_k = w_b,k ct_c_k / 2   (to d_k)
        ct_P_k = ct_left_{k-1} + ct_right_{k-2} + (alpha_k - beta_k) + beta_{k-1} - alpha_{k+1}

    (terms with an index out of range are zero; ct_P_k collects +ct_d_{k-1} - ct_d_k with
    ct_d_k = alpha_{k+1} + beta_k).
    """
    ct_c = _pad_axis(ct_left, axis, 0, 1) - _pad_axis(ct_right, axis, 1, 0)  # cells 1..N+2
    wa, wb = decode_superbee(sb_code)
    alpha, beta = 0.5 * (wa * ct_c), 0.5 * (wb * ct_c)
    return (_pad_axis(ct_left, axis, 1, 2) + _pad_axis(ct_right, axis, 2, 1)
            + _pad_axis(alpha - beta, axis, 1, 1) + _pad_axis(beta, axis, 2, 0)
            - _pad_axis(alpha, axis, 0, 2))


def face_states_adjoint(grads, res, grid: Grid, cotangents):
    """Cotangents (ct_H, ct_bed) of ``sia.face_states(H, bed, grid)`` from its face-normal
    slopes ``grads`` (g_x, g_y: outputs of the forward), the residuals ``res``
    (``face_states_residuals``) and the cotangents of its outputs,
    ``((ct_Hx, ct_s2x, ct_gx), (ct_Hy, ct_s2y, ct_gy))``.

    Forward (``faces.face_states_autodiff``), with Hp = pad(H, 2, zero/wrap) and
    S = pad(bed, 1, edge/wrap) + Hp[1:-1, 1:-1]:

        e_x = diff_x S,  c_x = mc_slope(e_x[:, 1:], e_x[:, :-1]) / dx   (cell x-slopes)
        g_x = e_x[1:-1] / dx,  k_x = (c_y[:, :-1] + c_y[:, 1:]) / 2      (x-face slopes)
        s2_x = g_x^2 + k_x^2,  H_x = where(g_x <= 0, left_x, right_x)    (MUSCL of Hp rows)

    and the same along y with the axes swapped. The adjoint, read from the bottom up:

        ct_g_x = ct_gx + 2 g_x ct_s2x,  ct_k_x = 2 k_x ct_s2x
        ct_left_x = where(g_x <= 0, ct_Hx, 0),  ct_right_x = where(g_x <= 0, 0, ct_Hx)
        ct_c_y = (ct_k_x[j-1] + ct_k_x[j]) / 2        (cells along x, zero beyond the faces)
        ct_e_x = ct_g_x / dx on the rows 1..ny of e_x
                 + (w_fwd ct_c_x / dx)[j-1] + (w_bwd ct_c_x / dx)[j]      (mc_slope weights)
        ct_S = ct_e_x[j-1] - ct_e_x[j] + (the same along y)
        ct_Hp = ct_S on the inner ring + muscl_left_right_vjp of the Hp rows and columns
        ct_H = pad_transpose(ct_Hp, 2, zero),  ct_bed = pad_transpose(ct_S, 1, edge).

    ``where`` passes no cotangent to its predicate: the upwind switch g <= 0 is a kink whose
    one-sided derivative is that of the selected side, as in JAX's AD.
    """
    dx, periodic = grid.dx, grid.periodic
    ct_c, ct_e, ct_P = {}, {}, {}
    for axis, grad, (ct_Hf, ct_s2, ct_g) in zip((1, 0), grads, cotangents, strict=True):
        other = 1 - axis
        c = res[other]["slope"]
        cross = 0.5 * (shift(c, axis, None, -1) + shift(c, axis, 1, None))
        ct_grad = ct_g + 2.0 * (grad * ct_s2)
        ct_cross = 2.0 * (cross * ct_s2)
        ct_c[other] = (0.5 / dx) * (_pad_axis(ct_cross, axis, 0, 1)
                                    + _pad_axis(ct_cross, axis, 1, 0))
        ct_e[axis] = _pad_axis(ct_grad / dx, other, 1, 1)
        zero = jnp.zeros_like(ct_Hf)
        low = grad <= 0.0
        ct_P[axis] = muscl_left_right_vjp(res[axis]["sb"], axis, jnp.where(low, ct_Hf, zero),
                                          jnp.where(low, zero, ct_Hf))
    ct_S = 0.0
    for axis in (1, 0):
        w_fwd, w_bwd = decode_mc(res[axis]["mc"])
        ct_ea = (ct_e[axis] + _pad_axis(w_fwd * ct_c[axis], axis, 1, 0)
                 + _pad_axis(w_bwd * ct_c[axis], axis, 0, 1))
        ct_S = ct_S + _pad_axis(ct_ea, axis, 1, 0) - _pad_axis(ct_ea, axis, 0, 1)
    ct_Hp = jnp.pad(ct_S, 1) + _pad_axis(ct_P[1], 0, 2, 2) + _pad_axis(ct_P[0], 1, 2, 2)
    return (pad_transpose(ct_Hp, (2, 2), periodic, "zero"),
            pad_transpose(ct_S, (1, 1), periodic, "edge"))


def face_states_vjp(H, bed, grid: Grid, cotangents):
    """Cotangents (ct_H, ct_bed) of ``sia.face_states(H, bed, grid)`` for the cotangents of its
    outputs (plain expressions; the custom VJP's rules add the ``computed_once`` regions)."""
    (_, _, gx), (_, _, gy) = face_states_autodiff(H, bed, grid)
    return face_states_adjoint((gx, gy), face_states_residuals(H, bed, grid), grid, cotangents)


# The rules of ``jax.custom_vjp`` for the face states (grid is static).


def face_states_fwd(H, bed, grid: Grid):
    """Forward rule: the outputs of ``face_states`` (the same values as without the custom
    VJP) and the residuals, all computed in one region and kept."""
    def forward(H, bed):
        return face_states_autodiff(H, bed, grid), face_states_residuals(H, bed, grid)

    out, res = computed_once(forward, H, bed)
    return out, ((out[0][2], out[1][2]), res)


def face_states_bwd(grid: Grid, saved, cotangents):
    """Backward rule: ``face_states_adjoint`` in one region."""
    def backward(saved, cotangents):
        return face_states_adjoint(*saved, grid, cotangents)

    return computed_once(backward, saved, cotangents)


face_states_custom = jax.custom_vjp(face_states_autodiff, nondiff_argnums=(2,))
"""``faces.face_states_autodiff`` with the hand-derived reverse-mode rule of this module."""
face_states_custom.defvjp(face_states_fwd, face_states_bwd)
