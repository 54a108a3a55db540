#!/usr/bin/env python3
"""Convert a PaddleSeg checkpoint (.pdparams, or PaddleSeg's pretrained .tar.gz) to safetensors.

    python3 recipes/tools/convert_pdparams.py model.pdparams model.safetensors
    python3 recipes/tools/convert_pdparams.py PP_STDCNet2.tar.gz stdc2.safetensors
    python3 recipes/tools/convert_pdparams.py --cache URL FILE.pdparams|FILE.tar.gz

--cache URL puts the converted weights where moonseg looks a `pretrained: URL` of a config up
($MOONSEG_CACHE/weights, else ~/.cache/moonseg/weights; the URL minus its scheme, the archive
suffix replaced by .safetensors). Nothing is ever downloaded: fetch the file yourself.

Only Python's standard library is used (no numpy, no paddle). A .pdparams file is a pickle of
{name: numpy array} (paddle.save); a restricted unpickler rebuilds each array from the reduce
calls numpy pickles (numpy 1's `numpy.core.multiarray` and numpy 2's `numpy._core.multiarray`
alike) as raw bytes + dtype + shape, and refuses every other class (unpickling arbitrary
classes would run their code).

Key handling for PP-LiteSeg (moonseg keeps PaddleSeg's names, so most keys pass through):
  * `StructuredToParameterName@@` and other non-array entries are dropped;
  * `[backbone.]x2/x4/x8/x16/x32.*` are aliases of `backbone.features.*` in PaddleSeg's STDCNet
    (the 2022 layout saved both); they are mapped back and checked to be equal;
  * `[backbone.]conv_last.*`: PaddleSeg always builds this 1x1 ConvBNRelu but PP-LiteSeg never
    uses it; dropped unless --keep-conv-last (moonseg builds it only with use_conv_last);
  * `ppseg_head.arm_list.N._scale`: newer PaddleSeg UAFM_SpAtten has this constant 1
    (stop_gradient); it is added as [1.0] when a checkpoint from an older version lacks it;
  * `--add-prefix P` prepends P to every key, `--strip-prefix P` removes a leading P.
An ImageNet STDC checkpoint (features.*, plus classifier keys moonseg ignores) converts as is.
Paddle stores bfloat16 as uint16 arrays; those are written as BF16. Arrays that paddle.save split
into pieces (protocol 2 or 3, over 2**30 - 1 bytes: KEY@@.0, KEY@@.1, ... and
UnpackBigParamInfor@@) are joined back as paddle.load joins them.
"""
import argparse
import array
import collections
import codecs
import io
import json
import os
import pickle
import re
import struct
import sys
import tarfile

# numpy dtype code (kind + item size) -> safetensors dtype
DTYPES = {"f8": "F64", "f4": "F32", "f2": "F16", "u2": "BF16", "i8": "I64", "i4": "I32", "u1": "U8", "b1": "BOOL"}
SWAP_CODES = {2: "H", 4: "I", 8: "Q"}

# First features index of each STDC stage alias, per backbone depth (len(features)).
STAGE_STARTS = {
    8: {"x2": 0, "x4": 1, "x8": 2, "x16": 4, "x32": 6},     # STDC1, layers [2, 2, 2]
    14: {"x2": 0, "x4": 1, "x8": 2, "x16": 6, "x32": 11},   # STDC2, layers [4, 5, 3]
}


class ConvertError(Exception):
    pass


class DType:
    """numpy.dtype(spec, align, copy) with its pickled state (version, byte order, ...)."""

    def __init__(self, spec, align=False, copy=True):
        if not isinstance(spec, str):
            raise pickle.UnpicklingError("unsupported dtype spec %r" % (spec,))
        self.spec, self.order = spec, "="

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) >= 2 and isinstance(state[1], str):
            self.order = state[1]
        if isinstance(state, tuple) and len(state) >= 3 and state[2] is not None:
            raise pickle.UnpicklingError("structured dtypes are not supported")

    @property
    def code(self):
        s = self.spec.lstrip("<>|=")
        return {"b": "i1", "B": "u1", "?": "b1", "f": "f4", "d": "f8", "e": "f2", "q": "i8", "l": "i8",
                "i": "i4", "H": "u2"}.get(s, s)


