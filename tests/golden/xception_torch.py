"""DeepLabV3P + Xception65_deeplab (OS16, ASPP 1, 6, 12, 18, backbone_indices [0, 1]) in
PyTorch, the backbone written from PaddleSeg's source description
(paddleseg/models/backbones/xception_deeplab.py) with PaddleSeg's state-dict keys: the
independent reference for tests/lua/test_xception.lua. The DeepLabV3+ head (ASPP, decoder) is
cnn_torch.py's, already checked against moonseg for ResNet50_vd.

Weights, input and label come from the shared fill formula (golden_common.py, cnn_torch.py's
make_label); everything runs in float64. Records what cnn_torch.run records (key and parameter
counts, eval logits, train logits with dropout off, loss, first/last layer gradients, an updated
running mean) into tests/golden/xception_deeplab.lua.

    /usr/bin/python3 tests/golden/xception_torch.py   (Debian's PyTorch 1.13 CPU)
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cnn_torch as ct  # noqa: E402


class XBN(nn.Module):
    """Paddle BatchNorm2D(epsilon=1e-3, momentum=0.99): PyTorch momentum 0.01."""

    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.register_buffer("_mean", torch.zeros(c))
        self.register_buffer("_variance", torch.ones(c))

    def forward(self, x):
        return F.batch_norm(x, self._mean, self._variance, self.weight, self.bias,
                            self.training, 0.01, 1e-3)


class ConvBN(nn.Module):
    """xception_deeplab.ConvBNLayer: _conv (no bias), _bn, optional ReLU."""

    def __init__(self, cin, cout, k, stride, padding, act):
        super().__init__()
        self._conv = nn.Conv2d(cin, cout, k, stride, padding, bias=False)
        self._bn = XBN(cout)
        self.act = act

    def forward(self, x):
        y = self._bn(self._conv(x))
        return F.relu(y) if self.act else y


class SepConv(nn.Module):
    """Separate_Conv: depthwise (pad k//2 * dilation) + BN (+ReLU), pointwise + BN (+ReLU)."""

    def __init__(self, cin, cout, stride, k, dilation, act):
        super().__init__()
        self._conv1 = nn.Conv2d(cin, cin, k, stride, (k // 2) * dilation, dilation, groups=cin, bias=False)
        self._bn1 = XBN(cin)
        self._conv2 = nn.Conv2d(cin, cout, 1, bias=False)
        self._bn2 = XBN(cout)
        self.act = act

    def forward(self, x):
        a = F.relu if self.act else (lambda t: t)
        return a(self._bn2(self._conv2(a(self._bn1(self._conv1(x))))))


class Block(nn.Module):
    def __init__(self, cin, couts, strides, dilation=1, skip_conv=True, has_skip=True, act_in_sep=False):
        super().__init__()
        self.skip_conv, self.has_skip, self.act_in_sep = skip_conv, has_skip, act_in_sep
        ins = [cin, couts[0], couts[1]]
        for i in range(3):
            setattr(self, "_conv%d" % (i + 1), SepConv(ins[i], couts[i], strides[i], 3, dilation, act_in_sep))
        if has_skip and skip_conv:
            self._short = ConvBN(cin, couts[2], 1, strides[2], 0, False)

    def forward(self, inputs):
        if self.act_in_sep:
            x = self._conv3(self._conv2(self._conv1(inputs)))
        else:
            x = self._conv3(F.relu(self._conv2(F.relu(self._conv1(F.relu(inputs))))))
        if not self.has_skip:
            return x
        return x + (self._short(inputs) if self.skip_conv else inputs)


class Xception65(nn.Module):
    def __init__(self, output_stride=16):
        super().__init__()
        self.feat_channels = [128, 2048]
        self._conv1 = ConvBN(3, 32, 3, 2, 1, True)
        self._conv2 = ConvBN(32, 64, 3, 1, 1, True)
        chns = [128, 256, 728]
        self.entry, self.middle = [], []
        s = 2
        for i in range(3):
            # PaddleSeg hands every entry block strides [1, 1, 2] (its self.stride, still 2)
            s = s * 2 if s * 2 <= output_stride else s
            b = Block(64 if i == 0 else chns[i - 1], [chns[i]] * 3, [1, 1, 2])
            self.add_module("xception_65/entry_flow/block%d" % (i + 1), b)
            self.entry.append(b)
        for i in range(16):
            b = Block(728, [728] * 3, [1, 1, 1], skip_conv=False)
            self.add_module("xception_65/middle_flow/block%d" % (i + 1), b)
            self.middle.append(b)
        st = 2 if s * 2 <= output_stride else 1
        self._exit_flow_1 = Block(728, [728, 1024, 1024], [1, 1, st])
        self._exit_flow_2 = Block(1024, [1536, 1536, 2048], [1, 1, 1], dilation=2, has_skip=False, act_in_sep=True)

    def forward(self, x):
        x = self._conv2(self._conv1(x))
        feats = []
        for i, b in enumerate(self.entry):
            x = b(x)
            if i == 0:
                feats.append(x)
        for b in self.middle:
            x = b(x)
        feats.append(self._exit_flow_2(self._exit_flow_1(x)))
        return feats


class DeepLabV3PX(nn.Module):
    def __init__(self, ncls):
        super().__init__()
        self.backbone = Xception65(16)
        self.head = ct.DLHead(ncls, [128, 2048], (1, 6, 12, 18))

    def forward(self, x):
        low, deep = self.backbone(x)
        y = self.head.decoder(self.head.aspp(deep), low)
        return [ct.up(y, *x.shape[2:])]


def main():
    torch.set_num_threads(2)
    lines = ["-- Generated by tests/golden/xception_torch.py (PyTorch %s, float64): PaddleSeg's" % torch.__version__,
             "-- DeepLabV3P + Xception65_deeplab (OS16, ASPP 1,6,12,18) at 19 classes, weights, input and",
             "-- label from the shared fill formula. Sample k (0-based) is at flat index (k*1151+17) % numel.",
             "return {"]
    lines += ct.run("deeplabv3p_xception65", DeepLabV3PX(19), [2, 3, 66, 50], [1],
                    ["backbone._conv1._conv.weight", "backbone._conv1._bn.weight",
                     "backbone.xception_65/entry_flow/block1._short._conv.weight",
                     "backbone._exit_flow_2._conv3._conv2.weight",
                     "head.decoder.conv.weight", "head.decoder.conv.bias"],
                    "backbone._conv1._bn._mean")
    lines += ["}", ""]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "xception_deeplab.lua")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    print("wrote", path)


if __name__ == "__main__":
    main()
