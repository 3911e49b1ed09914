"""Gradients of a float32 training loss are finite (regression: the positivity limiter's
H / outflow had a derivative -H/outflow^2 that overflowed in float32 and gave NaN)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from glacier import experiments as ex
from glacier import laws
from glacier import train as tr


@pytest.mark.slow  # ~50 s; float32 VJPs: tests/gradients/test_sia_vjp.py::test_vmap_and_float32
def test_float32_training_gradient_is_finite_and_close_to_float64():
    grads = {}
    for dtype in ("float32", "float64"):
        tw = ex.twin_A_of_T(n_valleys=2, real=(), years=3, spinup_years=30, dtype=dtype)
        law = laws.ConstantA(log_A=jnp.asarray(np.log(laws.A_PRIOR), jnp.dtype(dtype)))
        prob = tr.size_step_budget(law, tw.batch, tw.problem)
        value, g = jax.value_and_grad(lambda l, b=tw.batch, p=prob: tr.loss_fn(l, b, p)[0])(law)
        assert np.isfinite(float(value)) and np.isfinite(float(g.log_A)), (dtype, value, g)
        grads[dtype] = float(g.log_A)
    assert abs(grads["float32"] - grads["float64"]) <= 0.05 * abs(grads["float64"]), grads
