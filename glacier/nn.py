"""Small Flax NNX networks with input scaling and bounded positive outputs.

Knows nothing of grids, glaciers or files. A network is used through ``split``: the static
``GraphDef`` and the ``State`` of its parameters, so that the parameters are an ordinary pytree
that optax updates and ``jax.grad`` differentiates.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

ACTIVATIONS = {"tanh": jnp.tanh, "gelu": jax.nn.gelu, "softplus": jax.nn.softplus,
               "relu": jax.nn.relu, "silu": jax.nn.silu}


class MLP(nnx.Module):
    """A multilayer perceptron R^n_in -> R^n_out.

    The last layer starts at zero (weights and bias), so a fresh network outputs 0 for every
    input: a bounded output then starts at the geometric middle of its range, whatever the
    seed, and the seed only sets the hidden layers.
    """

    def __init__(self, n_in: int, hidden: Sequence[int], n_out: int = 1, *, seed: int = 0,
                 activation: str = "tanh", param_dtype=jnp.float32):
        if activation not in ACTIVATIONS:
            raise ValueError(f"Unknown activation {activation!r}; choose from "
                             f"{', '.join(ACTIVATIONS)}.")
        if not hidden or any(int(h) < 1 for h in hidden):
            raise ValueError(f"hidden must list positive layer widths, got {list(hidden)}.")
        rngs = nnx.Rngs(seed)
        sizes = [n_in, *[int(h) for h in hidden]]
        self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs, param_dtype=param_dtype)
                                for a, b in zip(sizes[:-1], sizes[1:], strict=True)])
        self.out = nnx.Linear(sizes[-1], n_out, rngs=rngs, param_dtype=param_dtype,
                              kernel_init=nnx.initializers.zeros_init())
        self.activation = activation

    def __call__(self, x):
        act = ACTIVATIONS[self.activation]
        for layer in self.hidden:
            x = act(layer(x))
        return self.out(x)


def log_bounded(raw, lo: float, hi: float):
    """Map a real number to (lo, hi) on a log scale: lo (hi/lo)^sigmoid(raw). Positive, bounded."""
    import math

    return jnp.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * jax.nn.sigmoid(raw))


def split(module: nnx.Module):
    """(graphdef, params) of a module; params is a pytree of arrays."""
    return nnx.split(module)


def apply(graphdef, params, x):
    """Evaluate the module described by ``graphdef`` with ``params`` on inputs ``x``."""
    return nnx.merge(graphdef, params)(x)
