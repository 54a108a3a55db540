"""PyTorch peer of tests/bench/model_step.lua: the same training step of one model, built from
the twins in tests/golden (cnn_torch.py, ocrnet_torch.py, segformer_torch.py,
ppliteseg_torch.py), float32, on the CPU; prints one JSON line (step_s / cpu_s = medians of the
timed steps' wall and process CPU time, peak RSS).

    /usr/bin/python3 tests/bench/torch_models_peer.py --model ocrnet --batch 2 --size 512 512 --steps 3 --threads 2

--profile prints torch.autograd.profiler's per-op table (CPU time, timed steps only) to stderr.
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


def sgd(m, wd=4e-5):
    return torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=wd)


def build(name):
    """model, loss coefficients, optimizer: the same configs as model_step.lua's `models`."""
    if name in ("unet", "deeplabv3p", "pspnet", "deeplabv3p_xception"):
        import cnn_torch as tw
        if name == "unet":
            m, coefs = tw.UNet(19), [1]
        elif name == "deeplabv3p":
            m, coefs = tw.DeepLabV3P(19, tw.ResNet50_vd(8, (1, 2, 4)), (1, 12, 24, 36)), [1]
        elif name == "pspnet":
            m, coefs = tw.PSPNet(19, tw.ResNet50_vd(8)), [1, 0.4]
        else:  # OS16, ASPP 1/6/12/18: tests/golden/xception_torch.py's twin
            import xception_torch
            m, coefs = xception_torch.DeepLabV3PX(19), [1]
        return m, coefs, sgd(m)
    if name == "ocrnet":
        import ocrnet_torch
        m = ocrnet_torch.OCRNet(19)
        return m, [1, 0.4], sgd(m)
    if name == "segformer":
        import segformer_torch
        m = segformer_torch.SegFormer(19)
        return m, [1], torch.optim.AdamW(m.parameters(), lr=6e-5, weight_decay=0.01)
    if name == "ppliteseg":
        import ppliteseg_torch
        m = ppliteseg_torch.PPLiteSeg(19)
        return m, [1, 1, 1], sgd(m, 5e-4)
    sys.exit("torch_models_peer.py: unknown --model " + name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="deeplabv3p")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--size", type=int, nargs=2, default=[512, 512])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m, coef, opt = build(a.model)
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
    if a.profile:
        with torch.autograd.profiler.profile() as p:
            r = [step() for _ in range(a.steps)]
        sys.stderr.write("# %s %s: per-op CPU time over %d steps\n" % (torch.__version__, a.model, a.steps))
        sys.stderr.write(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=30) + "\n")
    else:
        r = [step() for _ in range(a.steps)]
    print(json.dumps({"impl": "torch " + torch.__version__.split("+")[0], "model": a.model,
                      "params": sum(p.numel() for p in m.parameters()),
                      "step_s": round(statistics.median(t[0] for t in r), 4),
                      "cpu_s": round(statistics.median(t[3] for t in r), 4),
                      "fwd_s": round(statistics.median(t[1] for t in r), 4),
                      "bwd_s": round(statistics.median(t[2] for t in r), 4),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "batch": a.batch, "size": a.size, "threads": a.threads, "warmup": a.warmup,
                      "steps": a.steps}))


if __name__ == "__main__":
    main()
