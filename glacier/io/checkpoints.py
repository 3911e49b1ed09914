"""Checkpoints of a training run: the ``TrainState``, the ``History`` and a few facts about the run.

Layout inside the run directory::

    checkpoints/
        epoch_000010/
            state.msgpack   leaves of the TrainState (law parameters, optimizer state, epoch),
                            flax.serialization.to_bytes of the list of leaves
            history.json    per-epoch records so far (loss, loss per glacier, learning rate,
                            wall time, phase)
            meta.json       epoch, step budget of the solver, config fingerprint, time and
                            the SHA-256 of the two files above (``checksums``)
        epoch_000020/
        latest              the name of the newest complete checkpoint ("epoch_000020")

A checkpoint is written into a hidden temporary folder and renamed into place when complete,
then ``latest`` is replaced (write + rename), then all but the ``keep`` newest checkpoints are
removed: a crash at any moment leaves ``latest`` pointing at a complete checkpoint.

A checkpoint damaged afterwards (a truncated or edited file, a full disk during a copy) is
found by ``verify`` (the checksums; unreadable JSON) and skipped by ``newest_intact``, which
falls back to the newest intact one and says which it skipped and why.

The state is restored into a *target*: the ``TrainState`` of a fresh ``Trainer.init(law)`` of
the same config, which gives the tree structure (and the static parts of the law, such as the
network's graph). Leaves come back with the dtype and shape they were saved with, so a resumed
run computes with exactly the arrays of the uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
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

from ..errors import ConfigError, InputDataError
from ..train import History, TrainState
from .cf import remove_stale, temporary_path, write_text

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
    remove_stale(directory)
    tmp = temporary_path(final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    record = dict(meta or {}, epoch=epoch,
                  saved_utc=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
    files = {"state.msgpack": state_to_bytes(state),
             "history.json": history_to_json(history).encode()}
    record["checksums"] = {name: _sha256(data) for name, data in files.items()}
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        (tmp / "meta.json").write_text(json.dumps(record, indent=2, sort_keys=True,
                                                  default=str) + "\n")
        if final.exists():  # the same epoch again (e.g. a resumed run stopped at once)
            old = temporary_path(final, "old")
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


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify(path: str | os.PathLike) -> str | None:
    """Why the checkpoint in folder ``path`` is damaged (naming the file), or None if intact.

    Checks that meta.json is a JSON object, that the files it has checksums for match them
    (checkpoints from before the checksums: that history.json parses), and that state.msgpack
    is there.
    """
    path = Path(path)
    meta_file = path / "meta.json"
    try:
        meta = json.loads(meta_file.read_text())
        if not isinstance(meta, dict) or "epoch" not in meta:
            raise ValueError("not a checkpoint record")
    except (OSError, ValueError, UnicodeDecodeError) as e:
        return f"{meta_file} is unreadable or truncated ({type(e).__name__}: {e})"
    for name in ("state.msgpack", "history.json"):
        if not (path / name).is_file():
            return f"{path / name} is missing"
    checksums = meta.get("checksums")
    if isinstance(checksums, dict):
        for name, expected in checksums.items():
            if _sha256((path / name).read_bytes()) != expected:
                return f"{path / name} does not match its checksum in meta.json (truncated or " \
                       "modified)"
        return None
    try:
        json.loads((path / "history.json").read_text())
    except (ValueError, UnicodeDecodeError) as e:
        return f"{path / 'history.json'} is unreadable or truncated ({e})"
    return None


def newest_intact(directory: str | os.PathLike) -> tuple[Path | None, list[str]]:
    """(the newest intact checkpoint or None, why each newer one was skipped).

    The one ``latest`` names comes first, then the others from the newest epoch down.
    """
    directory = Path(directory)
    candidates = [p for _, p in reversed(list_checkpoints(directory))]
    pointer = latest(directory)
    if pointer is not None and pointer in candidates:
        candidates.remove(pointer)
        candidates.insert(0, pointer)
    skipped = []
    for path in candidates:
        reason = verify(path)
        if reason is None:
            return path, skipped
        skipped.append(reason)
    return None, skipped


def load(path: str | os.PathLike, target: TrainState) -> Checkpoint:
    """The checkpoint in folder ``path``, its state restored into the structure of ``target``.

    Raises ``InputDataError`` naming the file when it is damaged (``verify``), ``ConfigError``
    when it does not fit ``target``.
    """
    path = Path(path)
    reason = verify(path)
    if reason is not None:
        raise InputDataError(f"Checkpoint {path} is damaged: {reason}. Remove it to resume from "
                             "an older checkpoint, or start a new run.")
    state = state_from_bytes(target, (path / "state.msgpack").read_bytes())
    history = history_from_json((path / "history.json").read_text())
    meta = json.loads((path / "meta.json").read_text())
    return Checkpoint(path=path, state=state, history=history, meta=meta)
