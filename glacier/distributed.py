"""Several processes, one training: ``jax.distributed`` set up from the config or from SLURM.

``glacier-train train.distributed.enabled=true`` starts JAX's distributed runtime before any
computation: each process (one per node, or one per task of a SLURM job) sees the devices of
all processes in ``jax.devices()``; the glaciers are sharded across all of them and the law's
parameters replicated (``glacier.train.shard`` / ``replicate``), so one jitted training step
runs on all processes at once, with XLA's collectives (Gloo between CPU processes, NCCL between
GPUs) summing the gradient. Every process computes the same parameters; process 0 alone writes
checkpoints and outputs, and every process can read them (a resumed run loads the same
checkpoint everywhere).

Where the coordinator's address, the number of processes and the process's rank come from:

- ``coordinator``, ``num_processes`` and ``process_id`` in the config (all three), e.g. two
  processes on one machine: ``train.distributed.coordinator=127.0.0.1:12345
  train.distributed.num_processes=2 train.distributed.process_id=0`` (and ``=1``);
- or, when they are null, JAX's own cluster detection: inside a SLURM job step (``srun``) it
  reads ``SLURM_*`` (the first node of the job is the coordinator).

No file formats and no config types here: ``glacier.apps.train`` calls ``initialize`` with the
plain values of the ``train.distributed`` node.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np

from .errors import ConfigError

__all__ = ["DistributedSettings", "any_process", "barrier", "initialize", "is_main", "to_host"]


@dataclasses.dataclass(frozen=True)
class DistributedSettings:
    """``train.distributed``: whether to start JAX's distributed runtime, and how.

    Attributes:
        enabled: start it (False: one process, the default).
        coordinator: ``host:port`` of process 0, or None for JAX's cluster detection (SLURM).
        num_processes: number of processes, or None (cluster detection).
        process_id: rank of this process in [0, num_processes), or None (cluster detection).
        timeout_s: how long to wait for all processes to join [s].
    """

    enabled: bool = False
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    timeout_s: int = 300

    def __post_init__(self):
        given = [self.coordinator, self.num_processes, self.process_id]
        if self.enabled and any(v is not None for v in given) and \
                any(v is None for v in given):
            raise ConfigError(
                "train.distributed: set all three of coordinator, num_processes and "
                "process_id, or none of them (inside a SLURM job step JAX reads them from "
                f"the environment); got coordinator={self.coordinator!r}, "
                f"num_processes={self.num_processes!r}, process_id={self.process_id!r}.")
        if self.num_processes is not None and self.num_processes < 1:
            raise ConfigError(f"train.distributed.num_processes={self.num_processes} must be "
                              ">= 1.")
        if self.process_id is not None and self.num_processes is not None and not (
                0 <= self.process_id < self.num_processes):
            raise ConfigError(f"train.distributed.process_id={self.process_id} must be in "
                              f"[0, {self.num_processes}) (num_processes).")
        if self.coordinator is not None and ":" not in self.coordinator:
            raise ConfigError(f"train.distributed.coordinator={self.coordinator!r} must be "
                              "HOST:PORT, e.g. 127.0.0.1:12345 (the address of process 0).")
        if self.timeout_s < 1:
            raise ConfigError(f"train.distributed.timeout_s={self.timeout_s} must be >= 1.")

    @property
    def from_environment(self) -> bool:
        return self.coordinator is None


def initialize(settings: DistributedSettings) -> None:
    """Start JAX's distributed runtime (once per process; before any JAX computation).

    CPU processes exchange data through Gloo (``jax_cpu_collectives_implementation``). Raises
    ``ConfigError`` when the settings come from the environment but no cluster is detected.
    """
    global _started
    if not settings.enabled or _started:
        return
    if settings.from_environment and "SLURM_JOB_ID" not in os.environ:
        raise ConfigError(
            "train.distributed.enabled=true without coordinator, num_processes and "
            "process_id, and this is not a SLURM job step (no SLURM_JOB_ID): give the three "
            "keys (e.g. train.distributed.coordinator=127.0.0.1:12345 "
            "train.distributed.num_processes=2 train.distributed.process_id=0), or launch "
            "with srun (scripts/slurm_train.sh).")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = dict(initialization_timeout=int(settings.timeout_s))
    if not settings.from_environment:
        kwargs.update(coordinator_address=settings.coordinator,
                      num_processes=int(settings.num_processes),
                      process_id=int(settings.process_id))
    try:
        jax.distributed.initialize(**kwargs)
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"train.distributed: JAX's distributed runtime did not start: {e}. "
                          "Check that every process was started with the same coordinator "
                          "and num_processes and a distinct process_id, and that the "
                          "coordinator's port is free and reachable.") from e
    _started = True


_started = False  # jax.distributed.initialize may be called once per process


def is_main() -> bool:
    """True in process 0 (the one that writes files), and in a single-process run."""
    return jax.process_index() == 0


def to_host(tree):
    """Every leaf of ``tree`` as a NumPy array on this process: arrays sharded over devices of
    other processes are gathered (all processes must call this together), the rest copied."""
    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable \
                and not x.is_fully_replicated:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)
    return jax.tree_util.tree_map(one, tree)


def any_process(flag: bool) -> bool:
    """True when ``flag`` is True in any process (all processes must call this together): a
    stop signal that reached one task stops every task after the same epoch."""
    if jax.process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.asarray([int(bool(flag))]))))


def barrier(name: str) -> None:
    """Wait until every process has reached ``barrier(name)`` (no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
