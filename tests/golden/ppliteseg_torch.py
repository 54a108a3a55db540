"""PP-LiteSeg in PyTorch, written from PaddleSeg's source description, with PaddleSeg's
state-dict keys: the independent reference for tests/lua/test_pp_liteseg.lua.

Every parameter and buffer is filled from a formula of (key name, element index) that the
Lua test recomputes (golden_common.fill, mirrored by tests/lua/model_golden.lua), the input
too; the forward runs in float64 in eval mode (batch norm uses the filled running
statistics), and the script writes
tests/golden/ppliteseg_t_forward.lua: output shapes, sums, sums of squares and sampled logits
of the three heads (the top module switched to training so that all three heads are returned,
every batch norm still in eval mode), plus the key and parameter counts of PP-LiteSeg-T and -B.

    /usr/bin/python3 tests/golden/ppliteseg_torch.py   (Debian's PyTorch 1.13 CPU)
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_common as gc  # noqa: E402


class BN(nn.Module):
    """Paddle's BatchNorm2D names: weight, bias, _mean, _variance (momentum 0.9 in Paddle's
    sense = PyTorch's 0.1, epsilon 1e-5)."""

    def __init__(self, c):
        super().__init__()
        self.num_features, self.eps, self.momentum = c, 1e-5, 0.1
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.register_buffer("_mean", torch.zeros(c))
        self.register_buffer("_variance", torch.ones(c))

    def forward(self, x):
        return F.batch_norm(x, self._mean, self._variance, self.weight, self.bias,
                            self.training, self.momentum, self.eps)


