#!/bin/sh
# Input-pipeline benchmark, side by side in one run: moonseg's C loader (decode + PaddleSeg's
# Cityscapes train chain) against the OpenCV and Pillow peers on the same 2048x1024 PNGs.
#   tests/bench/run_loader_bench.sh [build dir] [images per run] [runs]
# Each line is the median of the runs; the peers run one thread, so compare them with
# moonseg's 1-worker figure (per core). Needs /usr/bin/python3 with python3-opencv, python3-pil.
set -e
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
n=${2:-24}
runs=${3:-3}
dir=${MS_BENCH_DIR:-/tmp/ms_loader_bench}
peer_cv2=${MS_CV2_PEER:-$root/../shared/bench/cv2_loader_peer.py}
export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;;"
export MOONSEG_LIB="$build/libmoonseg.so"
luajit "$here/loader_bench.lua" "$dir" "$n" "$runs" | tee /tmp/ms_loader_bench.$$.json
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
peer() { # script -> median images/s
  i=0
  while [ $i -lt "$runs" ]; do
    /usr/bin/python3 "$1" "$dir" "$n" | sed 's/.*"images_per_s": \([0-9.]*\).*/\1/'
    i=$((i + 1))
  done | median
}
cv2=$(peer "$peer_cv2")
pil=$(peer "$here/pil_loader_peer.py")
ms1=$(grep '"workers": 1,' /tmp/ms_loader_bench.$$.json | sed 's/.*"images_per_s": \([0-9.]*\).*/\1/')
rm -f /tmp/ms_loader_bench.$$.json
echo "{\"what\": \"peers\", \"cv2_images_per_s\": $cv2, \"pil_images_per_s\": $pil}"
awk -v m="$ms1" -v c="$cv2" -v p="$pil" 'BEGIN { printf "{\"what\": \"ratio per core\", \"moonseg_vs_cv2\": %.2f, \"moonseg_vs_pil\": %.2f}\n", m / c, m / p }'
