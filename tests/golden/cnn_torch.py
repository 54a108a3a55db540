"""ResNet50_vd + DeepLabV3P, ResNet50_vd + PSPNet and UNet in PyTorch, written from
PaddleSeg's source description (paddleseg/models/{deeplab,pspnet,unet}.py,
backbones/resnet_vd.py, layers/pyramid_pool.py, layers/layer_libs.py) with PaddleSeg's
state-dict keys: the independent reference for tests/lua/test_cnn_models.lua.

Parameters, buffers and input come from the shared fill formula (golden_common.py: Park-Miller
seeded by a hash of the key), the label from make_label below.
Everything runs in float64. Per model the script records: key and parameter counts; eval-mode
logits; train-mode logits (batch norms on batch statistics, dropout off), the loss (PaddleSeg's
cross-entropy, ignore 255, coefficients 1 and 0.4 for PSPNet's auxiliary head), gradients of
the first and last layers and the first batch norm's updated running mean. Written to
tests/golden/cnn_models.lua.

    /usr/bin/python3 tests/golden/cnn_torch.py   (Debian's PyTorch 1.13 CPU)
"""
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_common as gc  # noqa: E402


def make_label(shape, ncls):
    """floor(19 u) per pixel, every 11th pixel (index % 11 == 5) ignored (255)."""
    u = gc.uniforms("label", math.prod(shape))
    lab = torch.floor(u * ncls).to(torch.int64)
    idx = torch.arange(lab.numel())
    lab[idx % 11 == 5] = 255
    return lab.reshape(shape)


def ce_loss(logit, label):
    """PaddleSeg's CrossEntropyLoss: sum of nll over kept pixels / (kept + 1e-8 * numel)."""
    s = F.cross_entropy(logit, label, ignore_index=255, reduction="sum")
    kept = (label != 255).sum().item()
    return s / (kept + 1e-8 * label.numel())


class BN(nn.Module):
    """Paddle's BatchNorm2D names (weight, bias, _mean, _variance); momentum 0.9 in Paddle's
    sense = PyTorch's 0.1, epsilon 1e-5."""

    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.register_buffer("_mean", torch.zeros(c))
        self.register_buffer("_variance", torch.ones(c))

    def forward(self, x):
        return F.batch_norm(x, self._mean, self._variance, self.weight, self.bias,
                            self.training, 0.1, 1e-5)


class ConvBNReLU(nn.Module):
    """PaddleSeg layers.ConvBNReLU/ConvBN: _conv (bias unless bias=False), _batch_norm."""

    def __init__(self, cin, cout, k, padding=None, dilation=1, groups=1, bias=True, relu=True):
        super().__init__()
        if padding is None:
            padding = k // 2
        self._conv = nn.Conv2d(cin, cout, k, padding=padding, dilation=dilation, groups=groups, bias=bias)
        self._batch_norm = BN(cout)
        self.relu = relu

    def forward(self, x):
        x = self._batch_norm(self._conv(x))
        return F.relu(x) if self.relu else x


class SepConvBNReLU(nn.Module):
    def __init__(self, cin, cout, k, padding, dilation=1):
        super().__init__()
        self.depthwise_conv = ConvBNReLU(cin, cin, k, padding, dilation, groups=cin, relu=False)
        self.piontwise_conv = ConvBNReLU(cin, cout, 1)

    def forward(self, x):
        return self.piontwise_conv(self.depthwise_conv(x))


# ---- ResNet-vd -------------------------------------------------------------------------
class ConvBNLayer(nn.Module):
    def __init__(self, cin, cout, k, stride=1, dilation=1, vd=False, relu=False):
        super().__init__()
        self.vd, self.relu = vd, relu
        pad = (k - 1) // 2 if dilation == 1 else dilation
        self._conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad, dilation=dilation, bias=False)
        self._batch_norm = BN(cout)

    def forward(self, x):
        if self.vd:  # Paddle AvgPool2D(2, 2, 0, ceil_mode=True), exclusive
            x = F.avg_pool2d(x, 2, 2, 0, ceil_mode=True, count_include_pad=False)
        y = self._batch_norm(self._conv(x))
        return F.relu(y) if self.relu else y


