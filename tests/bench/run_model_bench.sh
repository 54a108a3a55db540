#!/bin/sh
# run_model_bench.sh: OCRNet-HRNet_W18 and SegFormer-B0 training steps (CPU) of moonseg beside
# the PyTorch twins under Debian's torch 1.13 and torch 2.x (/tmp/pt2), side by side in one run,
# alternating the order per repetition; prints the JSON lines, then medians and ratios
# (torch / moonseg: above 1, moonseg is faster) of the wall step time and of the process CPU time
# per step (cpu_s; with threads=1 the figure that survives a shared, overloaded machine).
#
#   tests/bench/run_model_bench.sh [models="ocrnet segformer"] [reps=2] [steps=3] [threads=2] [size=512]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
models=${1:-"ocrnet segformer"}
reps=${2:-2}
steps=${3:-3}
threads=${4:-2}
size=${5:-512}
export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;;"
export OMP_NUM_THREADS="$threads"
py1=/usr/bin/python3
py2=/tmp/pt2/venv/bin/python
out=$(mktemp)
trap 'rm -f "$out"' EXIT
args="--batch 2 --size $size $size --steps $steps --warmup ${WARMUP:-1} --threads $threads"
echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cpus"
for model in $models; do
  i=1
  while [ "$i" -le "$reps" ]; do
    if [ $((i % 2)) -eq 1 ]; then order="moonseg t1 t2"; else order="t2 t1 moonseg"; fi
    for side in $order; do
      case $side in
        moonseg) line=$(luajit "$here/model_step.lua" --model "$model" $args) ;;
        t1) line=$("$py1" "$here/torch_models_peer.py" --model "$model" $args) ;;
        t2) line=$(sh -c ". /tmp/pt2/env.sh; exec $py2 $here/torch_models_peer.py --model $model $args") ;;
      esac
      echo "$model $side $line" | tee -a "$out"
    done
    i=$((i + 1))
  done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
"$py1" - "$out" <<'PY'
import json, statistics, sys
rows = {}
for ln in open(sys.argv[1]):
    model, side, js = ln.split(" ", 2)
    rows.setdefault(model, {}).setdefault(side, []).append(json.loads(js))
print("%-10s %-20s %3s %9s %9s %9s %9s %8s %10s" % ("model", "impl", "n", "step_s", "cpu_s", "fwd_s", "bwd_s", "rss_MB", "tensor_MB"))
for model, sides in rows.items():
    med = {}
    for side in ("moonseg", "t1", "t2"):
        r = sides.get(side)
        if not r:
            continue
        med[side] = statistics.median(x["step_s"] for x in r)
        tp = [x["tensor_peak_mb"] for x in r if "tensor_peak_mb" in x]
        print("%-10s %-20s %3d %9.3f %9.3f %9.3f %9.3f %8.0f %10s" % (model, r[0]["impl"], len(r), med[side],
              statistics.median(x.get("cpu_s", float("nan")) for x in r),
              statistics.median(x["fwd_s"] for x in r), statistics.median(x["bwd_s"] for x in r),
              statistics.median(x["peak_rss_mb"] for x in r), "%.0f" % statistics.median(tp) if tp else "-"))
    for side in ("t1", "t2"):
        if side in med and "moonseg" in med:
            cm = statistics.median(x.get("cpu_s", float("nan")) for x in sides["moonseg"])
            ct = statistics.median(x.get("cpu_s", float("nan")) for x in sides[side])
            print("%-10s ratio %s/moonseg: step %.2f, cpu %.2f" % (model, sides[side][0]["impl"], med[side] / med["moonseg"],
                  ct / cm))
PY
