"""torch_resize.py: PyTorch CPU bilinear resize, f32 vs bf16, forward and forward+backward (the
peer of resize_bench.lua; the two dtypes interleaved rep by rep). Prints
RESULT torch <dtype> fwd_ms fwdbwd_ms fwdbwd_cpu_ms   (medians)

    /usr/bin/python3 tests/bench/torch_resize.py [--threads 2] [--reps 7] [--size 512]
"""
import argparse, statistics, time
import torch
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--reps", type=int, default=7)
ap.add_argument("--size", type=int, default=512)
args = ap.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)

dts = {"f32": torch.float32, "bf16": torch.bfloat16}
data = {k: (torch.randn(4, 19, 128, 128).to(d), torch.randn(4, 19, args.size, args.size).to(d))
        for k, d in dts.items()}
size = (args.size, args.size)
t = {k: {"fwd": [], "fb": [], "cpu": []} for k in dts}
for rep in range(args.reps + 1):  # rep 0 is the warm-up
    for k in dts:
        x0, g = data[k]
        t0 = time.perf_counter()
        with torch.no_grad():
            y = F.interpolate(x0, size=size, mode="bilinear", align_corners=False)
        t1 = time.perf_counter()
        del y
        x = x0.detach().requires_grad_()
        c0, t2 = time.process_time(), time.perf_counter()
        y = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        y.backward(g)
        t3, c1 = time.perf_counter(), time.process_time()
        del y, x
        if rep > 0:
            t[k]["fwd"].append((t1 - t0) * 1e3)
            t[k]["fb"].append((t3 - t2) * 1e3)
            t[k]["cpu"].append((c1 - c0) * 1e3)
print("torch %s bilinear [4,19,128,128] -> %dx%d, %d threads, median of %d (ms)"
      % (torch.__version__, args.size, args.size, args.threads, args.reps))
for k in dts:
    m = {s: statistics.median(v) for s, v in t[k].items()}
    print("RESULT torch %s %.2f %.2f %.2f" % (k, m["fwd"], m["fb"], m["cpu"]))
