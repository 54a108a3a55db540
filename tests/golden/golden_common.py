"""Shared parts of the model twins (ppliteseg_torch.py, cnn_torch.py, segformer_torch.py,
ocrnet_torch.py): the deterministic fill formula (mirrored by tests/lua/model_golden.lua), the
label rule, and the Lua golden writer. The committed golden files depend on these numbers bit
for bit: change the formula only together with every golden file and model_golden.lua.

Fill: u_i in (0, 1) from Park-Miller (x <- 48271 x mod 2^31-1) seeded by a base-31 hash of the
key; 4-d (conv) weights sqrt(6/fan_in)(2u-1); 2-d (Linear, Paddle layout [in, out]) weights
sqrt(6/in)(2u-1); 1-d weights (BN/LN gamma) 1 + 0.2(2u-1); biases and _mean 0.1(2u-1);
_variance 0.5 + u; _scale 1; the input 2u-1; the label floor(20u), with 19 turned into 255
(ignored).
"""
import math

import torch

P = 2147483647  # Park-Miller modulus 2^31 - 1
A = 48271


def key_seed(key):
    h = 0
    for b in key.encode():
        h = (h * 31 + b) % P
    return h % (P - 1) + 1


def uniforms(key, n):
    """float64 tensor u_i = s_i / P, s_i = seed * A^(i+1) mod P: the sequential s <- A s mod P,
    computed in blocks of B (products stay below 2^62, so int64 is exact)."""
    B = 4096
    pw = [0] * B
    s = 1
    for j in range(B):
        s = s * A % P
        pw[j] = s
    AB = pw[-1]
    nb = (n + B - 1) // B
    bases = [0] * nb
    b = key_seed(key)
    for k in range(nb):
        bases[k] = b
        b = b * AB % P
    s = (torch.tensor(bases, dtype=torch.int64)[:, None] * torch.tensor(pw, dtype=torch.int64)[None, :]) % P
    return s.reshape(-1)[:n].to(torch.float64) / P


def fill(key, shape):
    n = math.prod(shape)
    if key.endswith("_scale"):  # PP-LiteSeg's UAFM constant
        return torch.ones(shape, dtype=torch.float64)
    u = uniforms(key, n)
    if key == "input":
        v = 2 * u - 1
    elif key.endswith("_variance"):
        v = 0.5 + u
    elif key.endswith("_mean") or key.endswith("bias"):
        v = 0.1 * (2 * u - 1)
    elif len(shape) == 4:
        v = math.sqrt(6.0 / (shape[1] * shape[2] * shape[3])) * (2 * u - 1)
    elif len(shape) == 2 and key.endswith("weight"):
        v = math.sqrt(6.0 / shape[0]) * (2 * u - 1)
    elif key.endswith("weight"):
        v = 1 + 0.2 * (2 * u - 1)
    else:
        raise ValueError("no fill rule for " + key)
    return v.reshape(shape)


def label(shape):
    u = uniforms("label", math.prod(shape))
    t = torch.floor(20 * u).long()
    t[t == 19] = 255
    return t.reshape(shape)


def fill_model(m):
    m.load_state_dict({k: fill(k, list(v.shape)) for k, v in m.state_dict().items()})


def sample_index(i, n):
    return (i * 1151 + 17) % n


def stats(t, nsamples=100):
    """Lua table text: shape, sum, sum of squares, max |v| and sampled values of t."""
    flat = t.detach().reshape(-1)
    n = flat.numel()
    samples = [flat[sample_index(k, n)].item() for k in range(nsamples)]
    return "{ shape = { %s }, sum = %.17g, sumsq = %.17g, absmax = %.17g,\n      samples = { %s } }" % (
        ", ".join(str(s) for s in t.shape), flat.sum().item(), (flat * flat).sum().item(),
        flat.abs().max().item(), ", ".join("%.17g" % v for v in samples))


def ce(logit, target):
    return torch.nn.functional.cross_entropy(logit, target, ignore_index=255)


def write_golden(path, header, fields):
    """fields: list of (name, lua text)."""
    lines = ["-- " + h for h in header] + ["return {"]
    for name, text in fields:
        lines.append("  %s = %s," % (name, text))
    lines += ["}", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))
    print("wrote", path)


class BatchNorm(torch.nn.Module):
    """Batch norm with Paddle's keys (weight, bias, _mean, _variance), momentum 0.9 in Paddle's
    meaning (0.1 in PyTorch's), eps 1e-5."""

    def __init__(self, c):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(c))
        self.bias = torch.nn.Parameter(torch.zeros(c))
        self.register_buffer("_mean", torch.zeros(c))
        self.register_buffer("_variance", torch.ones(c))

    def forward(self, x):
        return torch.nn.functional.batch_norm(x, self._mean, self._variance, self.weight, self.bias,
                                              self.training, 0.1, 1e-5)


def keys_digest(keys):
    """Order-free digest of a key set: sum of the keys' seeds mod 2^31-1 (model_golden.lua too)."""
    return sum(key_seed(k) for k in keys) % P
