"""torch_conv.py: PyTorch CPU timings of conv2d forward / backward-data / backward-weights for the
shapes in conv_shapes.txt (the peer of conv_bench.lua). Prints one RESULT line per shape:
RESULT name fwd_ms bwd_data_ms bwd_weight_ms bwd_both_ms gflop   (medians, or minima with --stat min)

    /usr/bin/python3 tests/bench/torch_conv.py [--threads 2] [--reps 5] [--filter SUBSTR] [--stat median|min]
"""
import argparse, os, statistics, time
import torch
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--filter", default="")
ap.add_argument("--stat", default="median", choices=["median", "min"])
ap.add_argument("--shapes", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "conv_shapes.txt"))
args = ap.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)


def median_ms(fn, reps):
    fn()  # warm-up (primitive creation)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return min(ts) if args.stat == "min" else statistics.median(ts)


for line in open(args.shapes):
    line = line.split("#")[0].split()
    if not line:
        continue
    name = line[0]
    if args.filter not in name:
        continue
    n, c, h, w, o, k, s, g = map(int, line[1:])
    x = torch.randn(n, c, h, w)
    wt = torch.randn(o, c // g, k, k) * 0.1
    p = k // 2
    with torch.no_grad():
        y = F.conv2d(x, wt, None, s, p, 1, g)
    gy = torch.randn_like(y)
    flop = 2.0 * n * o * y.shape[2] * y.shape[3] * (c // g) * k * k / 1e9

    def bwd(mask):
        return lambda: torch.ops.aten.convolution_backward(gy, x, wt, None, [s, s], [p, p], [1, 1],
                                                           False, [0, 0], g, mask)

    with torch.no_grad():
        f = median_ms(lambda: F.conv2d(x, wt, None, s, p, 1, g), args.reps)
        bd = median_ms(bwd([True, False, False]), args.reps)
        bw = median_ms(bwd([False, True, False]), args.reps)
        bb = median_ms(bwd([True, True, False]), args.reps)
    print(f"RESULT {name} {f:.3f} {bd:.3f} {bw:.3f} {bb:.3f} {flop:.4f}", flush=True)
