#!/bin/sh
# run_model_bench.sh: training steps (CPU) of moonseg beside the PyTorch twins under Debian's
# torch 1.13 (/usr/bin/python3) and torch 2.x (/tmp/pt2), per model, interleaved: each
# repetition runs one fresh process per side in turn (the order rotates per repetition), so a
# change of load hits all sides alike. Prints the JSON lines, `uptime` before and after each
# model, then a Markdown table of medians over the repetitions and the ratios torch / moonseg
# (above 1: moonseg is faster) of the wall step time and of the process CPU time per step.
#
#   tests/bench/run_model_bench.sh [models="unet deeplabv3p pspnet ocrnet segformer ppliteseg"]
#                                  [reps=2] [steps=3] [threads=2] [size=512]
#
# Environment: BUILD (build dir, default build), WARMUP (warm-up steps per process, default 1),
# BATCH (default 2), SIDES (default "moonseg t1 t2"; add "cp" for moonseg --with_cp),
# LOG (also append the JSON lines there). Models are model_step.lua's names, e.g.
# deeplabv3p_xception once that backbone and its twin exist.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
models=${1:-"unet deeplabv3p pspnet ocrnet segformer ppliteseg"}
reps=${2:-2}
steps=${3:-3}
threads=${4:-2}
size=${5:-512}
build=${BUILD:-build}
case $build in /*) ;; *) build="$root/$build" ;; esac
sides=${SIDES:-"moonseg t1 t2"}
export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;;"
export MOONSEG_LIB="$build/libmoonseg.so"
export OMP_NUM_THREADS="$threads"
py1=/usr/bin/python3
py2=/tmp/pt2/venv/bin/python
out=$(mktemp)
trap 'rm -f "$out"' EXIT
args="--batch ${BATCH:-2} --size $size $size --steps $steps --warmup ${WARMUP:-1} --threads $threads"
echo "# batch ${BATCH:-2}, ${size}x${size}, $threads threads, ${WARMUP:-1} warm-up + $steps timed steps per process, $reps reps; $(nproc) cpus"
for model in $models; do
  echo "# $model before: $(uptime)"
  i=1
  order=$sides
  while [ "$i" -le "$reps" ]; do
    for side in $order; do
      case $side in
        moonseg) line=$(luajit "$here/model_step.lua" --model "$model" $args) ;;
        cp) line=$(luajit "$here/model_step.lua" --model "$model" $args --with_cp) ;;
        t1) line=$("$py1" "$here/torch_models_peer.py" --model "$model" $args) ;;
        t2) line=$(sh -c ". /tmp/pt2/env.sh; exec $py2 $here/torch_models_peer.py --model $model $args") ;;
        *) echo "run_model_bench.sh: unknown side $side" >&2; exit 2 ;;
      esac
      echo "$model $side $line" | tee -a "$out" ${LOG:+"$LOG"}
    done
    # rotate: the first side goes last next time
    first=${order%% *}
    order="${order#* } $first"
    i=$((i + 1))
  done
  echo "# $model after: $(uptime)"
done
"$py1" "$here/summarize_steps.py" "$out"
