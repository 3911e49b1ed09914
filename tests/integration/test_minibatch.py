"""Mini-batches (``glacier.minibatch``): groups of similar size on cropped windows.

A small twin of five valleys of different sizes (1 year, a short spin-up): the groups hold
every glacier once, on windows smaller than the padded grid; the accumulated gradient over the
groups equals the full batch's loss and gradient to round-off (the cropping changes nothing);
mini-batch Adam lowers the loss, and a run stopped and resumed repeats one that was not.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from glacier import experiments, laws, minibatch
from glacier import train as tr
from glacier.errors import ConfigError


@pytest.fixture(scope="module")
def twin():
    setup = experiments.twin_A_of_T(n_valleys=5, real=(), years=1, spinup_years=10, dx=200.0)
    law = laws.NeuralAofT.create(hidden=(8,), seed=0)
    leaves, treedef = jax.tree_util.tree_flatten(law)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    law = treedef.unflatten([x + 0.3 * jax.random.normal(k, x.shape, x.dtype)
                             for k, x in zip(keys, leaves, strict=True)])
    problem = tr.size_step_budget(law, setup.batch, setup.problem)
    return setup, law, problem


def _flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(tree)])


def test_groups_hold_every_glacier_once_on_smaller_windows(twin):
    setup, _, problem = twin
    groups = minibatch.plan(setup.batch, problem.grid, 3, bucket=4)
    assert len(groups) == 2 and all(g.index.size == 3 for g in groups)
    own = np.concatenate([g.index[g.real] for g in groups])
    assert sorted(own.tolist()) == list(range(5))
    assert list(np.asarray(groups[1].batch.weight)) == [1.0, 1.0, 0.0]  # filled
    pairs = minibatch.plan(setup.batch, problem.grid, 2, bucket=4)
    areas = [g.grid.ny * g.grid.nx for g in pairs]
    assert min(areas) < problem.grid.ny * problem.grid.nx  # the smaller valleys: smaller
    assert all(g.grid.ny % 4 == 0 or g.grid.ny == problem.grid.ny for g in pairs)
    assert 1.0 <= minibatch.padding_ratio(pairs, setup.batch) < 3.0
    # two devices: groups of a multiple of two
    assert {g.index.size for g in minibatch.plan(setup.batch, problem.grid, 3,
                                                 multiple_of=2)} == {4}
    with pytest.raises(ConfigError, match="train.batch_size=0"):
        minibatch.plan(setup.batch, problem.grid, 0)


def test_accumulated_groups_give_the_full_batch_loss_and_gradient(twin):
    setup, law, problem = twin
    full = tr.Trainer(problem, lr=0.01, epochs=1)
    state = full.init(law)
    value_and_grad = jax.jit(jax.value_and_grad(
        lambda p: tr.loss_fn(p, setup.batch, problem)[0]))
    v_full, g_full = value_and_grad(state.law)
    new_full, loss_full, aux_full = full.step(state, setup.batch)

    groups = minibatch.plan(setup.batch, problem.grid, 3)
    mb = minibatch.MiniBatchTrainer(problem, n_groups=len(groups), size=setup.batch.size,
                                    update="accumulate", lr=0.01, epochs=1)
    grads, loss = None, 0.0
    total = sum(g.weight for g in groups)
    for g in groups:
        (v, _), grad = mb._grad(state.law, mb.place(g.batch), problem=g.problem(problem))
        loss += g.weight / total * float(v)
        grad = jax.tree_util.tree_map(lambda x, s=g.weight / total: s * x, grad)
        grads = grad if grads is None else jax.tree_util.tree_map(np.add, grads, grad)
    assert loss == pytest.approx(float(v_full), rel=1e-12)
    scale = np.max(np.abs(_flat(g_full)))
    assert scale > 0
    np.testing.assert_allclose(_flat(grads), _flat(g_full), rtol=0, atol=1e-11 * scale)
    new_mb, loss_mb, aux_mb = mb.step(state, groups)
    assert loss_mb == pytest.approx(float(loss_full), rel=1e-12)
    np.testing.assert_allclose(aux_mb["per_glacier"], np.asarray(aux_full["per_glacier"]),
                               rtol=1e-11)
    np.testing.assert_allclose(_flat(new_mb.law), _flat(new_full.law), rtol=1e-10, atol=1e-14)
    assert int(new_mb.epoch) == 1


def test_minibatch_adam_learns_and_resumes_bit_for_bit(twin):
    setup, law, problem = twin
    groups = minibatch.plan(setup.batch, problem.grid, 2)
    trainer = minibatch.MiniBatchTrainer(
        problem, n_groups=len(groups), size=setup.batch.size, update="step", seed=3,
        lr=0.03, epochs=5, schedule="cosine")
    assert trainer.updates_per_epoch == 3
    one = trainer.run(trainer.init(law), groups)
    loss = one.history.loss
    assert len(loss) == 5 and loss[-1] < 0.7 * loss[0], loss
    # the schedule runs over 5 epochs x 3 groups updates
    assert one.history.learning_rate[1] == pytest.approx(float(trainer.schedule(3)))
    stops = iter([False, False, True])  # the trainer holds only settings: run it again
    half = trainer.run(trainer.init(law), groups, should_stop=lambda: next(stops, True))
    assert int(half.state.epoch) == 2
    rest = trainer.run(half.state, groups, history=half.history)
    assert rest.history.loss == loss
    np.testing.assert_array_equal(_flat(rest.state.law), _flat(one.state.law))
    assert not np.array_equal(minibatch.epoch_order(3, 3, 0), minibatch.epoch_order(3, 3, 1)) \
        or not np.array_equal(minibatch.epoch_order(3, 3, 1), minibatch.epoch_order(3, 3, 2))
    with pytest.raises(ConfigError, match="lbfgs_steps"):
        minibatch.MiniBatchTrainer(problem, n_groups=3, size=6, lbfgs_steps=5)


def test_forward_passes_in_chunks_equal_the_full_batch(monkeypatch):
    """With ``train.batch_size`` the forward-only passes of a run (the twin's spin-up and
    observations, the step budget, the sensitivity weights) go ``chunk`` glaciers at a time:
    the same results as all at once, and no program ever sees more than ``chunk`` glaciers."""
    kw = dict(n_valleys=5, real=(), years=1, spinup_years=10, dx=200.0, seed=3)
    full = experiments.twin_A_of_T(**kw)
    seen = []
    simulate = tr.simulate_batch

    def spy(law, batch, problem, *args, **kwargs):
        seen.append(batch.H0.shape[0])
        return simulate(law, batch, problem, *args, **kwargs)

    monkeypatch.setattr(tr, "simulate_batch", spy)
    parts = experiments.twin_A_of_T(**kw, chunk=2)
    assert seen and set(seen) == {2}  # 5 glaciers: chunks of 2, 2 and 1 + a filler
    np.testing.assert_allclose(parts.H_true, full.H_true, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(np.isnan(parts.batch.obs), np.isnan(full.batch.obs))
    np.testing.assert_allclose(np.asarray(parts.batch.obs), np.asarray(full.batch.obs),
                               rtol=0, atol=1e-9)
    law = laws.ConstantA.from_value(1e-24)
    budget = tr.size_step_budget(law, full.batch, full.problem)
    w_full = np.asarray(tr.sensitivity_weights(full.batch, full.problem, 1e-24))
    seen.clear()
    assert tr.size_step_budget(law, full.batch, full.problem, chunk=2) == budget
    w_parts = np.asarray(tr.sensitivity_weights(full.batch, full.problem, 1e-24, chunk=3))
    np.testing.assert_allclose(w_parts, w_full, rtol=1e-12)
    assert set(seen) == {2, 3}
    with pytest.raises(ConfigError, match="must be positive"):
        tr.in_chunks(lambda b: b.weight, full.batch, 0)