class ConvBNReLU(nn.Module):  # PaddleSeg layers.ConvBNReLU (conv bias unless bias=False)
    def __init__(self, cin, cout, k, padding=None, bias=True, relu=True):
        super().__init__()
        self._conv = nn.Conv2d(cin, cout, k, 1, k // 2 if padding is None else padding, bias=bias)
        self._batch_norm = BN(cout)
        self.relu = relu

    def forward(self, x):
        x = self._batch_norm(self._conv(x))
        return F.relu(x) if self.relu else x


class STDCConvBNRelu(nn.Module):  # stdcnet.ConvBNRelu: conv (no bias), bn
    def __init__(self, cin, cout, k=3, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)
        self.bn = BN(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class CatBottleneck(nn.Module):
    def __init__(self, cin, cout, block_num=4, stride=1):
        super().__init__()
        self.stride = stride
        if stride == 2:
            h = cout // 2
            self.avd_layer = nn.Sequential(nn.Conv2d(h, h, 3, 2, 1, groups=h, bias=False), BN(h))
        self.conv_list = nn.ModuleList()
        for i in range(block_num):
            if i == 0:
                self.conv_list.append(STDCConvBNRelu(cin, cout // 2, 1))
            elif i == 1 and block_num == 2:
                self.conv_list.append(STDCConvBNRelu(cout // 2, cout // 2))
            elif i == 1:
                self.conv_list.append(STDCConvBNRelu(cout // 2, cout // 4))
            elif i < block_num - 1:
                self.conv_list.append(STDCConvBNRelu(cout // 2 ** i, cout // 2 ** (i + 1)))
            else:
                self.conv_list.append(STDCConvBNRelu(cout // 2 ** i, cout // 2 ** i))

    def forward(self, x):
        out1 = self.conv_list[0](x)
        outs = []
        out = out1
        for i, conv in enumerate(self.conv_list[1:]):
            if i == 0:
                out = conv(self.avd_layer(out1) if self.stride == 2 else out1)
            else:
                out = conv(out)
            outs.append(out)
        if self.stride == 2:  # Paddle AvgPool2D(3, 2, 1): exclusive = no padded zeros counted
            out1 = F.avg_pool2d(out1, 3, 2, 1, count_include_pad=False)
        return torch.cat([out1] + outs, 1)


class STDCNet(nn.Module):
    def __init__(self, layers, base=64, block_num=4):
        super().__init__()
        feats = [STDCConvBNRelu(3, base // 2, 3, 2), STDCConvBNRelu(base // 2, base, 3, 2)]
        self.bounds = [1, 2]
        for i, n in enumerate(layers):
            for j in range(n):
                if i == 0 and j == 0:
                    feats.append(CatBottleneck(base, base * 4, block_num, 2))
                elif j == 0:
                    feats.append(CatBottleneck(base * 2 ** (i + 1), base * 2 ** (i + 2), block_num, 2))
                else:
                    feats.append(CatBottleneck(base * 2 ** (i + 2), base * 2 ** (i + 2), block_num, 1))
            self.bounds.append(len(feats))
        self.features = nn.Sequential(*feats)

    def forward(self, x):
        outs, start = [], 0
        for b in self.bounds:
            for m in self.features[start:b]:
                x = m(x)
            start = b
            outs.append(x)
        return outs


def up(x, ref):
    return F.interpolate(x, ref.shape[2:], mode="bilinear", align_corners=False)


class PPContextModule(nn.Module):
    def __init__(self, cin, inter, cout, bins=(1, 2, 4)):
        super().__init__()
        self.stages = nn.ModuleList(
            [nn.Sequential(nn.AdaptiveAvgPool2d(b), ConvBNReLU(cin, inter, 1)) for b in bins])
        self.conv_out = ConvBNReLU(inter, cout, 3, padding=1)

    def forward(self, x):
        out = None
        for st in self.stages:
            y = up(st(x), x)
            out = y if out is None else out + y
        return self.conv_out(out)


class UAFM_SpAtten(nn.Module):
    def __init__(self, x_ch, y_ch, out_ch, ksize=3):
        super().__init__()
        self.conv_x = ConvBNReLU(x_ch, y_ch, ksize, padding=ksize // 2, bias=False)
        self.conv_out = ConvBNReLU(y_ch, out_ch, 3, padding=1, bias=False)
        self.conv_xy_atten = nn.Sequential(ConvBNReLU(4, 2, 3, padding=1, bias=False),
                                           ConvBNReLU(2, 1, 3, padding=1, bias=False, relu=False))
        self.register_buffer("_scale", torch.ones(1))  # PaddleSeg: parameter, stop_gradient

    def forward(self, x, y):
        x = self.conv_x(x)
        y = up(y, x)
        a = torch.cat([x.mean(1, keepdim=True), x.max(1, keepdim=True)[0],
                       y.mean(1, keepdim=True), y.max(1, keepdim=True)[0]], 1)
        a = torch.sigmoid(self.conv_xy_atten(a))
        return self.conv_out(x * a + y * (self._scale - a))


class PPLiteSegHead(nn.Module):
    def __init__(self, chs, arm_out, cm_out=128):
        super().__init__()
        self.cm = PPContextModule(chs[-1], cm_out, cm_out)
        self.arm_list = nn.ModuleList()
        for i in range(len(chs)):
            high = cm_out if i == len(chs) - 1 else arm_out[i + 1]
            self.arm_list.append(UAFM_SpAtten(chs[i], high, arm_out[i]))

    def forward(self, feats):
        high = self.cm(feats[-1])
        outs = [None] * len(feats)
        for i in reversed(range(len(feats))):
            high = self.arm_list[i](feats[i], high)
            outs[i] = high
        return outs


class SegHead(nn.Module):
    def __init__(self, cin, mid, ncls):
        super().__init__()
        self.conv = ConvBNReLU(cin, mid, 3, padding=1, bias=False)
        self.conv_out = nn.Conv2d(mid, ncls, 1, bias=False)

    def forward(self, x):
        return self.conv_out(self.conv(x))


class PPLiteSeg(nn.Module):
    def __init__(self, ncls, stdc2=False):
        super().__init__()
        self.backbone = STDCNet((4, 5, 3) if stdc2 else (2, 2, 2))
        arm_out, inter = ((64, 96, 128), (64, 64, 64)) if stdc2 else ((32, 64, 128), (32, 64, 64))
        self.ppseg_head = PPLiteSegHead([256, 512, 1024], arm_out)
        self.seg_heads = nn.ModuleList([SegHead(a, m, ncls) for a, m in zip(arm_out, inter)])

    def forward(self, x):
        f = self.backbone(x)[2:]
        heads = self.ppseg_head(f)
        if self.training:
            return [up(h(o), x) for h, o in zip(self.seg_heads, heads)]
        return [up(self.seg_heads[0](heads[0]), x)]


def main():
    torch.set_num_threads(2)
    counts = {}
    for name, stdc2 in (("T", False), ("B", True)):
        m = PPLiteSeg(19, stdc2)
        counts[name] = (len(m.state_dict()), sum(p.numel() for p in m.parameters()))
        print(name, "keys", counts[name][0], "params", counts[name][1])
    m = PPLiteSeg(19).double()
    sd = {k: gc.fill(k, list(v.shape)) for k, v in m.state_dict().items()}
    m.load_state_dict(sd)
    m.eval()
    m.training = True  # top module only: all three heads, batch norms on running stats
    x = gc.fill("input", [1, 3, 64, 96])
    with torch.no_grad():
        outs = m(x)
    lines = ["-- Generated by tests/golden/ppliteseg_torch.py (PyTorch %s, float64): PP-LiteSeg-T,"
             % torch.__version__,
             "-- 19 classes, parameters/buffers/input from the shared fill formula, batch norms",
             "-- in eval mode, all three heads. Sample k (0-based) is at flat index (k*1151+17) % numel.",
             "return {",
             "  keys_T = %d, params_T = %d, keys_B = %d, params_B = %d," % (
                 counts["T"] + counts["B"]),
             "  input_shape = { 1, 3, 64, 96 },",
             "  heads = {"]
    for o in outs:
        flat = o.reshape(-1)
        n = flat.numel()
        samples = [flat[gc.sample_index(k, n)].item() for k in range(100)]
        lines.append("    { shape = { %s }, sum = %.17g, sumsq = %.17g, absmax = %.17g," % (
            ", ".join(str(s) for s in o.shape), flat.sum().item(), (flat * flat).sum().item(),
            flat.abs().max().item()))
        lines.append("      samples = { %s } }," % ", ".join("%.17g" % v for v in samples))
    lines += ["  },", "}", ""]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ppliteseg_t_forward.lua")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    print("wrote", path)


if __name__ == "__main__":
    main()