class Array:
    """An ndarray as numpy pickles it: _reconstruct(ndarray, (0,), b'b') then BUILD with
    (version, shape, dtype, is_fortran, raw bytes)."""

    def __init__(self, shape=(0,), dtype=None, data=b""):
        self.shape, self.dtype, self.data = tuple(shape), dtype, data

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("unexpected ndarray state")
        _, shape, dtype, fortran, raw = state
        if isinstance(raw, str):  # written by Python 2
            raw = raw.encode("latin1")
        if not isinstance(raw, (bytes, bytearray)):
            raise pickle.UnpicklingError("object arrays are not supported")
        self.shape, self.dtype, self.data = tuple(int(d) for d in shape), dtype, bytes(raw)
        if fortran and len(self.shape) > 1:
            raise pickle.UnpicklingError("Fortran-ordered arrays are not supported")

    def size(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    def little_endian_bytes(self):
        code = self.dtype.code
        nbytes = int(code[1:])
        if len(self.data) != self.size() * nbytes:
            raise ConvertError("array of shape %s (%s) holds %d bytes, expected %d"
                               % (list(self.shape), code, len(self.data), self.size() * nbytes))
        if self.dtype.order == ">" and nbytes > 1:
            a = array.array(SWAP_CODES[nbytes], self.data)
            a.byteswap()
            return a.tobytes()
        return self.data


def _reconstruct(cls, shape, typecode):
    return Array()


def _frombuffer(buf, dtype, shape, order):  # numpy's pickle protocol 5 path
    a = Array(shape, dtype, bytes(buf))
    if order == "F" and len(a.shape) > 1:
        raise pickle.UnpicklingError("Fortran-ordered arrays are not supported")
    return a


def _scalar(dtype, raw):
    if isinstance(raw, str):
        raw = raw.encode("latin1")
    fmt = {"f8": "d", "f4": "f", "i8": "q", "i4": "i", "u1": "B", "b1": "?"}.get(dtype.code)
    if not fmt:
        raise pickle.UnpicklingError("unsupported numpy scalar %s" % dtype.code)
    return struct.unpack(("<" if dtype.order != ">" else ">") + fmt, raw)[0]


def _eval(expr, env=None):
    # Paddle pickles a LoDTensor as eval('data', {'data': array})
    if expr == "data" and isinstance(env, dict) and "data" in env:
        return env["data"]
    raise pickle.UnpicklingError("refusing eval(%r) in a checkpoint" % (expr,))


class Marker:
    pass


ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): codecs.encode,
    ("numpy", "ndarray"): Marker,
    ("numpy", "dtype"): DType,
}
for _mod in ("numpy.core", "numpy._core"):
    ALLOWED[(_mod + ".multiarray", "_reconstruct")] = _reconstruct
    ALLOWED[(_mod + ".multiarray", "scalar")] = _scalar
    ALLOWED[(_mod + ".numeric", "_frombuffer")] = _frombuffer
for _b in ("builtins", "__builtin__"):
    for _n, _f in (("dict", dict), ("list", list), ("tuple", tuple), ("set", set), ("frozenset", frozenset),
                   ("bytearray", bytearray), ("eval", _eval)):
        ALLOWED[(_b, _n)] = _f


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        f = ALLOWED.get((module, name))
        if f is None:
            raise pickle.UnpicklingError("refusing to load %s.%s from a checkpoint" % (module, name))
        return f

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("checkpoint uses persistent ids (not a paddle.save file)")


