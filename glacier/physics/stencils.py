"""Shared stencils and slope limiters of the staggered-grid SIA (pure array functions).

Arrays are ``[y, x]``; ``axis`` 1 is x and 0 is y. Used by the MUSCL face states
(``physics.faces``), their hand-written adjoint (``physics.faces_adjoint``) and the SIA fluxes
(``physics.sia``).
"""

from __future__ import annotations

import jax.numpy as jnp


def minmod(a, b):
    """The argument of smaller magnitude when both have the same sign, else 0."""
    return jnp.where(a * b > 0.0, jnp.where(jnp.abs(a) < jnp.abs(b), a, b), 0.0)


def mc_slope(a, b):
    """Monotonised-central limited difference minmod((a + b)/2, 2a, 2b) (van Leer 1977)."""
    return minmod(0.5 * (a + b), 2.0 * minmod(a, b))


def superbee(r):
    """Superbee limiter phi(r) = max(0, min(2r, 1), min(r, 2)) (Roe 1986)."""
    return jnp.maximum(0.0, jnp.maximum(jnp.minimum(2.0 * r, 1.0), jnp.minimum(r, 2.0)))


def superbee_slope(a, b):
    """phi(a / b) b for the superbee limiter, written without a division.

    Equals sign(b) max(min(2|a|, |b|), min(|a|, 2|b|)) where a and b have the same sign, else 0;
    ``a`` is the backward and ``b`` the forward difference of the reconstructed quantity.
    """
    abs_a, abs_b = jnp.abs(a), jnp.abs(b)
    mag = jnp.maximum(jnp.minimum(2.0 * abs_a, abs_b), jnp.minimum(abs_a, 2.0 * abs_b))
    # copysign(mag, b) is sign(b) mag where it is used (b != 0), with the same derivatives
    # (none with respect to the sign), and one bit operation instead of XLA's sign.
    return jnp.where(a * b > 0.0, jnp.copysign(mag, b), 0.0)


def pad(field, width: tuple[int, int], periodic: tuple[bool, bool], fill: str):
    """Pad (y, x) by ``width`` ghosts: wrap where periodic, else ``fill`` ("zero" or "edge")."""
    for axis in (0, 1):
        if width[axis] == 0:
            continue
        pad = [(0, 0), (0, 0)]
        pad[axis] = (width[axis], width[axis])
        if periodic[axis]:
            field = jnp.pad(field, pad, mode="wrap")
        elif fill == "edge":
            field = jnp.pad(field, pad, mode="edge")
        else:
            field = jnp.pad(field, pad)
    return field


def shift(a, axis: int, start: int, stop: int | None):
    """a[start:stop] along ``axis`` (0 or 1)."""
    return a[start:stop] if axis == 0 else a[:, start:stop]


def ghost_surface(H, bed, periodic: tuple[bool, bool]):
    """Surface with one ghost ring: ice-free ghosts on the edge cell's bed, or wrapped."""
    return pad(bed, (1, 1), periodic, "edge") + pad(H, (1, 1), periodic, "zero")
