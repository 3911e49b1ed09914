"""Checkpoints: exact round trips of the training state and history, atomic layout, pruning."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from glacier import laws, train
from glacier import solver as slv
from glacier.errors import ConfigError
from glacier.grid import Grid
from glacier.io import checkpoints as ck
from glacier.physics.params import Physics
from glacier.schemes import ExplicitMUSCL


def trainer(lbfgs_steps: int = 2) -> train.Trainer:
    """A trainer on a dummy problem (nothing here solves)."""
    problem = train.Problem(grid=Grid(ny=3, nx=3, dx=100.0), save_at=slv.SaveAt((0.0, 1.0)),
                            scheme=ExplicitMUSCL(), physics=Physics(A=1e-16), names=("a",))
    return train.Trainer(problem, lr=0.01, schedule="cosine", epochs=5,
                         lbfgs_steps=lbfgs_steps)


def advanced_state(hidden=(4, 3), steps: int = 3) -> tuple[train.TrainState, train.Trainer]:
    """A state with non-trivial parameters and Adam moments (random gradients, no solves)."""
    tr = trainer()
    law = laws.NeuralAofT.create(hidden=hidden, seed=1)
    state = tr.init(law)
    key = jax.random.PRNGKey(0)
    for _ in range(steps):
        key, sub = jax.random.split(key)
        leaves, treedef = jax.tree_util.tree_flatten(state.law)
        grads = treedef.unflatten([jax.random.normal(k, x.shape, x.dtype) for k, x in zip(
            jax.random.split(sub, len(leaves)), leaves, strict=True)])
        adam, lbfgs = state.opt_state
        updates, adam = tr.adam.update(grads, adam, state.law)
        state = train.TrainState(optax.apply_updates(state.law, updates), (adam, lbfgs),
                                 state.epoch + 1)
    return state, tr


def assert_same_state(a: train.TrainState, b: train.TrainState) -> None:
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


def test_state_round_trip_is_exact():
    state, tr = advanced_state()
    target = tr.init(laws.NeuralAofT.create(hidden=(4, 3), seed=7))  # other values, same tree
    restored = ck.state_from_bytes(target, ck.state_to_bytes(state))
    assert_same_state(state, restored)
    assert int(restored.epoch) == 3
    # the restored law computes exactly what the original does
    T = jnp.linspace(-30.0, 5.0, 11)
    np.testing.assert_array_equal(restored.law.rate_factor(T), state.law.rate_factor(T))


def test_state_of_another_network_is_refused():
    state, _ = advanced_state(hidden=(4, 3))
    other = trainer().init(laws.NeuralAofT.create(hidden=(5,), seed=0))
    with pytest.raises(ConfigError, match="config it was made with"):
        ck.state_from_bytes(other, ck.state_to_bytes(state))


def history(n: int) -> train.History:
    h = train.History()
    for i in range(n):
        h.loss.append(1.0 / (i + 3))
        h.loss_glacier.append(np.array([0.1 / (i + 1), math.pi * i, 0.0]))
        h.learning_rate.append(0.01 * 0.9**i if i < n - 1 else float("nan"))
        h.wall_time.append(0.1 * i + 1e-3)
        h.phase.append("adam" if i < n - 1 else "lbfgs")
    return h


def test_history_round_trip_is_exact():
    h = history(4)
    back = ck.history_from_json(ck.history_to_json(h))
    assert back.loss == h.loss and back.wall_time == h.wall_time and back.phase == h.phase
    assert back.learning_rate[:-1] == h.learning_rate[:-1] and math.isnan(back.learning_rate[-1])
    for x, y in zip(back.loss_glacier, h.loss_glacier, strict=True):
        np.testing.assert_array_equal(x, y)


def test_save_keeps_the_newest_and_points_latest_at_a_complete_one(tmp_path):
    state, tr = advanced_state(steps=1)
    target = tr.init(laws.NeuralAofT.create(hidden=(4, 3), seed=0))
    folder = tmp_path / "checkpoints"
    for epoch in (3, 6, 9, 12):
        s = train.TrainState(state.law, state.opt_state, jnp.asarray(epoch, jnp.int32))
        ck.save(folder, s, history(epoch), meta=dict(note=f"e{epoch}"), keep=3)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["epoch_000006", "epoch_000009", "epoch_000012", "latest"]
    path = ck.latest(folder)
    assert path.name == "epoch_000012"
    loaded = ck.load(path, target)
    assert loaded.epoch == 12 and loaded.meta["note"] == "e12" and len(loaded.history.loss) == 12
    assert_same_state(loaded.state, train.TrainState(state.law, state.opt_state,
                                                     jnp.asarray(12, jnp.int32)))
    # the same epoch again replaces it; a stale `latest` falls back to the newest complete one
    ck.save(folder, loaded.state, loaded.history, meta=dict(note="again"), keep=3)
    assert ck.load(ck.latest(folder), target).meta["note"] == "again"
    (folder / "latest").write_text("epoch_000099\n")
    assert ck.latest(folder).name == "epoch_000012"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_latest_of_an_empty_or_missing_folder_is_none(tmp_path):
    assert ck.latest(tmp_path / "nothing") is None
    (tmp_path / "checkpoints" / "epoch_000003").mkdir(parents=True)  # incomplete: no meta
    assert ck.latest(tmp_path / "checkpoints") is None


@pytest.mark.parametrize("damage", ["truncate_state", "truncate_meta", "truncate_history",
                                    "edit_state", "remove_state"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_intact_one(tmp_path, damage):
    from glacier.errors import InputDataError

    state, tr = advanced_state(steps=1)
    target = tr.init(laws.NeuralAofT.create(hidden=(4, 3), seed=0))
    folder = tmp_path / "checkpoints"
    for epoch in (5, 10):
        s = train.TrainState(state.law, state.opt_state, jnp.asarray(epoch, jnp.int32))
        ck.save(folder, s, history(epoch), keep=3)
    newest = folder / "epoch_000010"
    assert ck.verify(newest) is None and ck.newest_intact(folder) == (newest, [])
    name = {"truncate_state": "state.msgpack", "edit_state": "state.msgpack",
            "remove_state": "state.msgpack", "truncate_meta": "meta.json",
            "truncate_history": "history.json"}[damage]
    f = newest / name
    data = f.read_bytes()
    if damage.startswith("truncate"):
        f.write_bytes(data[: len(data) // 2])
    elif damage == "edit_state":
        f.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    else:
        f.unlink()
    reason = ck.verify(newest)
    assert reason is not None and name in reason
    found, skipped = ck.newest_intact(folder)
    assert found == folder / "epoch_000005" and len(skipped) == 1 and name in skipped[0]
    assert ck.load(found, target).epoch == 5
    with pytest.raises(InputDataError, match=name.replace(".", r"\.")):
        ck.load(newest, target)


def test_a_fresh_state_is_strongly_typed():
    """optax's init leaves weakly typed scalars in the L-BFGS state; a compiled step returns
    them strongly typed, and JAX's cache tells the two apart: the first L-BFGS epoch would
    compile the step twice. ``Trainer.init`` hands out strongly typed leaves only."""
    state = trainer().init(laws.NeuralAofT.create(hidden=(4,), seed=0))
    weak = [jax.tree_util.keystr(k) for k, x in jax.tree_util.tree_leaves_with_path(state)
            if getattr(x, "weak_type", False)]
    assert weak == []
