"""``train.on_nonfinite``: stop, skip or roll back an epoch whose loss or solve is not finite.

The trainer's step is replaced by a scripted one (a law of one number that each step moves by
+1; chosen epochs fail), so what the loop does with the failures is seen directly.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from glacier import solver as slv
from glacier import train
from glacier.errors import ConfigError, NumericalError
from glacier.grid import Grid
from glacier.physics.params import Physics
from glacier.schemes import ExplicitMUSCL


def scripted(mode: str, bad_epochs, *, max_bad: int = 5, epochs: int = 8):
    problem = train.Problem(grid=Grid(ny=3, nx=3, dx=100.0), save_at=slv.SaveAt((0.0, 1.0)),
                            scheme=ExplicitMUSCL(), physics=Physics(A=1e-16), names=("a",))
    tr = train.Trainer(problem, lr=0.01, epochs=epochs, on_nonfinite=mode,
                       max_bad_epochs=max_bad)
    seen = []

    def step(state, batch, problem=None):
        epoch = int(state.epoch)
        seen.append(float(state.law["p"]))
        ok = epoch not in bad_epochs
        loss = float(state.law["p"]) if ok else float("nan")
        aux = dict(status=np.zeros((1, 1), np.int32), per_glacier=np.array([loss]))
        new = train.TrainState({"p": state.law["p"] + 1.0}, state.opt_state, state.epoch + 1)
        return new, loss, aux

    tr.step = step
    state = train.TrainState({"p": jnp.asarray(0.0)}, ((), ()), jnp.zeros((), jnp.int32))
    return tr, state, seen


def test_stop_keeps_the_last_good_epoch_and_names_the_alternatives():
    tr, state, _ = scripted("stop", {3})
    with pytest.raises(NumericalError, match="on_nonfinite=skip or rollback") as info:
        tr.run(state, None)
    run = info.value.run
    assert int(run.state.epoch) == 3 and float(run.state.law["p"]) == 3.0
    assert len(run.history.loss) == 3


def test_skip_discards_the_update_and_goes_on():
    tr, state, seen = scripted("skip", {3})
    run = tr.run(state, None)
    assert int(run.state.epoch) == 8
    assert np.isnan(run.history.loss[3]) and np.isfinite(run.history.loss[4])
    assert seen[3] == seen[4] == 3.0  # the update of the bad epoch was not applied
    assert float(run.state.law["p"]) == 7.0


def test_rollback_halves_the_update_that_led_to_the_failure():
    tr, state, seen = scripted("rollback", {3})
    run = tr.run(state, None)
    assert seen[3] == 3.0 and seen[4] == 2.5  # back to 2 and half of the step to 3
    assert int(run.state.epoch) == 8 and np.isnan(run.history.loss[3])


def test_too_many_bad_epochs_in_a_row_stop():
    tr, state, _ = scripted("skip", {2, 3, 4, 5}, max_bad=2)
    with pytest.raises(NumericalError, match="2 bad epoch"):
        tr.run(state, None)


def test_an_unknown_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="on_nonfinite"):
        scripted("ignore", set())


def test_training_warnings_name_what_a_user_should_know():
    """``training.nc``/``law.nc``'s ``warnings``: non-finite epochs, failed final runs, ice at
    the domain edge, implausible speeds; nothing for a clean run."""
    from glacier.apps.train import _training_warnings

    history = train.History()
    history.loss.extend([1.0, float("nan"), 0.5])
    H = np.zeros((2, 2, 5, 5))
    H[1, -1, 0, 2] = 3.0  # glacier "b" at the south edge
    speed = np.zeros_like(H)
    speed[0, -1, 2, 2] = 5e4
    status = np.array([[0], [slv.STATUS_MAX_STEPS]])
    out = _training_warnings(history, ("a", "b"), H, speed, status)
    text = " | ".join(out)
    assert "1 epoch(s) had a non-finite loss" in text
    assert "glacier 'b' did not complete" in text and "'b' reaches the domain edge" in text
    assert "glacier 'a' reaches 50 km a-1" in text
    clean = train.History()
    clean.loss.extend([1.0, 0.5])
    assert _training_warnings(clean, ("a",), H[:1] * 0, speed[:1] * 0, status[:1]) == []
