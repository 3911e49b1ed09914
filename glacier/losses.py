"""Misfits and regularisers for training and inversion. Pure functions of arrays.

Observations may have gaps: NaN means "not observed" and such cells carry no weight. All
misfits are weighted means, so a glacier's loss does not grow with its size or with the number
of its observations; dividing by a per-glacier scale (e.g. its mean observed thickness) makes
glaciers of different size count alike.
"""

from __future__ import annotations

import jax.numpy as jnp


def observed(obs):
    """1 where ``obs`` holds a value, 0 where it is NaN."""
    return jnp.isfinite(obs).astype(jnp.result_type(float))


def weighted_mse(model, obs, weight=None, scale=1.0):
    """sum(w ((model - obs)/scale)^2) / sum(w) over observed cells (NaN in obs = no weight).

    Args:
        model, obs: arrays of the same shape (e.g. (nt, ny, nx) thickness [m]).
        weight: optional non-negative weights broadcastable to ``obs`` (e.g. the number of
            radar points per cell over the squared observational error).
        scale: normalisation [same units as obs], scalar.
    """
    w = observed(obs)
    if weight is not None:
        w = w * weight
    diff = jnp.where(w > 0, (model - jnp.nan_to_num(obs)) / scale, 0.0)
    return jnp.sum(w * diff * diff) / jnp.maximum(jnp.sum(w), 1e-30)


def thickness_scale(obs, floor: float = 1.0):
    """Per-glacier normalisation: the mean observed thickness [m] (at least ``floor``)."""
    w = observed(obs)
    mean = jnp.sum(jnp.nan_to_num(obs) * w) / jnp.maximum(jnp.sum(w), 1.0)
    return jnp.maximum(mean, floor)


def tikhonov(field, dx: float, mask=None):
    """Mean squared gradient of a 2D field [units^2 m^-2] (first-order Tikhonov smoothness)."""
    gx = (field[:, 1:] - field[:, :-1]) / dx
    gy = (field[1:, :] - field[:-1, :]) / dx
    if mask is not None:
        mx = mask[:, 1:] * mask[:, :-1]
        my = mask[1:, :] * mask[:-1, :]
        n = jnp.maximum(jnp.sum(mx) + jnp.sum(my), 1.0)
        return (jnp.sum(mx * gx * gx) + jnp.sum(my * gy * gy)) / n
    return (jnp.sum(gx * gx) + jnp.sum(gy * gy)) / (gx.size + gy.size)


def l2(tree_leaves):
    """Sum of squares of a list of parameter arrays (weight decay)."""
    return sum(jnp.sum(jnp.square(x)) for x in tree_leaves)