def _read_source(path):
    """The .pdparams bytes of path: the file, or the .pdparams inside a .tar.gz archive."""
    if path.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(path) as tf:
            members = [m for m in tf.getmembers() if m.isfile() and m.name.endswith(".pdparams")]
            if not members:
                raise ConvertError("%s: no .pdparams file in the archive" % path)
            if len(members) > 1:
                named = [m for m in members if os.path.basename(m.name) == "model.pdparams"]
                if len(named) != 1:
                    raise ConvertError("%s: several .pdparams files (%s); extract the one you want"
                                       % (path, ", ".join(m.name for m in members)))
                members = named
            return tf.extractfile(members[0]).read(), "%s:%s" % (path, members[0].name)
    with open(path, "rb") as f:
        return f.read(), path


BIG_INFO = "UnpackBigParamInfor@@"


def join_big_params(obj, label):
    """Undo paddle.save's split of big arrays (protocol 2 and 3 only: an array of more than
    (2**30 - 1) // itemsize elements). Paddle flattens such an array, stores consecutive
    pieces under KEY@@.0, KEY@@.1, ... and records {KEY: {"OriginShape": shape, "slices":
    [piece names]}} under UnpackBigParamInfor@@; paddle.load concatenates and reshapes."""
    info = obj.pop(BIG_INFO)
    if not isinstance(info, dict):
        raise ConvertError("%s: %s is not a mapping" % (label, BIG_INFO))
    for key, meta in info.items():
        where = "%s: %s[%r]" % (label, BIG_INFO, key)
        if not isinstance(meta, dict) or "OriginShape" not in meta or "slices" not in meta:
            raise ConvertError("%s: expected {'OriginShape': shape, 'slices': [names]}" % where)
        shape, names = meta["OriginShape"], meta["slices"]
        if not isinstance(shape, (tuple, list)) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ConvertError("%s: OriginShape %r is not a shape" % (where, shape))
        if not isinstance(names, (tuple, list)) or not names:
            raise ConvertError("%s: slices must be a non-empty list of keys" % where)
        parts = []
        for n in names:
            if n not in obj:
                raise ConvertError("%s: its piece %r is not in the checkpoint" % (where, n))
            a = obj.pop(n)
            if isinstance(a, tuple) and len(a) == 2 and isinstance(a[1], Array):
                a = a[1]
            if not isinstance(a, Array):
                raise ConvertError("%s: its piece %r is not an array" % (where, n))
            if a.dtype.code not in DTYPES:
                raise ConvertError("%s: piece %r has dtype %s, which moonseg does not load" % (where, n, a.dtype.code))
            if parts and (a.dtype.code, a.dtype.order) != (parts[0].dtype.code, parts[0].dtype.order):
                raise ConvertError("%s: piece %r is %s%s but the first piece is %s%s"
                                   % (where, n, a.dtype.order, a.dtype.code, parts[0].dtype.order, parts[0].dtype.code))
            parts.append(a)
        whole = Array(tuple(shape), parts[0].dtype, b"".join(a.data for a in parts))
        want = whole.size() * int(whole.dtype.code[1:])
        if len(whole.data) != want:
            raise ConvertError("%s: its %d pieces hold %d bytes; shape %s (%s) needs %d"
                               % (where, len(parts), len(whole.data), list(shape), whole.dtype.code, want))
        if key in obj:
            raise ConvertError("%s: the checkpoint also holds %r whole" % (where, key))
        obj[key] = whole


