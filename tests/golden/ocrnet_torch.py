"""OCRNet + HRNet_W18 in PyTorch, written from PaddleSeg's description (ocrnet.py,
backbones/hrnet.py), with PaddleSeg's state-dict keys: the independent reference for
tests/lua/test_ocrnet.lua. Paddle's padding='same' (stride-2 3x3 convs over even sizes pad
bottom/right only) is reproduced with F.pad.

Weights, input and label from the shared fill formula (golden_common.py), float64. Writes
tests/golden/ocrnet_hrnetw18_golden.lua: key/parameter counts at 19 classes, eval logits,
train-mode logits of both heads (batch statistics; Dropout2D set to 0), the loss
1 * CE(main) + 0.4 * CE(aux), and the gradients of the first layer
(backbone.conv_layer1_1._conv.weight) and the last (head.cls_head.weight).

    /usr/bin/python3 tests/golden/ocrnet_torch.py   (Debian's PyTorch 1.13 CPU)
"""
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_common as gc  # noqa: E402


def same_pads(size, k, s):
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class CBA(nn.Module):
    """Conv (no bias, Paddle 'same' padding) + BN (+ ReLU)."""

    def __init__(self, cin, cout, k, s=1, relu=True):
        super().__init__()
        self.k, self.s, self.relu = k, s, relu
        self._conv = nn.Conv2d(cin, cout, k, s, bias=False)
        self._batch_norm = gc.BatchNorm(cout)

    def forward(self, x):
        t, b = same_pads(x.shape[2], self.k, self.s)
        l, r = same_pads(x.shape[3], self.k, self.s)
        y = self._batch_norm(self._conv(F.pad(x, (l, r, t, b))))
        return F.relu(y) if self.relu else y


class Bottleneck(nn.Module):
    def __init__(self, cin, f, down):
        super().__init__()
        self.conv1 = CBA(cin, f, 1)
        self.conv2 = CBA(f, f, 3)
        self.conv3 = CBA(f, 4 * f, 1, relu=False)
        self.conv_down = CBA(cin, 4 * f, 1, relu=False) if down else None

    def forward(self, x):
        r = self.conv_down(x) if self.conv_down is not None else x
        return F.relu(self.conv3(self.conv2(self.conv1(x))) + r)


class Basic(nn.Module):
    def __init__(self, cin, f):
        super().__init__()
        self.conv1 = CBA(cin, f, 3)
        self.conv2 = CBA(f, f, 3, relu=False)

    def forward(self, x):
        return F.relu(self.conv2(self.conv1(x)) + x)


class Transition(nn.Module):
    def __init__(self, cin, cout, name):
        super().__init__()
        self.fns = []
        for i in range(len(cout)):
            m = None
            if i < len(cin):
                if cin[i] != cout[i]:
                    m = CBA(cin[i], cout[i], 3)
            else:
                m = CBA(cin[-1], cout[i], 3, 2)
            if m is not None:
                self.add_module("transition_%s_layer_%d" % (name, i + 1), m)
            self.fns.append(m)

    def forward(self, xs):
        return [xs[i] if m is None else m(xs[min(i, len(xs) - 1)]) for i, m in enumerate(self.fns)]


class HRModule(nn.Module):
    def __init__(self, ch, nb, name):
        super().__init__()
        n = len(ch)
        self.n = n
        self.branch = []
        for i in range(n):
            blocks = []
            for j in range(nb[i]):
                b = Basic(ch[i], ch[i])
                self.add_module("branches_func_bb_%s_branch_layer_%d_%d" % (name, i + 1, j + 1), b)
                blocks.append(b)
            self.branch.append(blocks)
        self.fuse = {}
        for i in range(n):
            for j in range(n):
                if j > i:
                    m = CBA(ch[j], ch[i], 1, relu=False)
                    self.add_module("fuse_func_residual_%s_layer_%d_%d" % (name, i + 1, j + 1), m)
                    self.fuse[(i, j)] = [m]
                elif j < i:
                    chain = []
                    for k in range(i - j):
                        last = k == i - j - 1
                        m = CBA(ch[j], ch[i] if last else ch[j], 3, 2, relu=not last)
                        self.add_module("fuse_func_residual_%s_layer_%d_%d_%d" % (name, i + 1, j + 1, k + 1), m)
                        chain.append(m)
                    self.fuse[(i, j)] = chain

    def forward(self, xs):
        ys = []
        for i, x in enumerate(xs):
            for b in self.branch[i]:
                x = b(x)
            ys.append(x)
        outs = []
        for i in range(self.n):
            r = ys[i]
            for j in range(self.n):
                if j > i:
                    y = self.fuse[(i, j)][0](ys[j])
                    r = r + F.interpolate(y, size=r.shape[2:], mode="bilinear", align_corners=False)
                elif j < i:
                    y = ys[j]
                    for m in self.fuse[(i, j)]:
                        y = m(y)
                    r = r + y
            outs.append(F.relu(r))
        return outs


