"""Data-parallel training: the loss and its gradient on 4 (host) devices equal those on one.

Runs in a subprocess, because the number of host devices is fixed when JAX starts
(``XLA_FLAGS=--xla_force_host_platform_device_count=4``): a tiny twin experiment of four
valleys, ``loss_fn`` and ``jax.grad`` of it with respect to a ``NeuralAofT`` law, once on plain
single-device arrays and once with the glaciers split across a 4-device mesh
(``train.shard``) and the law replicated (``train.replicate``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json
    import jax
    import jax.numpy as jnp
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    from glacier import experiments, laws, train

    devices = jax.devices()
    setup = experiments.twin_A_of_T(n_valleys=4, real=(), years=2, spinup_years=20, dx=200.0,
                                    devices=4)
    law = laws.NeuralAofT.create(hidden=(8,), seed=0)
    # Move off the initial network (its last layer starts at zero) so every gradient is live.
    leaves, treedef = jax.tree_util.tree_flatten(law)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    law = treedef.unflatten([x + 0.3 * jax.random.normal(k, x.shape, x.dtype)
                             for k, x in zip(keys, leaves)])
    problem = train.size_step_budget(law, setup.batch, setup.problem)
    value_and_grad = jax.jit(jax.value_and_grad(
        lambda law, batch: train.loss_fn(law, batch, problem)[0]))

    v1, g1 = value_and_grad(law, setup.batch)
    mesh = train.device_mesh(4)
    batch4 = train.shard(setup.batch, mesh)
    v4, g4 = value_and_grad(train.replicate(law, mesh), batch4)
    g1 = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(g1)])
    g4 = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(g4)])
    print(json.dumps(dict(
        n_devices=len(devices), glaciers=int(setup.batch.size),
        batch_devices=len(batch4.H0.sharding.device_set),
        loss_1=float(v1), loss_4=float(v4), grad_1=g1.tolist(), grad_4=g4.tolist())))
""")


@pytest.mark.slow  # ~45 s; sharding over devices: tests/cli/test_train_distributed.py
def test_loss_and_gradient_on_four_devices_equal_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    g1, g4 = out["grad_1"], out["grad_4"]
    print(f"loss: 1 device {out['loss_1']!r}, 4 devices {out['loss_4']!r}")
    print(f"grad: 1 device {g1[:4]}..., 4 devices {g4[:4]}...")
    assert out["n_devices"] == 4 and out["batch_devices"] == 4 and out["glaciers"] == 4
    assert abs(out["loss_4"] - out["loss_1"]) <= 1e-12 * abs(out["loss_1"])
    scale = max(abs(x) for x in g1)
    assert scale > 0
    assert max(abs(a - b) for a, b in zip(g1, g4, strict=True)) <= 1e-12 * scale
