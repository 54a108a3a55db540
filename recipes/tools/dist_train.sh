#!/bin/sh
# dist_train.sh CONFIG WORKERS [flags...]: MMSegmentation's tools/dist_train.sh for moonseg.
# CONFIG is a recipe (e.g. recipes/pp_liteseg.lua); WORKERS worker processes on this node
# (CPU workers: --nproc). PORT (or MASTER_PORT) sets the rendezvous port, so two jobs on one
# machine can be kept apart; without either the launcher picks a free port. Multi-node: set
# NNODES, NODE_RANK and MASTER_ADDR (the first node's address); with NNODES > 1 run the same
# command on every node, each naming its own NODE_RANK.
set -eu
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG WORKERS [flags...]" >&2
  exit 2
fi
CONFIG=$1
WORKERS=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
PORT=${PORT:-${MASTER_PORT:-}}
LUAJIT=${LUAJIT:-luajit}
if [ -n "$PORT" ]; then
  FLAGS_START_PORT=$PORT
  export FLAGS_START_PORT
fi
if [ "$NNODES" -gt 1 ]; then
  # --ips wants every node's address; MASTER_ADDR is the first, the others come from NODE_IPS
  if [ -z "${NODE_IPS:-}" ]; then
    echo "$0: NNODES=$NNODES needs NODE_IPS (comma-separated node addresses, $MASTER_ADDR first)" >&2
    exit 2
  fi
  exec "$LUAJIT" "$CONFIG" --nproc "$WORKERS" --ips "$NODE_IPS" --node_rank "$NODE_RANK" "$@"
fi
exec "$LUAJIT" "$CONFIG" --nproc "$WORKERS" "$@"
