"""One process of the two-process training test (``test_distributed.py``).

    python _distributed_worker.py PROCESS_ID NUM_PROCESSES PORT OUT.json

Trains a small twin (three valleys, three Adam epochs) with the glaciers sharded over the
devices of all processes and writes the loss history and the final parameters as JSON.
"""

import json
import sys

import jax

jax.config.update("jax_enable_x64", True)

from glacier import distributed as dist  # noqa: E402


def main(pid: int, n: int, port: int, out: str) -> None:
    if n > 1:
        dist.initialize(dist.DistributedSettings(
            enabled=True, coordinator=f"127.0.0.1:{port}", num_processes=n, process_id=pid,
            timeout_s=120))
    from glacier import experiments, laws
    from glacier import train as tr

    n_dev = len(jax.devices())
    setup = experiments.twin_A_of_T(n_valleys=3, real=[], years=2.0, dx=300.0,
                                    spinup_years=20.0, devices=n_dev)
    law = laws.ConstantA.from_value(1e-17)
    problem = tr.size_step_budget(law, setup.batch, setup.problem)
    trainer = tr.Trainer(problem, lr=0.05, epochs=3)
    state, batch = trainer.init(law), setup.batch
    if n_dev > 1:
        mesh = tr.device_mesh(n_dev)
        batch, state = tr.shard(batch, mesh), tr.replicate(state, mesh)
    run = trainer.run(state, batch)
    leaves = [dist.to_host(x).tolist() for x in jax.tree_util.tree_leaves(run.state.law)]
    with open(out, "w") as f:
        json.dump(dict(process=jax.process_index(), processes=jax.process_count(),
                       devices=n_dev, local_devices=len(jax.local_devices()),
                       loss=run.history.loss, per_glacier=[p.tolist() for p in
                                                           run.history.loss_glacier],
                       params=leaves), f)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
