#!/bin/sh
# run_conv_bench.sh: runs conv_bench.lua (moonseg) and torch_conv.py (PyTorch CPU) on the same
# shapes and threads, then prints a side-by-side table; ratio = torch_ms / moonseg_ms (> 1: faster).
#   tests/bench/run_conv_bench.sh [BUILD_DIR] [THREADS] [REPS] [FILTER] [STAT: median|min]
# The machine may be shared: STAT=min and ROUNDS=3 are the robust choice under background load.
set -e
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
threads=${2:-2}
reps=${3:-5}
filter=${4:-}
stat=${5:-median}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# ROUNDS=n alternates the two sides n times and keeps each cell's best round, so that background
# load hits both sides alike.
rounds=${ROUNDS:-1}
i=0
while [ "$i" -lt "$rounds" ]; do
  LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;;" MOONSEG_LIB=${MOONSEG_LIB:-$build/libmoonseg.so} \
    luajit "$here/conv_bench.lua" --threads "$threads" --reps "$reps" --filter "$filter" \
    --stat "$stat" | grep '^RESULT' >>"$tmp/ms_all.txt"
  /usr/bin/python3 "$here/torch_conv.py" --threads "$threads" --reps "$reps" --filter "$filter" \
    --stat "$stat" | grep '^RESULT' >>"$tmp/torch_all.txt"
  i=$((i + 1))
done
best='{ k = $2; if (!(k in v)) { order[++n] = k; v[k] = $0; next }
        split(v[k], o, " "); line = $1 " " k
        for (j = 3; j <= 7; j++) line = line " " ($j < o[j] ? $j : o[j]); v[k] = line }
      END { for (j = 1; j <= n; j++) print v[order[j]] }'
awk "$best" "$tmp/ms_all.txt" >"$tmp/ms.txt"
awk "$best" "$tmp/torch_all.txt" >"$tmp/torch.txt"
awk -v threads="$threads" -v stat="$stat" '
  FNR == NR { t[$2] = $3 " " $4 " " $5 " " $6; next }
  BEGIN {
    printf "conv2d f32, %s threads, %s ms: moonseg / torch (ratio torch/moonseg)\n", threads, stat
    printf "%-20s %-22s %-22s %-22s %-22s\n", "shape", "forward", "bwd_data", "bwd_weight", "bwd_both"
  }
  {
    split(t[$2], q, " ")
    line = sprintf("%-20s", $2)
    for (i = 1; i <= 4; i++) {
      m = $(i + 2); p = q[i]
      line = line sprintf(" %7.2f/%7.2f (%4.2f)", m, p, p / m)
      sm[i] += m; sp[i] += p
    }
    print line
  }
  END {
    line = sprintf("%-20s", "TOTAL")
    for (i = 1; i <= 4; i++) line = line sprintf(" %7.1f/%7.1f (%4.2f)", sm[i], sp[i], sp[i] / sm[i])
    print line
  }' "$tmp/torch.txt" "$tmp/ms.txt"
