"""Training across two processes (``jax.distributed`` with CPU collectives) equals one process.

Two Python processes on this machine, one CPU device each, join through a coordinator on a
local port; the glaciers are sharded over both devices and the parameters replicated. The loss
history, the per-glacier losses and the trained parameters must equal those of a single
process on one device (to round-off: the cross-process sum adds in another order).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from glacier import distributed as dist
from glacier.errors import ConfigError

WORKER = Path(__file__).with_name("_distributed_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    return env


def test_two_processes_train_as_one(tmp_path):
    port = _free_port()
    outs = [tmp_path / f"p{i}.json" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(i), "2", str(port), str(o)],
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for i, o in enumerate(outs)]
    single = tmp_path / "single.json"
    one = subprocess.run([sys.executable, str(WORKER), "0", "1", "0", str(single)],
                         env=_env(), capture_output=True, text=True, timeout=600)
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
    ref = json.loads(single.read_text())
    results = [json.loads(o.read_text()) for o in outs]
    assert ref["processes"] == 1 and ref["devices"] == 1
    for i, r in enumerate(results):
        assert r["process"] == i and r["processes"] == 2
        assert r["devices"] == 2 and r["local_devices"] == 1
        assert len(r["loss"]) == len(ref["loss"]) == 3
        np.testing.assert_allclose(r["loss"], ref["loss"], rtol=1e-12)
        np.testing.assert_allclose(np.asarray(r["per_glacier"])[:, :3],
                                   np.asarray(ref["per_glacier"])[:, :3], rtol=1e-12)
        for a, b in zip(r["params"], ref["params"], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12)
    # the two processes hold the very same parameters
    assert results[0]["params"] == results[1]["params"]
    assert results[0]["loss"] == results[1]["loss"]


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
