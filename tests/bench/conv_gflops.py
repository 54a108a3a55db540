"""conv_gflops.py: turns run_conv_bench.sh's table (ms) into effective GFLOP/s for both sides.
FLOPs are those of a direct convolution, 2*N*O*Ho*Wo*(C/groups)*k*k per pass (backward data and
backward weights count one pass each); 3x3 stride-1 layers run Winograd, so theirs are effective.
    tests/bench/run_conv_bench.sh build 2 5 > /tmp/conv.txt && python3 tests/bench/conv_gflops.py /tmp/conv.txt"""
import os
import re
import sys

here = os.path.dirname(os.path.abspath(__file__))
flops = {}
for line in open(os.path.join(here, "conv_shapes.txt")):
    f = line.split()
    if not f or f[0].startswith("#"):
        continue
    name, (n, c, h, w, o, k, s, g) = f[0], map(int, f[1:9])
    p = k // 2
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    flops[name] = 2 * n * o * ho * wo * (c // g) * k * k

print("%-22s %24s %24s" % ("shape", "forward GFLOP/s", "fwd+bwd GFLOP/s"))
print("%-22s %24s %24s" % ("", "moonseg / torch", "moonseg / torch"))
for line in open(sys.argv[1]):
    parts = line.split()
    if not parts or (parts[0] not in flops and parts[0] != "TOTAL"):
        continue
    cells = [(float(a), float(b)) for a, b in re.findall(r"([\d.]+)/\s*([\d.]+)", line)]
    f = flops.get(parts[0], sum(flops.values()))
    (fm, ft), (bm, bt) = cells[0], cells[3]
    print("%-22s %11.1f / %-10.1f %11.1f / %-10.1f" % (parts[0], f / fm / 1e6, f / ft / 1e6,
                                                       3 * f / (fm + bm) / 1e6, 3 * f / (ft + bt) / 1e6))
