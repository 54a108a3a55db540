#!/bin/sh
# run_train_bench.sh: moonseg's PP-LiteSeg CPU training step against the PyTorch peer, side by
# side in one run, alternating moonseg and torch for several repetitions per configuration,
# then medians and the ratio torch_step_s / moonseg_step_s (above 1: moonseg is faster).
#
#   tests/bench/run_train_bench.sh [builddir=build-perf] [threads=2] [reps=3] [steps=5] [configs]
#
# configs: space-separated BATCHxHxW (default "2x256x256 4x512x512"). Each repetition runs a
# fresh process per side (two warm-up steps, then `steps` timed steps). moonseg reports the
# median step of its timed steps, the peer the mean; the table gives the median over reps and
# the minimum (more robust when other work shares the machine: check the load lines).
# Extra flags for both sides: EXTRA="--stdc2" tests/bench/run_train_bench.sh ...
# Mixed precision: PRECISION=bf16 (or fp16) runs moonseg with --precision (AMP_LEVEL=O1|O2, default
# O1) and the peer with --amp, plus moonseg's own fp32 step in the same loop ("moonseg_fp32") for
# the speed-up over fp32. PYTHON2=/tmp/pt2/venv/bin/python adds a second peer ("torch2"; source
# its env.sh first).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build-perf}
threads=${2:-2}
reps=${3:-3}
steps=${4:-5}
configs=${5:-"2x256x256 4x512x512"}
extra=${EXTRA:-}
prec=${PRECISION:-}
amp_level=${AMP_LEVEL:-O1}
py2=${PYTHON2:-}
sides="moonseg torch"
ms_prec=""
peer_prec=""
if [ -n "$prec" ] && [ "$prec" != fp32 ]; then
  sides="moonseg moonseg_fp32 torch"
  ms_prec="--precision $prec --amp_level $amp_level"
  peer_prec="--amp $prec"
fi
if [ -n "$py2" ]; then sides="$sides torch2"; fi
case $build in /*) ;; *) build="$root/$build" ;; esac
peer=${PEER:-$root/../shared/bench/torch_ppliteseg.py}
if [ ! -f "$peer" ] && [ -f /work/shared/bench/torch_ppliteseg.py ]; then
  peer=/work/shared/bench/torch_ppliteseg.py # a worktree under /work/wt
fi
py=${PYTHON:-/usr/bin/python3}
export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;;"
export MOONSEG_LIB="$build/libmoonseg.so"
export OMP_NUM_THREADS="$threads"
peer_wrap='
import contextlib, io, json, resource, runpy, sys, time
sys.argv = sys.argv[1:]
# the peer times its loop with two time.perf_counter() calls: note the process CPU time at each
# call too, so the last two bracket the timed steps (cpu_s: CPU seconds per step, all threads)
_pc, _cpu = time.perf_counter, []
def _perf():
    _cpu.append(time.process_time())
    return _pc()
time.perf_counter = _perf
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    runpy.run_path(sys.argv[0], run_name="__main__")
r = json.loads(buf.getvalue().strip().splitlines()[-1])
r["impl"] = "torch"
steps = int(sys.argv[sys.argv.index("--steps") + 1]) if "--steps" in sys.argv else 0
if steps and len(_cpu) >= 2:
    r["cpu_s"] = round((_cpu[-1] - _cpu[-2]) / steps, 4)
ru = resource.getrusage(resource.RUSAGE_SELF)
r["peak_rss_mb"] = round(ru.ru_maxrss / 1024, 1)
r["proc_cpu_s"] = round(ru.ru_utime + ru.ru_stime, 2)  # whole process: build, warm-up, steps
print(json.dumps(r))
'
out=$(mktemp)
trap 'rm -f "$out"' EXIT

echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cpus; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
for cfg in $configs; do
  b=${cfg%%x*}; rest=${cfg#*x}; h=${rest%%x*}; w=${rest#*x}
  i=1
  while [ "$i" -le "$reps" ]; do
    # alternate which side goes first, so a load change hits both alike
    if [ $((i % 2)) -eq 1 ]; then order="$sides"; else order=$(echo "$sides" | tr ' ' '\n' | tac | tr '\n' ' '); fi
    for side in $order; do
      case $side in
      moonseg | moonseg_fp32)
        p=$ms_prec
        if [ "$side" = moonseg_fp32 ]; then p=""; fi
        line=$(luajit "$here/train_step.lua" --batch "$b" --size "$h" "$w" --steps "$steps" \
          --threads "$threads" $extra $p)
        ;;
      *)
        # the peer runs unchanged inside runpy; its JSON line gets the process's peak RSS
        # (ru_maxrss, the same VmHWM figure moonseg reports) added
        pyx=$py
        if [ "$side" = torch2 ]; then pyx=$py2; fi
        line=$("$pyx" -c "$peer_wrap" "$peer" --batch "$b" --size "$h" "$w" --steps "$steps" \
          --threads "$threads" $extra $peer_prec)
        ;;
      esac
      echo "$cfg $side $line" >> "$out"
      echo "  $cfg rep $i $side: $line"
    done
    i=$((i + 1))
  done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"

"$py" - "$out" <<'PY'
import json, statistics, sys
rows = {}
for ln in open(sys.argv[1]):
    cfg, side, js = ln.split(" ", 2)
    rows.setdefault(cfg, {}).setdefault(side, []).append(json.loads(js))
print("%-12s %-8s %4s %9s %9s %9s %10s %10s %s" % ("config", "impl", "n", "step_s", "min_s", "img/s", "rss_MB",
      "tensor_MB", "all step_s"))
for cfg, sides in rows.items():
    med, mins = {}, {}
    for side in ("moonseg", "moonseg_fp32", "torch", "torch2"):
        r = sides.get(side, [])
        if not r:
            continue
        st = [x["step_s"] for x in r]
        med[side] = statistics.median(st)
        mins[side] = min(st)
        rss = [x.get("peak_rss_mb") for x in r if x.get("peak_rss_mb") is not None]
        tp = [x.get("tensor_peak_mb") for x in r if x.get("tensor_peak_mb") is not None]
        cpu = [x.get("cpu_s") for x in r if x.get("cpu_s") is not None]
        b = int(cfg.split("x")[0])
        print("%-12s %-8s %4d %9.4f %9.4f %9.2f %10s %10s %s" % (cfg, side, len(st), med[side], mins[side],
              b / med[side],
              "%.0f" % statistics.median(rss) if rss else "-", "%.0f" % statistics.median(tp) if tp else "-",
              " ".join("%.3f" % v for v in st)) +
              ("  cpu_s/step median %.4f" % statistics.median(cpu) if cpu else ""))
    for other in ("moonseg_fp32", "torch", "torch2"):
        if "moonseg" in med and other in med:
            print("%-12s ratio %s/moonseg: medians %.2f, minima %.2f" % (cfg, other, med[other] / med["moonseg"],
                  mins[other] / mins["moonseg"]))
PY
