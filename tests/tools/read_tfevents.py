#!/usr/bin/env python3
"""read_tfevents.py: reads a TensorBoard event file (or a log dir) with TensorBoard's own
EventAccumulator and prints its content as JSON: scalars, images (size, colorspace and the
decoded PNG pixels' checksum), text tensors and the file_version. Exit code 2 with a message
naming `pip install tensorboard` when the package is missing."""
import hashlib
import json
import sys
import zlib

try:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.backend.event_processing import event_file_loader
except ImportError as e:  # the Lua test turns this into a failure
    print("read_tfevents.py: cannot import tensorboard (%s); run: pip install tensorboard" % e,
          file=sys.stderr)
    sys.exit(2)


def png_pixels(data):
    """Decodes an 8-bit, non-interlaced PNG without third-party packages: returns
    (width, height, channels, raw pixel bytes) after undoing the row filters."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        if zlib.crc32(kind + body) != int.from_bytes(data[pos + 8 + n:pos + 12 + n], "big"):
            raise ValueError("bad PNG chunk CRC")
        if kind == b"IHDR":
            ihdr = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h = int.from_bytes(ihdr[0:4], "big"), int.from_bytes(ihdr[4:8], "big")
    depth, ctype, interlace = ihdr[8], ihdr[9], ihdr[12]
    assert depth == 8 and interlace == 0, "only 8-bit non-interlaced PNGs"
    ch = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
    raw = zlib.decompress(idat)
    stride = w * ch
    out, prev = bytearray(), bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - ch] if i >= ch else 0
            b = prev[i]
            c = prev[i - ch] if i >= ch else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pr) & 255
        out += line
        prev = line
    return w, h, ch, bytes(out)


def main():
    if len(sys.argv) != 2:
        print("usage: read_tfevents.py EVENT_FILE", file=sys.stderr)
        sys.exit(1)
    path = sys.argv[1]
    acc = EventAccumulator(path, size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    out = {"file_version": None, "scalars": {}, "images": {}, "texts": {}, "events": 0}
    for ev in event_file_loader.EventFileLoader(path).Load():
        out["events"] += 1
        if ev.HasField("file_version"):
            out["file_version"] = ev.file_version
    for tag in tags["scalars"]:
        out["scalars"][tag] = [{"step": e.step, "value": e.value, "wall_time": e.wall_time}
                               for e in acc.Scalars(tag)]
    for tag in tags["images"]:
        rows = []
        for e in acc.Images(tag):
            w, h, ch, px = png_pixels(e.encoded_image_string)
            rows.append({"step": e.step, "width": e.width, "height": e.height,
                         "png_width": w, "png_height": h, "png_channels": ch,
                         "pixels": list(px) if len(px) <= 4096 else None,
                         "md5": hashlib.md5(px).hexdigest()})
        out["images"][tag] = rows
    for tag in tags["tensors"]:
        out["texts"][tag] = [{"step": e.step,
                              "text": [s.decode("utf-8") for s in e.tensor_proto.string_val]}
                             for e in acc.Tensors(tag)]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
