#!/usr/bin/env python3
"""recipes/tools/convert_pdparams.py on checkpoints written here byte for byte as paddle.save lays
them out: a protocol-2 pickle with numpy 1's module paths (numpy.core.multiarray, bytes through
_codecs.encode; the 2022 PP-LiteSeg keys with x2..x32 aliases and conv_last) and a protocol-4
pickle with numpy 2's (numpy._core.multiarray, STACK_GLOBAL, BINBYTES, MEMOIZE, a FRAME; today's
keys, a (name, array) pair); arrays split into pieces as paddle.save does under protocols 2 and 3
(UnpackBigParamInfor@@), with numpy 1 and numpy 2. Standard library only: the opcodes are written by hand. Checks the
safetensors bytes, the key mapping, the .tar.gz path, --cache, refusals, and (when MOONSEG_LIB is
set) that moonseg loads the result and names the same cache file."""
import io
import json
import os
import struct
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
TOOL = os.path.join(SRC, "recipes", "tools", "convert_pdparams.py")
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL", msg)


# ---- a pickle writer over raw opcodes -------------------------------------------------------
class P2:
    """Protocol 2 as Python 3 + numpy 1.x write it (GLOBAL, BINUNICODE, BINPUT memo)."""

    def __init__(self):
        self.b, self.memo = bytearray(b"\x80\x02"), 0

    def put(self):
        self.b += b"q" + bytes([self.memo]) if self.memo < 256 else b"r" + struct.pack("<I", self.memo)
        self.memo += 1

    def uni(self, s):
        e = s.encode("utf-8")
        self.b += b"X" + struct.pack("<I", len(e)) + e
        self.put()

    def glob(self, mod, name):
        self.b += b"c" + mod.encode() + b"\n" + name.encode() + b"\n"
        self.put()

    def raw(self, data):  # bytes under protocol 2: _codecs.encode(latin1 text, 'latin1')
        self.glob("_codecs", "encode")
        self.uni(data.decode("latin1"))
        self.uni("latin1")
        self.b += b"\x86"
        self.put()
        self.b += b"R"
        self.put()

    def int(self, v):
        if 0 <= v < 256:
            self.b += b"K" + bytes([v])
        elif 0 <= v < 65536:
            self.b += b"M" + struct.pack("<H", v)
        else:
            self.b += b"J" + struct.pack("<i", v)

    def get(self, idx):  # a memoized object again (BINGET / LONG_BINGET)
        self.b += b"h" + bytes([idx]) if idx < 256 else b"j" + struct.pack("<I", idx)

    def end(self):
        return bytes(self.b + b".")


class P3(P2):
    """Protocol 3 (paddle.save(..., protocol=3)): protocol 2's opcodes, bytes as BINBYTES."""

    def __init__(self):
        self.b, self.memo = bytearray(b"\x80\x03"), 0

    def raw(self, data):
        self.b += (b"C" + bytes([len(data)]) if len(data) < 256 else b"B" + struct.pack("<I", len(data))) + data
        self.put()


class P4(P2):
    """Protocol 4 as Paddle 3.x + numpy 2.x write it (STACK_GLOBAL, SHORT_BINUNICODE, MEMOIZE)."""

    def __init__(self):
        self.b, self.memo = bytearray(), 0

    def put(self):
        self.b += b"\x94"
        self.memo += 1

    def uni(self, s):
        e = s.encode("utf-8")
        self.b += (b"\x8c" + bytes([len(e)]) if len(e) < 256 else b"X" + struct.pack("<I", len(e))) + e
        self.put()

    def glob(self, mod, name):
        self.uni(mod)
        self.uni(name)
        self.b += b"\x93"
        self.put()

    def raw(self, data):
        self.b += (b"C" + bytes([len(data)]) if len(data) < 256 else b"B" + struct.pack("<I", len(data))) + data
        self.put()

    def end(self):
        body = bytes(self.b + b".")
        return b"\x80\x04" + b"\x95" + struct.pack("<Q", len(body)) + body