class Bottleneck(nn.Module):
    def __init__(self, cin, cout, stride, shortcut, if_first, dilation):
        super().__init__()
        self.conv0 = ConvBNLayer(cin, cout, 1, relu=True)
        self.conv1 = ConvBNLayer(cout, cout, 3, stride=stride, dilation=dilation, relu=True)
        self.conv2 = ConvBNLayer(cout, cout * 4, 1)
        self.shortcut = shortcut
        if not shortcut:
            self.short = ConvBNLayer(cin, cout * 4, 1, vd=not (if_first or stride == 1))

    def forward(self, x):
        y = self.conv2(self.conv1(self.conv0(x)))
        s = x if self.shortcut else self.short(x)
        return F.relu(s + y)


class ResNet50_vd(nn.Module):
    def __init__(self, output_stride=8, multi_grid=(1, 1, 1)):
        super().__init__()
        depth = [3, 4, 6, 3]
        num_channels, num_filters = [64, 256, 512, 1024], [64, 128, 256, 512]
        self.feat_channels = [256, 512, 1024, 2048]
        dil = {8: {2: 2, 3: 4}, 16: {3: 2}}[output_stride]
        self.conv1_1 = ConvBNLayer(3, 32, 3, stride=2, relu=True)
        self.conv1_2 = ConvBNLayer(32, 32, 3, relu=True)
        self.conv1_3 = ConvBNLayer(32, 64, 3, relu=True)
        self.stages = []
        for b in range(4):
            blocks, shortcut = [], False
            for i in range(depth[b]):
                d = dil.get(b, 1)
                if b == 3:
                    d *= multi_grid[i]
                m = Bottleneck(num_channels[b] if i == 0 else num_filters[b] * 4, num_filters[b],
                               2 if i == 0 and b != 0 and d == 1 else 1, shortcut, b == 0 and i == 0, d)
                self.add_module("bb_%d_%d" % (b, i), m)
                blocks.append(m)
                shortcut = True
            self.stages.append(blocks)

    def forward(self, x):
        y = F.max_pool2d(self.conv1_3(self.conv1_2(self.conv1_1(x))), 3, 2, 1)
        feats = []
        for blocks in self.stages:
            for m in blocks:
                y = m(y)
            feats.append(y)
        return feats


def up(x, h, w):
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)


# ---- DeepLabV3+ -------------------------------------------------------------------------
class ASPP(nn.Module):
    def __init__(self, ratios, cin, cout):
        super().__init__()
        self.aspp_blocks = nn.ModuleList()
        for r in ratios:
            if r > 1:
                self.aspp_blocks.append(SepConvBNReLU(cin, cout, 3, r, r))
            else:
                self.aspp_blocks.append(ConvBNReLU(cin, cout, 1, 0))
        self.global_avg_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvBNReLU(cin, cout, 1, bias=False))
        self.conv_bn_relu = ConvBNReLU(cout * (len(ratios) + 1), cout, 1)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x):
        h, w = x.shape[2:]
        outs = [b(x) for b in self.aspp_blocks]
        outs.append(up(self.global_avg_pool(x), h, w))
        return self.dropout(self.conv_bn_relu(torch.cat(outs, 1)))


class Decoder(nn.Module):
    def __init__(self, ncls, cin):
        super().__init__()
        self.conv_bn_relu1 = ConvBNReLU(cin, 48, 1)
        self.conv_bn_relu2 = SepConvBNReLU(304, 256, 3, 1)
        self.conv_bn_relu3 = SepConvBNReLU(256, 256, 3, 1)
        self.conv = nn.Conv2d(256, ncls, 1)

    def forward(self, x, low):
        low = self.conv_bn_relu1(low)
        x = up(x, *low.shape[2:])
        return self.conv(self.conv_bn_relu3(self.conv_bn_relu2(torch.cat([x, low], 1))))