def load_pdparams(path):
    data, label = _read_source(path)
    try:
        obj = _Unpickler(io.BytesIO(data), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise ConvertError("%s: not a readable paddle.save checkpoint: %s" % (label, e))
    if not isinstance(obj, dict):
        raise ConvertError("%s: expected a pickled dict of arrays, got %s" % (label, type(obj).__name__))
    if BIG_INFO in obj:
        join_big_params(obj, label)
    out, dropped = {}, []
    for k, v in obj.items():
        if isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], Array):
            v = v[1]  # (name, array) pairs of some Paddle versions
        if isinstance(v, Array):
            if v.dtype.code not in DTYPES:
                raise ConvertError("%s: %s has dtype %s, which moonseg does not load" % (label, k, v.dtype.code))
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
    feat_ids = {int(m.group(2)) for k in sd for m in [re.match(r"(backbone\.)?features\.(\d+)\.", k)] if m}
    starts = STAGE_STARTS.get(max(feat_ids) + 1 if feat_ids else 0)
    out = {}
    for k, v in sd.items():
        m = re.match(r"(backbone\.)?(x2|x4|x8|x16|x32)\.0\.(\d+)\.(.*)$", k)
        if m:
            if starts is None:
                raise ConvertError("%s: stage alias but no STDC1/STDC2 features.* keys to map it to" % k)
            target = "%sfeatures.%d.%s" % (m.group(1) or "", starts[m.group(2)] + int(m.group(3)), m.group(4))
            if target in sd and (sd[target].shape != v.shape or sd[target].data != v.data):
                raise ConvertError("%s differs from %s" % (k, target))
            out.setdefault(target, v)
            continue
        if re.match(r"(backbone\.)?conv_last\.", k) and not keep_conv_last:
            notes.append("dropped unused " + k)
            continue
        out[k] = v
    for k in list(out):
        m = re.match(r"(ppseg_head\.arm_list\.\d+)\.conv_xy_atten\.0\._conv\.weight$", k)
        if m and m.group(1) + "._scale" not in out:
            out[m.group(1) + "._scale"] = Array((1,), DType("<f4"), struct.pack("<f", 1.0))
            notes.append("added %s._scale = 1" % m.group(1))
    return out, notes


def save_safetensors(path, tensors, metadata=None):
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        a = tensors[name]
        data = a.little_endian_bytes()
        header[name] = {"dtype": DTYPES[a.dtype.code], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def cache_dir():
    env = os.environ.get("MOONSEG_CACHE")
    if env:
        return os.path.join(env, "weights")
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return os.path.join(xdg, "moonseg", "weights")
    return os.path.join(os.path.expanduser("~"), ".cache", "moonseg", "weights")


def cache_name(url):
    """The same rule as lua/moonseg/config/weights.lua's cache_name."""
    s = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*://", "", url)
    s = re.sub(r"[?#].*$", "", s)
    for suf in (".pdparams", ".tar.gz", ".tgz", ".zip", ".safetensors"):
        if s.endswith(suf):
            s = s[:-len(suf)]
            break
    s = re.sub(r"[^A-Za-z0-9._/-]", "_", s)
    s = re.sub(r"\.\.+", "_", s)
    return s + ".safetensors"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="PaddleSeg .pdparams or pretrained .tar.gz")
    ap.add_argument("dst", nargs="?", help="output .safetensors (not with --cache)")
    ap.add_argument("--cache", metavar="URL", help="write into moonseg's weights cache under this URL's name")
    ap.add_argument("--keep-conv-last", action="store_true", help="keep backbone.conv_last.*")
    ap.add_argument("--add-prefix", default="", help="prepend this to every key")
    ap.add_argument("--strip-prefix", default="", help="remove this leading prefix from keys")
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args(argv)
    if bool(a.cache) == bool(a.dst):
        ap.error("give either DST or --cache URL")
    dst = os.path.join(cache_dir(), cache_name(a.cache)) if a.cache else a.dst
    try:
        sd, dropped = load_pdparams(a.src)
        out, notes = convert_keys(sd, a.keep_conv_last, a.add_prefix, a.strip_prefix)
        save_safetensors(dst, out, {"source": a.cache or a.src, "format": "PaddleSeg"})
    except (ConvertError, OSError, tarfile.TarError) as e:
        print("convert_pdparams: %s" % e, file=sys.stderr)
        return 1
    if not a.quiet:
        for d in dropped:
            print("dropped non-array entry", d)
        for n in notes:
            print(n)
        total = sum(v.size() for v in out.values())
        print("wrote %s: %d tensors, %d values" % (dst, len(out), total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