def ndarray(p, core, code, order, shape, data):
    """numpy's ndarray.__reduce__: _reconstruct(ndarray, (0,), b'b') + BUILD (1, shape, dtype, False, raw)."""
    p.glob(core + ".multiarray", "_reconstruct")
    p.glob("numpy", "ndarray")
    p.int(0)
    p.b += b"\x85"
    p.put()
    p.raw(b"b")
    p.b += b"\x87"
    p.put()
    p.b += b"R"
    p.put()
    p.b += b"("
    p.int(1)
    for d in shape:
        p.int(d)
    p.b += {0: b")", 1: b"\x85", 2: b"\x86", 3: b"\x87"}.get(len(shape), b"")
    if len(shape) > 3:
        raise ValueError("test writer: up to 3 dims")
    p.put()
    p.glob("numpy", "dtype")  # dtype(code, False, True) + BUILD (3, order, None, None, None, -1, -1, 0)
    p.uni(code)
    p.b += b"\x89\x88\x87"
    p.put()
    p.b += b"R"
    p.put()
    p.b += b"("
    p.int(3)
    p.uni(order)
    p.b += b"NNN"
    p.int(-1)
    p.int(-1)
    p.int(0)
    p.b += b"t"
    p.put()
    p.b += b"b"
    p.b += b"\x89"
    p.raw(data)
    p.b += b"t"
    p.put()
    p.b += b"b"


def pdparams(p, core, entries, pairs=()):
    """A paddle.save state dict: {key: array}, plus StructuredToParameterName@@ and (name, array) pairs."""
    p.b += b"}"
    p.put()
    p.b += b"("
    for key, (code, order, shape, data) in entries:
        p.uni(key)
        ndarray(p, core, code, order, shape, data)
    for key, name, (code, order, shape, data) in pairs:
        p.uni(key)
        p.uni(name)
        ndarray(p, core, code, order, shape, data)
        p.b += b"\x86"
        p.put()
    p.uni("StructuredToParameterName@@")
    p.b += b"}"
    p.put()
    p.b += b"("
    for key, _ in entries:
        p.uni(key)
        p.uni("param_" + key.replace(".", "_"))
    p.b += b"u"
    p.b += b"u"
    return p.end()


