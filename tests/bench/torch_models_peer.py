"""PyTorch peer of tests/bench/model_step.lua: the same training step of OCRNet-HRNet_W18 or
SegFormer-B0, built from the twins in tests/golden (ocrnet_torch.py, segformer_torch.py),
float32, on the CPU; prints one JSON line (step_s = median of the timed steps, peak RSS).

    /usr/bin/python3 tests/bench/torch_models_peer.py --model ocrnet --batch 2 --size 512 512 --steps 3 --threads 2
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="segformer", choices=["ocrnet", "segformer"])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, nargs=2, default=[512, 512])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.model == "ocrnet":
        import ocrnet_torch
        m = ocrnet_torch.OCRNet(19)
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=4e-5)
        coef = [1, 0.4]
    else:
        import segformer_torch
        m = segformer_torch.SegFormer(19)
        opt = torch.optim.AdamW(m.parameters(), lr=6e-5, weight_decay=0.01)
        coef = [1]
    m.train()
    x = torch.randn(a.batch, 3, *a.size)
    y = torch.randint(0, 19, (a.batch, *a.size))

    def step():
        c0 = time.process_time()
        t0 = time.perf_counter()
        outs = m(x)
        loss = sum(c * F.cross_entropy(o, y, ignore_index=255) for c, o in zip(coef, outs))
        t1 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        return time.perf_counter() - t0, t1 - t0, t2 - t1, time.process_time() - c0

    for _ in range(a.warmup):
        step()
    r = [step() for _ in range(a.steps)]
    print(json.dumps({"impl": "torch " + torch.__version__, "model": a.model,
                      "params": sum(p.numel() for p in m.parameters()),
                      "step_s": round(statistics.median(t[0] for t in r), 4),
                      "cpu_s": round(statistics.median(t[3] for t in r), 4),
                      "fwd_s": round(statistics.median(t[1] for t in r), 4),
                      "bwd_s": round(statistics.median(t[2] for t in r), 4),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "batch": a.batch, "size": a.size, "threads": a.threads, "steps": a.steps}))


if __name__ == "__main__":
    main()
