#!/usr/bin/env bash
# One glacier-train run over several nodes of a SLURM cluster (train.distributed, jax.distributed):
# one task per node, the glaciers sharded over the devices of all tasks, process 0 writing
# checkpoints and outputs into one run directory on a shared file system.
#
#   sbatch scripts/slurm_train.sh experiment=files experiment.glaciers=/scratch/$USER/alps
#   GLACIER_RUN_DIR=runs/alps sbatch --nodes=4 scripts/slurm_train.sh experiment=files ...
#   GLACIER_RUN_DIR=runs/alps sbatch scripts/slurm_train.sh <the same overrides> train.resume=true
#
# Arguments: glacier-train overrides (any of them; train.distributed.enabled=true,
# train.devices=0 and hydra.run.dir are set here). Environment:
#   GLACIER_RUN_DIR  the run directory (default runs/train-<job id>); give it to resume a run
#   GLACIER_TRAIN    the command (default glacier-train; e.g. "apptainer exec glacier.sif
#                    glacier-train" or "python -m glacier train")
# The coordinator is the job's first node, the port derived from the job id, the rank
# SLURM_PROCID: JAX reads them from srun's environment (leave train.distributed.coordinator,
# num_processes and process_id null). Edit the #SBATCH lines for your cluster (or override
# them on sbatch's command line: sbatch --nodes=8 --partition=gpu ...).
#SBATCH --job-name=glacier-train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --output=glacier-train-%j.out
# GPUs: one task per node drives all of the node's GPUs (train.devices=0 uses all of them):
##SBATCH --gpus-per-node=4
# Two minutes before the time limit every task gets SIGUSR2: glacier-train ends the epoch in
# progress (all processes at the same epoch), writes a checkpoint and the outputs, exits 140;
# resubmit with train.resume=true and the same GLACIER_RUN_DIR to continue.
#SBATCH --signal=USR2@120
set -euo pipefail
# glibc 2.35+: malloc's large blocks on transparent huge pages. XLA maps the stack of a
# gradient's stored states afresh at every call once it passes 32 MB, one page fault per 4 kB
# (README, "Page faults"); an older glibc ignores the setting.
export GLIBC_TUNABLES="${GLIBC_TUNABLES:+${GLIBC_TUNABLES}:}glibc.malloc.hugetlb=1"

run_dir="${GLACIER_RUN_DIR:-runs/train-${SLURM_JOB_ID:?run this script with sbatch (or srun)}}"
read -r -a command <<< "${GLACIER_TRAIN:-glacier-train}"
echo "glacier-train on ${SLURM_NNODES:-?} node(s), ${SLURM_NTASKS:-?} task(s) -> ${run_dir}"
# --kill-on-bad-exit: one failing task ends the others (they would wait in a collective).
exec srun --kill-on-bad-exit=1 "${command[@]}" train.distributed.enabled=true train.devices=0 \
    "hydra.run.dir=${run_dir}" "$@"