def pdparams_split(p, core, entries, bigs, chunk, drop_piece=None, shape_of=None):
    """paddle.save(state_dict, path, protocol=2 or 3) of a dict holding big arrays, laid out as
    _build_saved_state_dict + _unpack_saved_dict leave it: the small arrays, then
    StructuredToParameterName@@ (naming the big keys too), then each big array flattened into
    pieces KEY@@.0, KEY@@.1, ... of `chunk` elements (Paddle: (2**30 - 1) // itemsize), then
    UnpackBigParamInfor@@ = {KEY: {'OriginShape': shape, 'slices': [piece names]}}. Strings
    pickled twice are memo references (BINGET), as the pickler writes the same str object.
    drop_piece / shape_of: damage one piece or one OriginShape (for the refusals)."""
    memo = {}

    def name(s):
        if s in memo:
            p.get(memo[s])
        else:
            p.uni(s)
            memo[s] = p.memo - 1

    p.b += b"}"
    p.put()
    p.b += b"("
    for key, (code, order, shape, data) in entries:
        name(key)
        ndarray(p, core, code, order, shape, data)
    name("StructuredToParameterName@@")
    p.b += b"}"
    p.put()
    p.b += b"("
    for key in [k for k, _ in entries] + [k for k, _ in bigs]:
        name(key)
        p.uni("param_" + key.replace(".", "_"))
    p.b += b"u"
    pieces = {}
    for key, (code, order, shape, data) in bigs:
        size = int(code[1:])
        n = len(data) // size
        pieces[key] = []
        for i in range((n + chunk - 1) // chunk):
            piece = data[i * chunk * size:(i + 1) * chunk * size]
            pieces[key].append("%s@@.%d" % (key, i))
            if pieces[key][-1] == drop_piece:
                continue
            name(pieces[key][-1])
            ndarray(p, core, code, order, [len(piece) // size], piece)
    name("UnpackBigParamInfor@@")
    p.b += b"}"
    p.put()
    if len(bigs) > 1:
        p.b += b"("
    for key, (code, order, shape, data) in bigs:
        name(key)
        p.b += b"}"
        p.put()
        p.b += b"("
        name("OriginShape")
        shape = (shape_of or {}).get(key, shape)
        if len(shape) <= 3:
            for d in shape:
                p.int(d)
            p.b += {0: b")", 1: b"\x85", 2: b"\x86", 3: b"\x87"}[len(shape)]
        else:
            p.b += b"("
            for d in shape:
                p.int(d)
            p.b += b"t"
        p.put()
        name("slices")
        p.b += b"]"
        p.put()
        if len(pieces[key]) > 1:
            p.b += b"("
            for s in pieces[key]:
                name(s)
            p.b += b"e"
        else:
            name(pieces[key][0])
            p.b += b"a"
        p.b += b"u"
    p.b += b"u" if len(bigs) > 1 else b"s"
    p.b += b"u"
    return p.end()


def f32(vals, order="<"):
    return ("f4", order, [len(vals)], struct.pack(order + "%df" % len(vals), *vals))


# ---- the two flavours ---------------------------------------------------------------------------
def stdc1_2022():
    """PP-LiteSeg-T as 2022's PaddleSeg saved it: features.* plus the x2..x32 aliases, conv_last, no _scale."""
    e = []
    for i in range(8):
        e.append(("backbone.features.%d.bn._mean" % i, f32([i, i + 0.5])))
    for alias, idx in (("x2.0.0", 0), ("x4.0.0", 1), ("x8.0.0", 2), ("x8.0.1", 3), ("x16.0.0", 4),
                       ("x16.0.1", 5), ("x32.0.0", 6), ("x32.0.1", 7)):
        e.append(("backbone.%s.bn._mean" % alias, f32([idx, idx + 0.5])))
    e.append(("backbone.conv_last.conv.weight", f32([9.0])))
    w = struct.pack(">4f", 1.5, -2.25, 3.0, 0.125)  # a big-endian array: written little-endian
    e.append(("ppseg_head.arm_list.0.conv_xy_atten.0._conv.weight", ("f4", ">", [1, 4, 1], w)))
    e.append(("seg_heads.0.conv_out.weight", ("f8", "<", [2, 2], struct.pack("<4d", 1, 2, 3, 4))))
    return e


def today():
    e = [("backbone.features.0.conv.weight", ("f4", "<", [2, 3, 1], struct.pack("<6f", *range(6)))),
         ("ppseg_head.arm_list.0._scale", f32([1.0])),
         ("ppseg_head.arm_list.0.conv_xy_atten.0._conv.weight", f32([0.5, 0.25])),
         ("backbone.features.0.bn._variance", ("i8", "<", [3], struct.pack("<3q", 7, -8, 2 ** 40))),
         ("bf16.weight", ("u2", "<", [2], struct.pack("<2H", 0x3F80, 0xC000)))]
    pairs = [("seg_heads.0.conv_out.weight", "conv2d_7.w_0", f32([4.0, 5.0, 6.0]))]
    big = struct.pack("<300f", *[float(i) / 7 for i in range(300)])  # over 255 bytes: BINBYTES
    e.append(("big.weight", ("f4", "<", [300], big)))
    return e, pairs


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k != "__metadata__":
            a, b = v["data_offsets"]
            out[k] = (v["dtype"], v["shape"], data[a:b])
    return out, header.get("__metadata__", {})


def run(args, env=None):
    p = subprocess.run([sys.executable, TOOL] + args, capture_output=True, text=True, env=env)
    return p.returncode, p.stdout + p.stderr


def main():
    tmp = tempfile.mkdtemp(prefix="convert_pdparams_")
    # -- numpy 1, protocol 2, the 2022 layout
    a = os.path.join(tmp, "np1.pdparams")
    with open(a, "wb") as f:
        f.write(pdparams(P2(), "numpy.core", stdc1_2022()))
    rc, out = run([a, os.path.join(tmp, "np1.safetensors")])
    check(rc == 0, "numpy-1 pickle converts: " + out)
    t, meta = read_safetensors(os.path.join(tmp, "np1.safetensors"))
    check(meta.get("format") == "PaddleSeg", "metadata")
    check(sorted(k for k in t if "features" in k) == sorted("backbone.features.%d.bn._mean" % i for i in range(8)),
          "aliases folded into features.*: %s" % sorted(t))
    check(not any(k.startswith("backbone.x") for k in t), "no alias keys left")
    check("backbone.conv_last.conv.weight" not in t, "conv_last dropped")
    check(t["backbone.features.5.bn._mean"] == ("F32", [2], struct.pack("<2f", 5, 5.5)), "features.5 values")
    check(t["ppseg_head.arm_list.0._scale"] == ("F32", [1], struct.pack("<f", 1.0)), "_scale added for 2022 files")
    check(t["ppseg_head.arm_list.0.conv_xy_atten.0._conv.weight"] ==
          ("F32", [1, 4, 1], struct.pack("<4f", 1.5, -2.25, 3.0, 0.125)), "big-endian data written little-endian")
    check(t["seg_heads.0.conv_out.weight"] == ("F64", [2, 2], struct.pack("<4d", 1, 2, 3, 4)), "f64")
    check("dropped non-array entry StructuredToParameterName@@" in out, "non-array entries reported: " + out)
    # an alias that disagrees with its features.* entry is an error
    bad = stdc1_2022()
    bad = [(k, f32([99.0, 1]) if k == "backbone.x16.0.1.bn._mean" else v) for k, v in bad]
    with open(os.path.join(tmp, "bad_alias.pdparams"), "wb") as f:
        f.write(pdparams(P2(), "numpy.core", bad))
    rc, out = run([os.path.join(tmp, "bad_alias.pdparams"), os.path.join(tmp, "x.safetensors")])
    check(rc == 1 and "backbone.x16.0.1.bn._mean differs from backbone.features.5.bn._mean" in out, out)

    # -- numpy 2, protocol 4, today's layout, in PaddleSeg's .tar.gz, into the cache
    entries, pairs = today()
    blob = pdparams(P4(), "numpy._core", entries, pairs)
    check(blob[:2] == b"\x80\x04" and b"numpy._core.multiarray" in blob, "protocol 4, numpy 2 paths")
    b = os.path.join(tmp, "np2.pdparams")
    with open(b, "wb") as f:
        f.write(blob)
    rc, out = run([b, os.path.join(tmp, "np2.safetensors")])
    check(rc == 0, "numpy-2 pickle converts: " + out)
    t, _ = read_safetensors(os.path.join(tmp, "np2.safetensors"))
    check(t["backbone.features.0.conv.weight"] == ("F32", [2, 3, 1], struct.pack("<6f", *range(6))), "f32 3-d")
    check(t["backbone.features.0.bn._variance"] == ("I64", [3], struct.pack("<3q", 7, -8, 2 ** 40)), "i64")
    check(t["bf16.weight"] == ("BF16", [2], struct.pack("<2H", 0x3F80, 0xC000)), "uint16 as BF16")
    check(t["seg_heads.0.conv_out.weight"] == ("F32", [3], struct.pack("<3f", 4, 5, 6)), "(name, array) pairs")
    check(t["big.weight"][2] == struct.pack("<300f", *[float(i) / 7 for i in range(300)]), "BINBYTES data")
    check(t["ppseg_head.arm_list.0._scale"] == ("F32", [1], struct.pack("<f", 1.0)), "existing _scale kept")

    archive = os.path.join(tmp, "PP_STDCNet1.tar.gz")
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("PP_STDCNet1/model.pdparams")
        info.size = len(blob)
        tf.addfile(info, io.BytesIO(blob))
    url = "https://bj.bcebos.com/paddleseg/dygraph/PP_STDCNet1.tar.gz"
    env = dict(os.environ, MOONSEG_CACHE=os.path.join(tmp, "cache"))
    rc, out = run(["--cache", url, archive], env)
    cached = os.path.join(tmp, "cache", "weights", "bj.bcebos.com", "paddleseg", "dygraph", "PP_STDCNet1.safetensors")
    check(rc == 0 and os.path.exists(cached), "--cache from a .tar.gz: " + out)
    if os.path.exists(cached):
        t2, meta = read_safetensors(cached)
        check(t2 == t, "the archive's weights equal the file's")
        check(meta.get("source") == url, "source metadata")

    # -- arrays paddle.save split into pieces (protocol 2 with numpy 1, protocol 3 with numpy 2)
    head = struct.pack("<12f", *[i * 0.5 - 2 for i in range(12)])
    emb = struct.pack(">7d", *[1.0 / (i + 1) for i in range(7)])  # big-endian: written little-endian
    small = [("backbone.features.0.bn._mean", f32([1.0, 2.0]))]
    bigs = [("seg_heads.0.conv_out.weight", ("f4", "<", [3, 2, 2, 1], head)), ("emb.weight", ("f8", ">", [7], emb))]
    split2 = pdparams_split(P2(), "numpy.core", small, bigs, chunk=5)
    check(split2.count(b"@@.") == 5 and b"UnpackBigParamInfor@@" in split2 and split2[:2] == b"\x80\x02",
          "the test writes 3 + 2 pieces")
    c = os.path.join(tmp, "split2.pdparams")
    with open(c, "wb") as f:
        f.write(split2)
    rc, out = run([c, os.path.join(tmp, "split2.safetensors")])
    check(rc == 0, "split protocol-2 pickle converts: " + out)
    t, _ = read_safetensors(os.path.join(tmp, "split2.safetensors"))
    check(sorted(t) == ["backbone.features.0.bn._mean", "emb.weight", "seg_heads.0.conv_out.weight"],
          "pieces joined, no piece or info keys left: %s" % sorted(t))
    check(t.get("seg_heads.0.conv_out.weight") == ("F32", [3, 2, 2, 1], head), "3 pieces joined and reshaped")
    check(t.get("emb.weight") == ("F64", [7], struct.pack("<7d", *[1.0 / (i + 1) for i in range(7)])),
          "big-endian pieces joined, written little-endian")
    check(t.get("backbone.features.0.bn._mean") == ("F32", [2], struct.pack("<2f", 1, 2)), "small arrays as before")
    check("UnpackBigParamInfor" not in out and "@@." not in out, "the split is not reported as dropped: " + out)
    ints = struct.pack("<6q", 5, -6, 7, 2 ** 33, 0, -1)
    split3 = pdparams_split(P3(), "numpy._core", [], [("idx", ("i8", "<", [2, 3], ints))], chunk=4)
    check(split3[:2] == b"\x80\x03" and b"numpy._core.multiarray" in split3, "protocol 3, numpy 2 paths")
    with open(os.path.join(tmp, "split3.pdparams"), "wb") as f:
        f.write(split3)
    rc, out = run([os.path.join(tmp, "split3.pdparams"), os.path.join(tmp, "split3.safetensors")])
    check(rc == 0, "split protocol-3 pickle converts: " + out)
    if rc == 0:
        t, _ = read_safetensors(os.path.join(tmp, "split3.safetensors"))
        check(t == {"idx": ("I64", [2, 3], ints)}, "2 pieces of i64: %r" % (t,))
    for bad, msg in ((pdparams_split(P2(), "numpy.core", small, bigs, 5, drop_piece="seg_heads.0.conv_out.weight@@.1"),
                      "UnpackBigParamInfor@@['seg_heads.0.conv_out.weight']: its piece 'seg_heads.0.conv_out.weight@@.1' "
                      "is not in the checkpoint"),
                     (pdparams_split(P2(), "numpy.core", small, bigs, 5, shape_of={"emb.weight": (2, 4)}),
                      "UnpackBigParamInfor@@['emb.weight']: its 2 pieces hold 56 bytes; shape [2, 4] (f8) needs 64")):
        with open(os.path.join(tmp, "badsplit.pdparams"), "wb") as f:
            f.write(bad)
        rc, out = run([os.path.join(tmp, "badsplit.pdparams"), os.path.join(tmp, "bs.safetensors")])
        check(rc == 1 and "badsplit.pdparams" in out and msg in out and "Traceback" not in out, out)
        check(not os.path.exists(os.path.join(tmp, "bs.safetensors")), "nothing written for a broken split")

    # -- refusals
    evil = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R."
    with open(os.path.join(tmp, "evil.pdparams"), "wb") as f:
        f.write(evil)
    rc, out = run([os.path.join(tmp, "evil.pdparams"), os.path.join(tmp, "e.safetensors")])
    check(rc == 1 and "refusing to load os.system" in out and not os.path.exists(os.path.join(tmp, "e.safetensors")), out)
    with open(os.path.join(tmp, "trunc.pdparams"), "wb") as f:
        f.write(blob[: len(blob) // 2])
    rc, out = run([os.path.join(tmp, "trunc.pdparams"), os.path.join(tmp, "t.safetensors")])
    check(rc == 1 and "trunc.pdparams" in out and "Traceback" not in out, out)
    rc, out = run([os.path.join(tmp, "absent.pdparams"), os.path.join(tmp, "t.safetensors")])
    check(rc == 1 and "absent.pdparams" in out and "Traceback" not in out, out)

    # -- moonseg reads the files and looks the URL up under the same name
    if os.environ.get("MOONSEG_LIB"):
        lua = ("local ms = require 'moonseg' local t = ms.load('%s') "
               "io.write(string.format('%%g %%g %%d ', t['backbone.features.5.bn._mean'][2]:item(), "
               "t['ppseg_head.arm_list.0.conv_xy_atten.0._conv.weight'][{1, 2, 1}]:item(), "
               "ms.load('%s')['backbone.features.0.bn._variance'][3]:item())) "
               "local w = require 'moonseg.config.weights' io.write(w.cache_dir() .. '/' .. w.cache_name('%s'))"
               % (os.path.join(tmp, "np1.safetensors"), os.path.join(tmp, "np2.safetensors"), url))
        p = subprocess.run(["luajit", "-e", lua], capture_output=True, text=True, env=env)
        check(p.returncode == 0, "luajit: " + p.stderr)
        check(p.stdout == "5.5 -2.25 %d %s" % (2 ** 40, cached), "moonseg reads the values and the cache path: "
              + p.stdout + p.stderr)
    else:
        check(False, "MOONSEG_LIB is not set: run this through ctest")

    subprocess.run(["rm", "-rf", tmp])
    print("%d failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
