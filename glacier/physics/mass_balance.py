"""Surface mass balance models: pure functions of the surface elevation and time.

One model covers the built-in cases:

    b(S, t) = clip(base + gradient (S - reference), min_rate, max_rate)   [m ice a^-1]

- a linear balance with an equilibrium-line altitude (ELA): base = 0, reference = ELA;
- a prescribed field with elevation feedback: base = field, reference = the surface the field
  was measured on, gradient = d b / d z (0 for no feedback);
- EISMINT and bedrock-step forcings: base = the prescribed field, gradient = 0.

Evaluated on the current surface at every step, so the elevation feedback is part of the
right-hand side.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MassBalance:
    """b = clip(base + gradient (S - reference), min_rate, max_rate) [m ice a^-1].

    Args:
        base: balance at the reference surface [m ice a^-1], scalar or (ny, nx).
        gradient: vertical balance gradient [(m ice a^-1) m^-1], scalar or (ny, nx).
        reference: reference elevation [m] (the ELA of a linear model), scalar or (ny, nx).
        min_rate, max_rate: bounds on the rate [m ice a^-1].
    """

    base: jax.Array | float = 0.0
    gradient: jax.Array | float = 0.0
    reference: jax.Array | float = 0.0
    min_rate: jax.Array | float = -jnp.inf
    max_rate: jax.Array | float = jnp.inf

    def __call__(self, S, t=0.0):
        """Balance rate at surface elevation ``S`` [m] and time ``t`` [a].

        Terms that are known constants are left out rather than computed as no-ops, which
        XLA would evaluate on every cell of every step (0 * (S - reference): 5 us of a 100 us
        Halfar step; the lower clip at -inf of a linear balance: a maximum, and in reverse
        mode its tie-breaking select): the values are the same wherever S is finite."""
        b = self.base
        if _constant(self.gradient) != 0.0:
            b = b + self.gradient * (S - self.reference)
        if _constant(self.min_rate) != -jnp.inf:
            b = jnp.maximum(b, self.min_rate)
        if _constant(self.max_rate) != jnp.inf:
            b = jnp.minimum(b, self.max_rate)
        return b + jnp.zeros_like(S)


def _constant(x) -> float | None:
    """The value of a Python or NumPy scalar, None for arrays and traced values."""
    if isinstance(x, (int, float, np.integer, np.floating)):
        return float(x)
    return None


def linear(ela: float, gradient: float, *, max_rate: float = jnp.inf) -> MassBalance:
    """Linear balance b = gradient (S - ELA), capped at ``max_rate`` (m ice a^-1)."""
    return MassBalance(base=0.0, gradient=gradient, reference=ela, max_rate=max_rate)


def prescribed(field, *, reference=0.0, gradient=0.0) -> MassBalance:
    """A prescribed field, optionally with elevation feedback about ``reference``."""
    return MassBalance(base=field, gradient=gradient, reference=reference)


def zero() -> MassBalance:
    return MassBalance()