class DLHead(nn.Module):
    def __init__(self, ncls, chs, ratios):
        super().__init__()
        self.aspp = ASPP(ratios, chs[1], 256)
        self.decoder = Decoder(ncls, chs[0])


class DeepLabV3P(nn.Module):
    def __init__(self, ncls, backbone, ratios):
        super().__init__()
        self.backbone = backbone
        self.head = DLHead(ncls, [256, 2048], ratios)

    def forward(self, x):
        f = self.backbone(x)
        y = self.head.decoder(self.head.aspp(f[3]), f[0])
        return [up(y, *x.shape[2:])]


# ---- PSPNet -----------------------------------------------------------------------------
class PPModule(nn.Module):
    def __init__(self, cin, cout, bins):
        super().__init__()
        inter = cin // len(bins)
        self.stages = nn.ModuleList([nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvBNReLU(cin, inter, 1))
                                     for s in bins])
        self.conv_bn_relu2 = ConvBNReLU(cin + inter * len(bins), cout, 3, 1)

    def forward(self, x):
        h, w = x.shape[2:]
        ups = [up(s(x), h, w) for s in self.stages]
        return self.conv_bn_relu2(torch.cat([x] + ups[::-1], 1))


class AuxLayer(nn.Module):
    def __init__(self, cin, inter, cout):
        super().__init__()
        self.conv_bn_relu = ConvBNReLU(cin, inter, 3, 1)
        self.dropout = nn.Dropout(0.1)
        self.conv = nn.Conv2d(inter, cout, 1)

    def forward(self, x):
        return self.conv(self.dropout(self.conv_bn_relu(x)))


class PSPHead(nn.Module):
    def __init__(self, ncls):
        super().__init__()
        self.psp_module = PPModule(2048, 1024, (1, 2, 3, 6))
        self.dropout = nn.Dropout(0.1)
        self.conv = nn.Conv2d(1024, ncls, 1)
        self.auxlayer = AuxLayer(1024, 256, ncls)


class PSPNet(nn.Module):
    def __init__(self, ncls, backbone):
        super().__init__()
        self.backbone = backbone
        self.head = PSPHead(ncls)

    def forward(self, x):
        f = self.backbone(x)
        hd = self.head
        outs = [hd.conv(hd.dropout(hd.psp_module(f[3])))]
        if self.training:
            outs.append(hd.auxlayer(f[2]))
        return [up(o, *x.shape[2:]) for o in outs]


# ---- UNet -------------------------------------------------------------------------------
class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.double_conv = nn.Sequential(ConvBNReLU(3, 64, 3), ConvBNReLU(64, 64, 3))
        self.down_sample_list = nn.ModuleList([
            nn.Sequential(nn.MaxPool2d(2, 2), ConvBNReLU(a, b, 3), ConvBNReLU(b, b, 3))
            for a, b in [(64, 128), (128, 256), (256, 512), (512, 512)]])

    def forward(self, x):
        shorts = []
        x = self.double_conv(x)
        for d in self.down_sample_list:
            shorts.append(x)
            x = d(x)
        return x, shorts


