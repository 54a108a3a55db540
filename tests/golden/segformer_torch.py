"""SegFormer-B0 in PyTorch, written from PaddleSeg's description (segformer.py,
backbones/mix_transformer.py), with PaddleSeg's state-dict keys and Linear weights [in, out]:
the independent reference for tests/lua/test_segformer.lua.

Weights, input and label come from the shared fill formula (golden_common.py); everything runs
in float64. Writes tests/golden/segformer_b0_golden.lua: key/parameter counts at 19 classes,
eval logits, train-mode logits (batch-norm batch statistics; Dropout2D and DropPath set to 0
so the run is deterministic), the cross-entropy loss and the gradients of the first layer
(backbone.patch_embed1.proj.weight) and the last (linear_pred.weight).

    /usr/bin/python3 tests/golden/segformer_torch.py   (Debian's PyTorch 1.13 CPU)
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_common as gc  # noqa: E402


class PLinear(nn.Module):
    """Paddle's Linear: weight [in, out]."""

    def __init__(self, cin, cout, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cin, cout) * 0.02)
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None

    def forward(self, x):
        y = x @ self.weight
        return y + self.bias if self.bias is not None else y


class DropPath(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = (torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype) >= self.p).to(x.dtype)
        return x * keep / (1 - self.p)


class DWConv(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x, h, w):
        b, n, c = x.shape
        y = self.dwconv(x.transpose(1, 2).reshape(b, c, h, w))
        return y.flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = PLinear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.fc2 = PLinear(hidden, dim)

    def forward(self, x, h, w):
        return self.fc2(F.gelu(self.dwconv(self.fc1(x), h, w)))


class Attention(nn.Module):
    def __init__(self, dim, heads, sr):
        super().__init__()
        self.heads, self.sr_ratio = heads, sr
        self.scale = (dim // heads) ** -0.5
        self.q = PLinear(dim, dim)
        self.kv = PLinear(dim, 2 * dim)
        self.proj = PLinear(dim, dim)
        if sr > 1:
            self.sr = nn.Conv2d(dim, dim, sr, sr)
            self.norm = nn.LayerNorm(dim, eps=1e-5)  # Paddle's plain LayerNorm here

    def forward(self, x, h, w):
        b, n, c = x.shape
        d = c // self.heads
        q = self.q(x).view(b, n, self.heads, d).permute(0, 2, 1, 3)
        src = x
        if self.sr_ratio > 1:
            m = self.sr(x.transpose(1, 2).reshape(b, c, h, w))
            src = self.norm(m.flatten(2).transpose(1, 2))
        kv = self.kv(src).view(b, -1, 2, self.heads, d).permute(2, 0, 3, 1, 4)
        a = torch.softmax((q @ kv[0].transpose(-1, -2)) * self.scale, dim=-1)
        y = (a @ kv[1]).permute(0, 2, 1, 3).reshape(b, n, c)
        return self.proj(y)


class Block(nn.Module):
    def __init__(self, dim, heads, sr, dp):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, sr)
        self.drop_path = DropPath(dp)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * 4)

    def forward(self, x, h, w):
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.mlp(self.norm2(x), h, w))


