"""The optional surface-speed misfit of the training loss (twin data with speed observations)."""

import jax
import jax.numpy as jnp
import numpy as np

from glacier import experiments as ex
from glacier import laws
from glacier import train as tr


def test_velocity_misfit_vanishes_at_truth_and_has_a_finite_gradient():
    tw = ex.twin_A_of_T(n_valleys=2, real=(), years=3, spinup_years=30, velocity_obs=True)
    assert tw.batch.vel_obs.shape == tw.batch.obs.shape
    assert np.isfinite(np.asarray(tw.batch.vel_obs)).any()
    w = tr.LossWeights(velocity=1.0)
    prob = tr.size_step_budget(laws.CuffeyPaterson(), tw.batch, tw.problem)
    at_truth, _ = tr.loss_fn(laws.CuffeyPaterson(), tw.batch, prob, w)
    assert float(at_truth) <= 1e-20  # round-off between the two compiled programs
    law = laws.ConstantA(log_A=jnp.log(jnp.asarray(laws.A_PRIOR)))
    (value, aux), g = jax.value_and_grad(lambda l: tr.loss_fn(l, tw.batch, prob, w),
                                         has_aux=True)(law)
    thickness_only, _ = tr.loss_fn(law, tw.batch, prob)
    assert float(value) > float(thickness_only) > 0.0  # the speed term adds to the misfit
    assert np.isfinite(float(g.log_A)) and float(g.log_A) != 0.0
