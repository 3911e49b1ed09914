"""``glacier.distributed``: its settings and single-process helpers (the two-process training
itself: ``tests/cli/test_train_distributed.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from glacier import distributed as dist
from glacier.errors import ConfigError


@pytest.mark.parametrize("kwargs, words", [
    (dict(coordinator="127.0.0.1:1234"), "all three"),
    (dict(coordinator="127.0.0.1", num_processes=2, process_id=0), "HOST:PORT"),
    (dict(coordinator="127.0.0.1:1234", num_processes=2, process_id=2), "process_id=2"),
    (dict(coordinator="h:1", num_processes=0, process_id=0), "num_processes=0"),
])
def test_distributed_settings_are_checked(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        dist.DistributedSettings(enabled=True, **kwargs)


def test_from_the_environment_outside_slurm_is_refused(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with pytest.raises(ConfigError, match="not a SLURM job step"):
        dist.initialize(dist.DistributedSettings(enabled=True))


def test_single_process_helpers():
    assert dist.is_main()
    dist.barrier("nothing to wait for")
    host = dist.to_host({"a": np.arange(3.0)})
    assert isinstance(host["a"], np.ndarray)
