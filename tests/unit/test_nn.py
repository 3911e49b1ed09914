"""Unit tests of glacier.nn: the MLP, its split/apply use and the log-bounded output map.

Most tests share one architecture and one input shape: every new shape costs a compilation.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from glacier import nn

F64 = jnp.float64
N_IN, HIDDEN, N_OUT = 3, (8, 8), 2
X = np.random.default_rng(1).standard_normal((7, N_IN))  # float64


def _net(seed=0, activation="tanh"):
    return nn.MLP(N_IN, HIDDEN, N_OUT, seed=seed, activation=activation, param_dtype=F64)


def _perturbed(params, delta=0.1):
    """Params shifted away from the zero output layer, so outputs are not trivially 0."""
    return jax.tree_util.tree_map(lambda p: p + delta, params)


def _by_hand(params, x, act):
    h = x
    for layer in params["hidden"].values():
        h = act(h @ layer["kernel"][...] + layer["bias"][...])
    return h @ params["out"]["kernel"][...] + params["out"]["bias"][...]


def test_mlp_output_shape():
    net = _net()
    assert net(X).shape == (7, N_OUT)


def test_mlp_param_dtype_is_respected():
    leaves = jax.tree_util.tree_leaves(nn.split(_net())[1])
    assert len(leaves) == 2 * (len(HIDDEN) + 1)  # kernel and bias per layer
    assert all(x.dtype == F64 for x in leaves)
    assert _net()(X).dtype == F64


def test_same_seed_gives_same_params():
    a = jax.tree_util.tree_leaves(nn.split(_net(seed=5))[1])
    b = jax.tree_util.tree_leaves(nn.split(_net(seed=5))[1])
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_different_seed_gives_different_hidden_params():
    _, pa = nn.split(_net(seed=0))
    _, pb = nn.split(_net(seed=1))
    for i in range(len(HIDDEN)):
        ka, kb = pa["hidden"][i]["kernel"][...], pb["hidden"][i]["kernel"][...]
        assert ka.shape == kb.shape
        assert not np.allclose(ka, kb)
    # the zero-initialised output layer does not depend on the seed
    np.testing.assert_array_equal(pa["out"]["kernel"][...], pb["out"]["kernel"][...])


@pytest.mark.parametrize("seed", [0, 42])
def test_fresh_network_outputs_zero(seed):
    net = _net(seed=seed)
    _, p = nn.split(net)
    np.testing.assert_array_equal(p["out"]["kernel"][...], 0.0)
    np.testing.assert_array_equal(p["out"]["bias"][...], 0.0)
    np.testing.assert_array_equal(net(10.0 * X), np.zeros((7, N_OUT)))
    # but the hidden layers are not all zero (the seed sets them)
    assert np.any(p["hidden"][0]["kernel"][...] != 0)


def test_mlp_rejects_bad_arguments():
    with pytest.raises(ValueError, match="Unknown activation 'sigmoid'"):
        nn.MLP(1, (4,), activation="sigmoid")
    with pytest.raises(ValueError, match="hidden must list positive"):
        nn.MLP(1, ())
    with pytest.raises(ValueError, match="hidden must list positive"):
        nn.MLP(1, (4, 0))


def test_log_bounded_at_zero_is_geometric_mean():
    for lo, hi in [(1.0, 4.0), (1e-3, 10.0), (3e-21, 7e-17)]:
        mid = nn.log_bounded(jnp.asarray(0.0, F64), lo, hi)
        np.testing.assert_allclose(float(mid), math.sqrt(lo * hi), rtol=1e-14)


def test_log_bounded_formula_and_range():
    lo, hi = 2e-3, 5.0
    raw = np.linspace(-30.0, 30.0, 601)
    out = nn.log_bounded(raw, lo, hi)
    # what the code computes: lo (hi/lo)^sigmoid(raw)
    expected = lo * (hi / lo) ** (1.0 / (1.0 + np.exp(-np.asarray(raw))))
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    assert out.dtype == F64
    assert np.all(np.diff(np.asarray(out)) >= 0)  # monotone in raw
    # within [lo, hi]; at saturation the endpoints are reached only up to the rounding of
    # exp(log(.)), a few ulps either side, so allow 1e-13 relative.
    assert np.all(np.asarray(out) >= lo * (1 - 1e-13))
    assert np.all(np.asarray(out) <= hi * (1 + 1e-13))
    ends = nn.log_bounded(jnp.array([-1e4, 1e4], F64), lo, hi)
    np.testing.assert_allclose(ends, [lo, hi], rtol=1e-13)


def test_log_bounded_interior_values_strictly_inside_and_log_symmetric():
    lo, hi = 0.5, 8.0
    out = np.asarray(nn.log_bounded(jnp.array([-3.0, -1.0, 1.0, 3.0], F64), lo, hi))
    assert np.all(out > lo) and np.all(out < hi)
    # log(out(r)) + log(out(-r)) = log(lo hi)
    np.testing.assert_allclose(np.log(out) + np.log(out[::-1]), math.log(lo * hi), rtol=1e-13)


def test_log_bounded_is_differentiable():
    g = jax.grad(lambda r: nn.log_bounded(r, 1.0, math.e**2))(jnp.asarray(0.0, F64))
    # d/dr exp(2 sigmoid(r)) at 0 = exp(1) * 2 * 1/4
    np.testing.assert_allclose(float(g), math.e / 2, rtol=1e-14)


def test_split_apply_round_trip_equals_module_call():
    net = _net(seed=2)
    graphdef, params = nn.split(net)
    np.testing.assert_array_equal(nn.apply(graphdef, params, X), net(X))
    params = _perturbed(params)
    out = nn.apply(graphdef, params, X)
    assert out.shape == (7, N_OUT)
    assert np.all(np.asarray(out) != 0)
    np.testing.assert_array_equal(out, nnx.merge(graphdef, params)(X))
    # apply does not change params: a second call gives the same answer
    np.testing.assert_array_equal(out, nn.apply(graphdef, params, X))


def test_apply_matches_hand_computation():
    graphdef, params = nn.split(_net())
    params = _perturbed(params, 0.25)
    np.testing.assert_allclose(nn.apply(graphdef, params, X), _by_hand(params, X, jnp.tanh),
                               rtol=1e-13)


def test_apply_is_jittable_and_differentiable_in_params():
    graphdef, params = nn.split(_net())

    def loss(p):
        y = nn.apply(graphdef, p, X)
        return jnp.sum(y * y + y)

    grads = jax.jit(jax.grad(loss))(params)
    # at a zero output, d loss / d bias_out = number of inputs, for each output
    np.testing.assert_allclose(grads["out"]["bias"][...], [7.0, 7.0], rtol=1e-14)
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))


@pytest.mark.parametrize("name", sorted(nn.ACTIVATIONS))
def test_each_activation_works(name):
    net = _net(activation=name)
    assert net.activation == name
    graphdef, params = nn.split(net)
    params = _perturbed(params)
    out = nn.apply(graphdef, params, X)
    assert out.shape == (7, N_OUT)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, _by_hand(params, X, nn.ACTIVATIONS[name]), rtol=1e-13)


def test_activations_are_distinct_functions():
    z = np.array([-1.5, -0.3, 0.7, 2.0])
    out = jax.jit(lambda z: {name: f(z) for name, f in nn.ACTIVATIONS.items()})(z)
    values = {name: tuple(np.round(np.asarray(v), 12)) for name, v in out.items()}
    assert len(set(values.values())) == len(values)
    assert set(nn.ACTIVATIONS) == {"tanh", "gelu", "softplus", "relu", "silu"}
