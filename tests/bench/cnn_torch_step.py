"""cnn_torch_step.py: the PyTorch peer of cnn_train_step.lua: the same models (the twins of
tests/golden/cnn_torch.py, float32), the same step (train-mode forward, loss coefficients,
zero_grad, backward, SGD lr 0.01 momentum 0.9 weight decay 4e-5); prints one JSON line with
the median step time and the process's peak RSS.

    python tests/bench/cnn_torch_step.py --model deeplabv3p --batch 2 --size 512 512 --steps 2 --threads 2
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
import cnn_torch as tw  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="deeplabv3p")
ap.add_argument("--batch", type=int, default=2)
ap.add_argument("--size", type=int, nargs=2, default=[512, 512])
ap.add_argument("--steps", type=int, default=2)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
if a.model == "deeplabv3p":
    m, coefs = tw.DeepLabV3P(19, tw.ResNet50_vd(8, (1, 2, 4)), (1, 12, 24, 36)), [1]
elif a.model == "pspnet":
    m, coefs = tw.PSPNet(19, tw.ResNet50_vd(8)), [1, 0.4]
else:
    m, coefs = tw.UNet(19), [1]
m.train()
opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=4e-5)
x = torch.randn(a.batch, 3, *a.size)
y = torch.randint(0, 19, (a.batch, *a.size))


def step():
    outs = m(x)
    loss = sum(c * F.cross_entropy(o, y, ignore_index=255) for c, o in zip(coefs, outs))
    opt.zero_grad()
    loss.backward()
    opt.step()


step()
ts = []
for _ in range(a.steps):
    t0 = time.perf_counter()
    step()
    ts.append(time.perf_counter() - t0)
print(json.dumps({"impl": "torch " + torch.__version__.split("+")[0], "model": a.model,
                  "step_s": round(statistics.median(ts), 4), "min_s": round(min(ts), 4), "steps": a.steps,
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