class PatchEmbed(nn.Module):
    def __init__(self, k, s, cin, dim):
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, k, s, k // 2)
        self.norm = nn.LayerNorm(dim, eps=1e-5)  # Paddle's plain LayerNorm here too

    def forward(self, x):
        x = self.proj(x)
        h, w = x.shape[2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class MiTB0(nn.Module):
    dims, heads, srs = (32, 64, 160, 256), (1, 2, 5, 8), (8, 4, 2, 1)

    def __init__(self, drop_path_rate=0.1):
        super().__init__()
        dpr = torch.linspace(0, drop_path_rate, 8).tolist()
        for s in range(4):
            k, st = (7, 4) if s == 0 else (3, 2)
            setattr(self, "patch_embed%d" % (s + 1),
                    PatchEmbed(k, st, 3 if s == 0 else self.dims[s - 1], self.dims[s]))
        for s in range(4):
            setattr(self, "block%d" % (s + 1), nn.ModuleList(
                [Block(self.dims[s], self.heads[s], self.srs[s], dpr[2 * s + i]) for i in range(2)]))
            setattr(self, "norm%d" % (s + 1), nn.LayerNorm(self.dims[s], eps=1e-6))

    def forward(self, x):
        outs = []
        for s in range(1, 5):
            x, h, w = getattr(self, "patch_embed%d" % s)(x)
            for blk in getattr(self, "block%d" % s):
                x = blk(x, h, w)
            x = getattr(self, "norm%d" % s)(x)
            x = x.reshape(x.shape[0], h, w, -1).permute(0, 3, 1, 2)
            outs.append(x)
        return outs


class MLP(nn.Module):
    def __init__(self, cin, dim):
        super().__init__()
        self.proj = PLinear(cin, dim)

    def forward(self, x):
        return self.proj(x.flatten(2).transpose(1, 2))


class ConvBNReLU(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self._conv = nn.Conv2d(cin, cout, 1, bias=False)
        self._batch_norm = gc.BatchNorm(cout)

    def forward(self, x):
        return F.relu(self._batch_norm(self._conv(x)))


class SegFormer(nn.Module):
    def __init__(self, ncls, e=256, drop_path_rate=0.1):
        super().__init__()
        self.backbone = MiTB0(drop_path_rate)
        ch = MiTB0.dims
        for i in (4, 3, 2, 1):
            setattr(self, "linear_c%d" % i, MLP(ch[i - 1], e))
        self.dropout = nn.Dropout2d(0.1)
        self.linear_fuse = ConvBNReLU(4 * e, e)
        self.linear_pred = nn.Conv2d(e, ncls, 1)

    def forward(self, x):
        feats = self.backbone(x)
        size = feats[0].shape[2:]
        parts = []
        for i in (4, 3, 2, 1):
            c = feats[i - 1]
            y = getattr(self, "linear_c%d" % i)(c).transpose(1, 2).reshape(c.shape[0], -1, c.shape[2], c.shape[3])
            if i > 1:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            parts.append(y)
        logit = self.linear_pred(self.dropout(self.linear_fuse(torch.cat(parts, 1))))
        return [F.interpolate(logit, size=x.shape[2:], mode="bilinear", align_corners=False)]


INPUT = [2, 3, 64, 64]


def main():
    torch.set_num_threads(2)
    m = SegFormer(19)
    keys, params = len(m.state_dict()), sum(p.numel() for p in m.parameters())
    print("keys", keys, "params", params)
    m = SegFormer(19, drop_path_rate=0.0).double()
    gc.fill_model(m)
    m.dropout.p = 0.0
    x = gc.fill("input", INPUT)
    m.eval()
    with torch.no_grad():
        ev = m(x)
    m.train()
    outs = m(x)
    target = gc.label([INPUT[0], INPUT[2], INPUT[3]])
    loss = gc.ce(outs[0], target)
    loss.backward()
    fields = [("keys", str(keys)), ("params", str(params)), ("keys_digest", str(gc.keys_digest(m.state_dict().keys()))),
              ("input_shape", "{ %s }" % ", ".join(map(str, INPUT))),
              ("eval", "{ %s }" % gc.stats(ev[0])), ("train", "{ %s }" % gc.stats(outs[0])),
              ("loss", "%.17g" % loss.item()),
              ("grad_first", gc.stats(m.backbone.patch_embed1.proj.weight.grad)),
              ("grad_last", gc.stats(m.linear_pred.weight.grad))]
    gc.write_golden(os.path.join(os.path.dirname(os.path.abspath(__file__)), "segformer_b0_golden.lua"),
                    ["Generated by tests/golden/segformer_torch.py (PyTorch %s, float64): SegFormer-B0," % torch.__version__,
                     "19 classes, embedding_dim 256, shared fill formula; train = BN batch stats, dropouts 0;",
                     "loss = CE(ignore 255) on the fill label; grads of patch_embed1.proj.weight, linear_pred.weight."],
                    fields)


if __name__ == "__main__":
    main()
