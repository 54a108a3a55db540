#!/usr/bin/env python3
"""Convert a PaddleSeg checkpoint (.pdparams) to safetensors for moonseg.

    python3 recipes/tools/convert_pdparams.py model.pdparams model.safetensors
    python3 recipes/tools/convert_pdparams.py STDCNet1.pdparams stdc1.safetensors

A .pdparams file is a pickled dict {name: numpy array} (paddle.save); this reads it with
pickle and numpy only (no paddle import) and writes safetensors with a small writer.

Key handling for PP-LiteSeg (moonseg keeps PaddleSeg's names, so most keys pass through):
  * `StructuredToParameterName@@` and other non-array entries are dropped;
  * `[backbone.]x2/x4/x8/x16/x32.*` are aliases of `backbone.features.*` in PaddleSeg's STDCNet
    (nn.Sequential over slices of features); they are mapped back and checked to be equal;
  * `[backbone.]conv_last.*`: PaddleSeg always builds this 1x1 ConvBNRelu but PP-LiteSeg never
    uses it; dropped unless --keep-conv-last (moonseg builds it only with use_conv_last);
  * `ppseg_head.arm_list.N._scale`: newer PaddleSeg UAFM_SpAtten has this constant 1
    (stop_gradient); it is added as [1.0] when a checkpoint from an older version lacks it;
  * `--add-prefix P` prepends P to every key, `--strip-prefix P` removes a leading P.
An ImageNet STDC checkpoint (features.*, plus classifier keys moonseg ignores) converts as is
and loads with PPLiteSeg{backbone_pretrained=...} / STDC1{pretrained=...}.
Paddle stores bfloat16 as uint16 arrays; those are written as BF16.
"""
import argparse
import json
import os
import pickle
import re
import struct
import sys

import numpy as np

DTYPES = {
    np.dtype("float64"): "F64", np.dtype("float32"): "F32", np.dtype("float16"): "F16",
    np.dtype("uint16"): "BF16", np.dtype("int64"): "I64", np.dtype("int32"): "I32",
    np.dtype("uint8"): "U8", np.dtype("bool"): "BOOL",
}

# First features index of each STDC stage alias, per backbone depth (len(features)).
STAGE_STARTS = {
    8: {"x2": 0, "x4": 1, "x8": 2, "x16": 4, "x32": 6},     # STDC1, layers [2, 2, 2]
    14: {"x2": 0, "x4": 1, "x8": 2, "x16": 6, "x32": 11},   # STDC2, layers [4, 5, 3]
}


class _Unpickler(pickle.Unpickler):
    """Loads numpy arrays and plain containers; refuses anything else (a checkpoint
    needs no other classes, and unpickling arbitrary ones would run their code)."""

    def find_class(self, module, name):
        if module.startswith("numpy") or module in ("collections", "builtins", "_codecs"):
            if module == "builtins" and name not in ("dict", "list", "tuple", "set", "bytearray",
                                                     "slice", "complex", "frozenset"):
                raise pickle.UnpicklingError("refusing builtins.%s" % name)
            return super().find_class(module, name)
        raise pickle.UnpicklingError("refusing to load %s.%s from a checkpoint" % (module, name))


def load_pdparams(path):
    with open(path, "rb") as f:
        obj = _Unpickler(f, encoding="latin1").load()
    if not isinstance(obj, dict):
        raise SystemExit("%s: expected a pickled dict of arrays, got %s" % (path, type(obj).__name__))
    out, dropped = {}, []
    for k, v in obj.items():
        if isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], np.ndarray):
            v = v[1]  # (name, array) pairs of some Paddle versions
        if isinstance(v, np.ndarray):
            out[str(k)] = v
        else:
            dropped.append(str(k))
    return out, dropped


def convert_keys(sd, keep_conv_last=False, add_prefix="", strip_prefix=""):
    notes = []
    if strip_prefix:
        sd = {(k[len(strip_prefix):] if k.startswith(strip_prefix) else k): v for k, v in sd.items()}
    if add_prefix:
        sd = {add_prefix + k: v for k, v in sd.items()}
    # keys of a whole model start with "backbone.", those of a backbone checkpoint do not
    feat_ids = {int(m.group(2)) for k in sd
                for m in [re.match(r"(backbone\.)?features\.(\d+)\.", k)] if m}
    starts = STAGE_STARTS.get(max(feat_ids) + 1 if feat_ids else 0)
    out = {}
    for k, v in sd.items():
        m = re.match(r"(backbone\.)?(x2|x4|x8|x16|x32)\.0\.(\d+)\.(.*)$", k)
        if m:
            if starts is None:
                raise SystemExit("%s: stage alias but no STDC1/STDC2 features.* keys to map it to" % k)
            target = "%sfeatures.%d.%s" % (m.group(1) or "", starts[m.group(2)] + int(m.group(3)),
                                           m.group(4))
            if target in sd and not np.array_equal(sd[target], v):
                raise SystemExit("%s differs from %s" % (k, target))
            out.setdefault(target, v)
            continue
        if re.match(r"(backbone\.)?conv_last\.", k) and not keep_conv_last:
            notes.append("dropped unused " + k)
            continue
        out[k] = v
    for k in list(out):
        m = re.match(r"(ppseg_head\.arm_list\.\d+)\.conv_xy_atten\.0\._conv\.weight$", k)
        if m and m.group(1) + "._scale" not in out:
            out[m.group(1) + "._scale"] = np.ones([1], dtype=np.float32)
            notes.append("added %s._scale = 1" % m.group(1))
    return out, notes


def save_safetensors(path, tensors, metadata=None):
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        if a.dtype not in DTYPES:
            raise SystemExit("%s: unsupported dtype %s" % (name, a.dtype))
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        data = a.tobytes()
        header[name] = {"dtype": DTYPES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="PaddleSeg .pdparams")
    ap.add_argument("dst", help="output .safetensors")
    ap.add_argument("--keep-conv-last", action="store_true", help="keep backbone.conv_last.*")
    ap.add_argument("--add-prefix", default="", help="prepend this to every key")
    ap.add_argument("--strip-prefix", default="", help="remove this leading prefix from keys")
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args(argv)
    sd, dropped = load_pdparams(a.src)
    out, notes = convert_keys(sd, a.keep_conv_last, a.add_prefix, a.strip_prefix)
    save_safetensors(a.dst, out, {"source": a.src, "format": "PaddleSeg"})
    if not a.quiet:
        for d in dropped:
            print("dropped non-array entry", d)
        for n in notes:
            print(n)
        total = sum(int(v.size) for v in out.values())
        print("wrote %s: %d tensors, %d values" % (a.dst, len(out), total))


if __name__ == "__main__":
    sys.exit(main())
