#!/bin/sh
# slurm_train.sh PARTITION JOB_NAME CONFIG [flags...]: MMSegmentation's tools/slurm_train.sh for
# moonseg. srun starts GPUS tasks (GPUS_PER_NODE per node); each task is one rank and reads
# SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID and the first host of SLURM_NODELIST (the master).
# PORT (or MASTER_PORT, default 29500) is the rendezvous port: give two jobs different ones.
set -eu
if [ $# -lt 3 ]; then
  echo "usage: $0 PARTITION JOB_NAME CONFIG [flags...]" >&2
  exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
shift 3
GPUS=${GPUS:-4}
GPUS_PER_NODE=${GPUS_PER_NODE:-4}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-}
MASTER_PORT=${PORT:-${MASTER_PORT:-29500}}
export MASTER_PORT
# shellcheck disable=SC2086
exec srun -p "$PARTITION" --job-name="$JOB_NAME" --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" \
  --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1 $SRUN_ARGS "${LUAJIT:-luajit}" "$CONFIG" "$@"