def rename(key):
    # HRModule keeps its sublayers flat; PaddleSeg nests them under branches_func / fuse_func.
    return key.replace("branches_func_", "branches_func.").replace("fuse_func_", "fuse_func.")


class HRNetW18(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_layer1_1 = CBA(3, 64, 3, 2)
        self.conv_layer1_2 = CBA(64, 64, 3, 2)
        self.la1 = nn.Module()
        self.la1_blocks = []
        for i in range(4):
            b = Bottleneck(64 if i == 0 else 256, 64, i == 0)
            self.la1.add_module("bb_layer2_%d" % (i + 1), b)
            self.la1_blocks.append(b)
        c2, c3, c4 = [18, 36], [18, 36, 72], [18, 36, 72, 144]
        self.tr1 = Transition([256], c2, "tr1")
        self.st2 = self.stage(c2, 1, "st2")
        self.tr2 = Transition(c2, c3, "tr2")
        self.st3 = self.stage(c3, 4, "st3")
        self.tr3 = Transition(c3, c4, "tr3")
        self.st4 = self.stage(c4, 3, "st4")

    @staticmethod
    def stage(ch, nmod, name):
        s = nn.Sequential()
        for i in range(nmod):
            s.add_module("stage_%s_%d" % (name, i + 1), HRModule(ch, [4] * len(ch), "%s_%d" % (name, i + 1)))
        return s

    def forward(self, x):
        x = self.conv_layer1_2(self.conv_layer1_1(x))
        for b in self.la1_blocks:
            x = b(x)
        xs = self.tr1([x])
        for m in self.st2:
            xs = m(xs)
        xs = self.tr2(xs)
        for m in self.st3:
            xs = m(xs)
        xs = self.tr3(xs)
        for m in self.st4:
            xs = m(xs)
        size = xs[0].shape[2:]
        return [torch.cat([xs[0]] + [F.interpolate(t, size=size, mode="bilinear", align_corners=False)
                                     for t in xs[1:]], 1)]


class ConvBNReLU(nn.Module):
    """PaddleSeg's layers.ConvBNReLU with its default conv bias, symmetric padding k // 2."""

    def __init__(self, cin, cout, k):
        super().__init__()
        self._conv = nn.Conv2d(cin, cout, k, padding=k // 2)
        self._batch_norm = gc.BatchNorm(cout)

    def forward(self, x):
        return F.relu(self._batch_norm(self._conv(x)))


class OCRHead(nn.Module):
    def __init__(self, ncls, cin, mid=512, key=256):
        super().__init__()
        self.ncls, self.mid, self.key = ncls, mid, key
        self.spatial_ocr = nn.Module()
        ab = nn.Module()
        ab.f_pixel = nn.Sequential(ConvBNReLU(mid, key, 1), ConvBNReLU(key, key, 1))
        ab.f_object = nn.Sequential(ConvBNReLU(mid, key, 1), ConvBNReLU(key, key, 1))
        ab.f_down = ConvBNReLU(mid, key, 1)
        ab.f_up = ConvBNReLU(key, mid, 1)
        self.spatial_ocr.attention_block = ab
        self.spatial_ocr.conv1x1 = nn.Sequential(ConvBNReLU(2 * mid, mid, 1), nn.Dropout2d(0.1))
        self.conv3x3_ocr = ConvBNReLU(cin, mid, 3)
        self.cls_head = nn.Conv2d(mid, ncls, 1)
        self.aux_head = nn.Sequential(ConvBNReLU(cin, cin, 1), nn.Conv2d(cin, ncls, 1))

    def forward(self, feat):
        soft = self.aux_head(feat)
        pixels = self.conv3x3_ocr(feat)
        n = pixels.shape[0]
        # spatial gather: softmax over pixels of the regions, times the pixel features
        p = pixels.reshape(n, self.mid, -1).permute(0, 2, 1)
        r = torch.softmax(soft.reshape(n, self.ncls, -1), dim=2)
        objects = torch.bmm(r, p).permute(0, 2, 1).unsqueeze(-1)
        ab = self.spatial_ocr.attention_block
        q = ab.f_pixel(pixels).reshape(n, self.key, -1).permute(0, 2, 1)
        k = ab.f_object(objects).reshape(n, self.key, -1)
        v = ab.f_down(objects).reshape(n, self.key, -1).permute(0, 2, 1)
        sim = torch.softmax(torch.bmm(q, k) * self.key ** -0.5, dim=-1)
        ctx = torch.bmm(sim, v).permute(0, 2, 1).reshape(n, self.key, *pixels.shape[2:])
        ctx = ab.f_up(ctx)
        ocr = self.spatial_ocr.conv1x1(torch.cat([ctx, pixels], 1))
        return [self.cls_head(ocr), soft]


class OCRNet(nn.Module):
    def __init__(self, ncls):
        super().__init__()
        self.backbone = HRNetW18()
        self.head = OCRHead(ncls, 270)

    def forward(self, x):
        feat = self.backbone(x)[0]
        outs = self.head(feat)
        if not self.training:
            outs = outs[:1]
        return [F.interpolate(o, size=x.shape[2:], mode="bilinear", align_corners=False) for o in outs]


INPUT = [2, 3, 64, 64]


def main():
    torch.set_num_threads(2)
    m = OCRNet(19)
    sd = {rename(k): v for k, v in m.state_dict().items()}
    keys, params = len(sd), sum(p.numel() for p in m.parameters())
    print("keys", keys, "params", params)
    m = OCRNet(19).double()
    m.load_state_dict({k: gc.fill(rename(k), list(v.shape)) for k, v in m.state_dict().items()})
    m.head.spatial_ocr.conv1x1[1].p = 0.0
    x = gc.fill("input", INPUT)
    m.eval()
    with torch.no_grad():
        ev = m(x)
    m.train()
    outs = m(x)
    target = gc.label([INPUT[0], INPUT[2], INPUT[3]])
    loss = gc.ce(outs[0], target) + 0.4 * gc.ce(outs[1], target)
    loss.backward()
    fields = [("keys", str(keys)), ("params", str(params)), ("keys_digest", str(gc.keys_digest(sd.keys()))),
              ("input_shape", "{ %s }" % ", ".join(map(str, INPUT))),
              ("eval", "{ %s }" % gc.stats(ev[0])),
              ("train", "{ %s,\n    %s }" % (gc.stats(outs[0]), gc.stats(outs[1]))),
              ("loss", "%.17g" % loss.item()),
              ("grad_first", gc.stats(m.backbone.conv_layer1_1._conv.weight.grad)),
              ("grad_last", gc.stats(m.head.cls_head.weight.grad))]
    gc.write_golden(os.path.join(os.path.dirname(os.path.abspath(__file__)), "ocrnet_hrnetw18_golden.lua"),
                    ["Generated by tests/golden/ocrnet_torch.py (PyTorch %s, float64): OCRNet + HRNet_W18," % torch.__version__,
                     "19 classes, backbone_indices {0}, shared fill formula; train = BN batch stats, Dropout2D 0;",
                     "loss = CE(main) + 0.4 CE(aux) (ignore 255); grads of conv_layer1_1._conv.weight, head.cls_head.weight."],
                    fields)


if __name__ == "__main__":
    main()
