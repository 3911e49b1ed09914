"""Checkpoints of a training run: the ``TrainState``, the ``History`` and a few facts about the run.

Layout inside the run directory::

    checkpoints/
        epoch_000010/
            state.msgpack   leaves of the TrainState (law parameters, optimizer state, epoch),
                            flax.serialization.to_bytes of the list of leaves
            history.json    per-epoch records so far (loss, loss per glacier, learning rate,
                            wall time, phase)
            meta.json       epoch, step budget of the solver, config fingerprint, time
        epoch_000020/
        latest              the name of the newest complete checkpoint ("epoch_000020")

A checkpoint is written into a hidden temporary folder and renamed into place when complete,
then ``latest`` is replaced (write + rename), then all but the ``keep`` newest checkpoints are
removed: a crash at any moment leaves ``latest`` pointing at a complete checkpoint.

The state is restored into a *target*: the ``TrainState`` of a fresh ``Trainer.init(law)`` of
the same config, which gives the tree structure (and the static parts of the law, such as the
network's graph). Leaves come back with the dtype and shape they were saved with, so a resumed
run computes with exactly the arrays of the uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from ..errors import ConfigError
from ..train import History, TrainState
from .cf import write_text

LATEST = "latest"
_NAME = re.compile(r"^epoch_(\d{6,})$")


def checkpoint_name(epoch: int) -> str:
    return f"epoch_{int(epoch):06d}"


def state_to_bytes(state: TrainState) -> bytes:
    """The leaves of ``state`` as msgpack bytes (``flax.serialization.to_bytes``)."""
    leaves = [np.asarray(jax.device_get(x)) for x in jax.tree_util.tree_leaves(state)]
    return serialization.to_bytes(leaves)


def state_from_bytes(target: TrainState, data: bytes) -> TrainState:
    """``state_to_bytes`` undone into the structure of ``target``.

    Raises ``ConfigError`` when the saved leaves do not fit the target (a checkpoint of
    another law, network or optimizer).
    """
    leaves, treedef = jax.tree_util.tree_flatten(target)
    try:
        restored = serialization.from_bytes(leaves, data)
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"the checkpoint does not fit this config's law and optimizer ({e}); "
                          "resume with the config it was made with.") from e
    if len(restored) != len(leaves):
        raise ConfigError(f"the checkpoint holds {len(restored)} arrays, this config's "
                          f"training state {len(leaves)}: resume with the config it was made "
                          "with.")
    out = []
    for i, (t, v) in enumerate(zip(leaves, restored, strict=True)):
        v = np.asarray(v)
        if v.shape != np.shape(t):
            raise ConfigError(f"array {i} of the checkpoint has shape {v.shape}, this config's "
                              f"training state {np.shape(t)} (another network?): resume with "
                              "the config it was made with.")
        out.append(jnp.asarray(v))
    return jax.tree_util.tree_unflatten(treedef, out)


def history_to_json(history: History) -> str:
    """The history as JSON text (floats round-trip exactly; NaN as NaN)."""
    data = {
        "loss": [float(x) for x in history.loss],
        "loss_glacier": [np.asarray(x, np.float64).tolist() for x in history.loss_glacier],
        "learning_rate": [float(x) for x in history.learning_rate],
        "wall_time": [float(x) for x in history.wall_time],
        "phase": list(history.phase),
    }
    return json.dumps(data)


def history_from_json(text: str) -> History:
    data = json.loads(text)
    return History(loss=list(data["loss"]),
                   loss_glacier=[np.asarray(x, np.float64) for x in data["loss_glacier"]],
                   learning_rate=list(data["learning_rate"]),
                   wall_time=list(data["wall_time"]), phase=list(data["phase"]))


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint."""

    path: Path
    state: TrainState
    history: History
    meta: dict[str, Any]

    @property
    def epoch(self) -> int:
        return int(self.meta["epoch"])


def list_checkpoints(directory: str | os.PathLike) -> list[tuple[int, Path]]:
    """(epoch, folder) of the complete checkpoints in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for p in directory.iterdir():
        m = _NAME.match(p.name)
        if m and p.is_dir() and (p / "meta.json").is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def save(directory: str | os.PathLike, state: TrainState, history: History, *,
         meta: dict[str, Any] | None = None, keep: int = 3) -> Path:
    """Write a checkpoint of ``state`` and ``history`` into ``directory`` atomically.

    Args:
        directory: the run's ``checkpoints/`` folder (created if needed).
        state: the training state after ``state.epoch`` epochs.
        history: the records of those epochs.
        meta: JSON-serialisable facts to keep with it (the epoch is added).
        keep: how many of the newest checkpoints to keep (the new one included).

    Returns the checkpoint's folder.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    epoch = int(jax.device_get(state.epoch))
    final = directory / checkpoint_name(epoch)
    tmp = directory / f".{final.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    record = dict(meta or {}, epoch=epoch,
                  saved_utc=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
    try:
        (tmp / "state.msgpack").write_bytes(state_to_bytes(state))
        (tmp / "history.json").write_text(history_to_json(history))
        (tmp / "meta.json").write_text(json.dumps(record, indent=2, sort_keys=True,
                                                  default=str) + "\n")
        if final.exists():  # the same epoch again (e.g. a resumed run stopped at once)
            old = directory / f".{final.name}.{os.getpid()}.old"
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_text(directory / LATEST, final.name + "\n")
    for _, path in list_checkpoints(directory)[:-max(1, int(keep))]:
        if path != final:
            shutil.rmtree(path, ignore_errors=True)
    return final


def latest(directory: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint in ``directory`` (``latest`` first), or None."""
    directory = Path(directory)
    pointer = directory / LATEST
    if pointer.is_file():
        path = directory / pointer.read_text().strip()
        if _NAME.match(path.name) and (path / "meta.json").is_file():
            return path
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def load(path: str | os.PathLike, target: TrainState) -> Checkpoint:
    """The checkpoint in folder ``path``, its state restored into the structure of ``target``."""
    path = Path(path)
    state = state_from_bytes(target, (path / "state.msgpack").read_bytes())
    history = history_from_json((path / "history.json").read_text())
    meta = json.loads((path / "meta.json").read_text())
    return Checkpoint(path=path, state=state, history=history, meta=meta)
