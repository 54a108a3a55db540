#!/bin/sh
# fake_srun.sh: a stand-in for Slurm's srun in tests (put on PATH as "srun"): starts --ntasks
# copies of the command with SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODEID and
# SLURM_NODELIST (from FAKE_SRUN_NODELIST) set, waits for all, and exits with the first failure.
ntasks=1
per_node=1
while [ $# -gt 0 ]; do
  case $1 in
    --ntasks=*) ntasks=${1#--ntasks=} ;;
    --ntasks-per-node=*) per_node=${1#--ntasks-per-node=} ;;
    -p) shift ;;
    --*=*) ;;
    *) break ;;
  esac
  shift
done
pids=""
i=0
while [ $i -lt "$ntasks" ]; do
  SLURM_PROCID=$i SLURM_NTASKS=$ntasks SLURM_LOCALID=$((i % per_node)) SLURM_NODEID=$((i / per_node)) \
    SLURM_NODELIST=$FAKE_SRUN_NODELIST SLURM_JOB_NODELIST=$FAKE_SRUN_NODELIST "$@" &
  pids="$pids $!"
  i=$((i + 1))
done
rc=0
for p in $pids; do
  wait "$p" || { s=$?; [ $rc -eq 0 ] && rc=$s; }
done
exit $rc
