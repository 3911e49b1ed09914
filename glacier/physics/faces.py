"""MUSCL-superbee face states of the SIA (Jarosch, Schoof & Anslow 2013, Eqs. 19-23).

``face_states_autodiff`` is the forward computation as plain JAX expressions (differentiated by
JAX's AD in both modes); ``physics.faces_adjoint`` gives it a hand-derived reverse-mode rule,
and ``physics.sia.face_states`` chooses between the two.
"""

from __future__ import annotations

import jax.numpy as jnp

from ..grid import Grid
from .stencils import mc_slope, pad, shift, superbee_slope


def muscl_left_right(Hp, axis: int):
    """Left and right MUSCL-superbee states at the faces along ``axis`` of a padded field.

    ``Hp`` has two ghosts on each side along ``axis`` (N + 4 entries there); returns arrays with
    N + 1 entries along ``axis``: the faces from the low edge of cell 0 to the high edge of
    cell N-1. Jarosch et al. (2013), Eqs. 19-22: H-_{i+1/2} = H_i + phi(r_i) (H_{i+1} - H_i) / 2
    and H+_{i+1/2} = H_{i+1} - phi(r_{i+1}) (H_{i+2} - H_{i+1}) / 2 with
    r_i = (H_i - H_{i-1}) / (H_{i+1} - H_i).
    """
    dH = shift(Hp, axis, 1, None) - shift(Hp, axis, None, -1)  # dH[k] = Hp[k+1] - Hp[k]
    # phi(r) (H_{i+1} - H_i) for cells i = 1 .. N+2 of the padded row, without a division.
    corr = 0.5 * superbee_slope(shift(dH, axis, None, -1), shift(dH, axis, 1, None))
    # Faces between padded cells k and k+1 for k = 1 .. N+1 (low edge of cell 0 is k = 1).
    H_left = shift(Hp, axis, 1, -2) + shift(corr, axis, 0, -1)
    H_right = shift(Hp, axis, 2, -1) - shift(corr, axis, 1, None)
    return H_left, H_right


def face_states_autodiff(H, bed, grid: Grid):
    """``face_states`` as plain JAX expressions, differentiated by JAX's AD (both modes).

    The forward computation of ``face_states`` in every case, and the reference that the
    hand-derived adjoint is tested against.
    """
    dx, periodic = grid.dx, grid.periodic
    Hp = pad(H, (2, 2), periodic, "zero")
    Sp = pad(bed, (1, 1), periodic, "edge") + Hp[1:-1, 1:-1]
    # Limited slopes at cells (with the ghost ring along the other axis).
    cx = mc_slope(Sp[:, 2:] - Sp[:, 1:-1], Sp[:, 1:-1] - Sp[:, :-2]) / dx  # (ny+2, nx)
    cy = mc_slope(Sp[2:, :] - Sp[1:-1, :], Sp[1:-1, :] - Sp[:-2, :]) / dx  # (ny, nx+2)
    out = []
    for axis in (1, 0):
        interior = Hp[2:-2, :] if axis == 1 else Hp[:, 2:-2]
        H_low, H_high = muscl_left_right(interior, axis)
        inner = Sp[1:-1, :] if axis == 1 else Sp[:, 1:-1]
        grad = (shift(inner, axis, 1, None) - shift(inner, axis, None, -1)) / dx
        c = cy if axis == 1 else cx
        cross = 0.5 * (shift(c, axis, None, -1) + shift(c, axis, 1, None))
        slope2 = grad * grad + cross * cross
        H_up = jnp.where(grad <= 0.0, H_low, H_high)  # flow towards + takes the low-side state
        out.append((H_up, slope2, grad))
    return out[0], out[1]
