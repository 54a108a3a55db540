#!/bin/sh
# run_cnn_bench.sh: training-step rows for DeepLabV3P/PSPNet (ResNet50_vd OS8) and UNet:
# moonseg without and with gradient checkpointing, Debian's torch 1.13 and the torch 2.x peer
# (/tmp/pt2, if set up), one process per row, in one run with the load before and after.
#   tests/bench/run_cnn_bench.sh [build=build] [threads=2] [BxHxW=2x512x512] [steps=2] [models]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build}
threads=${2:-2}
cfg=${3:-2x512x512}
steps=${4:-2}
models=${5:-"deeplabv3p pspnet unet"}
case $build in /*) ;; *) build="$root/$build" ;; esac
b=${cfg%%x*}; rest=${cfg#*x}; h=${rest%%x*}; w=${rest#*x}
export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;;"
export MOONSEG_LIB="$build/libmoonseg.so"
export OMP_NUM_THREADS="$threads"
echo "# $cfg, $threads threads, 1 warm-up + $steps timed steps; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for m in $models; do
  luajit "$here/cnn_train_step.lua" --model "$m" --batch "$b" --size "$h" "$w" --steps "$steps" --threads "$threads"
  luajit "$here/cnn_train_step.lua" --model "$m" --batch "$b" --size "$h" "$w" --steps "$steps" --threads "$threads" --with_cp
  /usr/bin/python3 "$here/cnn_torch_step.py" --model "$m" --batch "$b" --size "$h" "$w" --steps "$steps" --threads "$threads"
  if [ -x /tmp/pt2/venv/bin/python ]; then
    (. /tmp/pt2/env.sh; /tmp/pt2/venv/bin/python "$here/cnn_torch_step.py" --model "$m" --batch "$b" \
      --size "$h" "$w" --steps "$steps" --threads "$threads")
  fi
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