class UpSampling(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.double_conv = nn.Sequential(ConvBNReLU(cin * 2, cout, 3), ConvBNReLU(cout, cout, 3))

    def forward(self, x, short):
        return self.double_conv(torch.cat([up(x, *short.shape[2:]), short], 1))


class UDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.up_sample_list = nn.ModuleList([UpSampling(a, b) for a, b in
                                             [(512, 256), (256, 128), (128, 64), (64, 64)]])

    def forward(self, x, shorts):
        for i, u in enumerate(self.up_sample_list):
            x = u(x, shorts[-(i + 1)])
        return x


class UNet(nn.Module):
    def __init__(self, ncls):
        super().__init__()
        self.encode = Encoder()
        self.decode = UDecoder()
        self.cls = nn.Conv2d(64, ncls, 3, padding=1)
        self.conv = self.cls  # PaddleSeg: self.cls = self.conv = Conv2D(...)

    def forward(self, x):
        y, shorts = self.encode(x)
        return [self.cls(self.decode(y, shorts))]


def stats(t, nsamples=40):
    flat = t.detach().reshape(-1)
    n = flat.numel()
    return "{ shape = { %s }, sum = %.17g, sumsq = %.17g, samples = { %s } }" % (
        ", ".join(str(s) for s in t.shape), flat.sum().item(), (flat * flat).sum().item(),
        ", ".join("%.17g" % flat[gc.sample_index(k, n)].item() for k in range(nsamples)))


def run(name, m, xshape, coefs, grad_keys, bn_key):
    keys = len(m.state_dict(keep_vars=True))
    params = sum(p.numel() for p in m.parameters())  # unique tensors, as Paddle counts
    print(name, "keys", keys, "params", params)
    m = m.double()
    sd = {k: gc.fill(k, list(v.shape)) for k, v in m.state_dict().items()}
    m.load_state_dict(sd)
    x = gc.fill("input", xshape)
    label = make_label([xshape[0], xshape[2], xshape[3]], 19)
    lines = ["  %s = {" % name, "    keys = %d, params = %d," % (keys, params),
             "    input_shape = { %s }, coefs = { %s }," % (", ".join(map(str, xshape)),
                                                         ", ".join(map(str, coefs)))]
    m.eval()
    with torch.no_grad():
        outs = m(x)
    lines.append("    eval = { %s }," % ", ".join(stats(o) for o in outs))
    m.train()
    for mod in m.modules():
        if isinstance(mod, nn.Dropout):
            mod.eval()
    outs = m(x)
    loss = sum(c * ce_loss(o, label) for c, o in zip(coefs, outs))
    loss.backward()
    named = dict(m.named_parameters())
    lines.append("    train = { %s }," % ", ".join(stats(o) for o in outs))
    lines.append("    loss = %.17g," % loss.item())
    lines.append("    grads = {")
    for k in grad_keys:
        lines.append('      ["%s"] = %s,' % (k, stats(named[k].grad, 20)))
    lines.append("    },")
    lines.append('    bn_mean = { key = "%s", value = %s },' % (bn_key, stats(m.state_dict()[bn_key], 16)))
    lines.append("  },")
    return lines


def main():
    torch.set_num_threads(2)
    lines = ["-- Generated by tests/golden/cnn_torch.py (PyTorch %s, float64): PaddleSeg's" % torch.__version__,
             "-- DeepLabV3P/PSPNet (ResNet50_vd, OS8) and UNet at 19 classes, weights, input and",
             "-- label from the shared fill formula. Sample k (0-based) is at flat index (k*1151+17) % numel.",
             "return {"]
    lines += run("deeplabv3p", DeepLabV3P(19, ResNet50_vd(8, (1, 2, 4)), (1, 12, 24, 36)), [2, 3, 66, 50],
                 [1], ["backbone.conv1_1._conv.weight", "head.decoder.conv.weight", "head.decoder.conv.bias",
                       "head.aspp.aspp_blocks.3.depthwise_conv._conv.weight"],
                 "backbone.conv1_1._batch_norm._mean")
    lines += run("pspnet", PSPNet(19, ResNet50_vd(8)), [2, 3, 66, 50], [1, 0.4],
                 ["backbone.conv1_1._conv.weight", "head.conv.weight", "head.conv.bias",
                  "head.auxlayer.conv.weight", "head.psp_module.stages.2.1._conv.weight"],
                 "backbone.conv1_1._batch_norm._mean")
    lines += run("unet", UNet(19), [2, 3, 36, 44], [1],
                 ["encode.double_conv.0._conv.weight", "cls.weight", "cls.bias"],
                 "encode.double_conv.0._batch_norm._mean")
    lines += ["}", ""]
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cnn_models.lua")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    print("wrote", path)


if __name__ == "__main__":
    main()
