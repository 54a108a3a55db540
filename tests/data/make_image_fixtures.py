# make_image_fixtures.py: writes the PIL-made image fixtures (pil_*) and their expected
# pixels (image_fixtures_expected.lua) for tests/lua/test_image.lua.
# Run once with Debian's python3-pil: /usr/bin/python3 tests/data/make_image_fixtures.py
import os

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
expected = {}


def save(img, name, **kw):
    img.save(os.path.join(HERE, name), **kw)


def rows(img):
    w, h = img.size
    px = img.load()
    return [[px[x, y] for x in range(w)] for y in range(h)]


# Palette PNG (8-bit): indices 0..9 and 255 with colours unlike the indices.
idx = [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [255, 0, 9, 1, 255]]
p = Image.new("P", (5, 3))
p.putdata([v for r in idx for v in r])
pal = []
for i in range(256):
    pal += [(37 * i + 11) % 256, (255 - 3 * i) % 256, (91 * i) % 256]
p.putpalette(pal)
save(p, "pil_palette.png")
expected["palette_indices"] = idx
expected["palette_rgb"] = [[tuple(pal[3 * v:3 * v + 3]) for v in r] for r in idx]

# Palette PNG with 4-bit indices (bits=4).
idx4 = [[0, 1, 2, 3], [15, 14, 13, 12]]
p4 = Image.new("P", (4, 2))
p4.putdata([v for r in idx4 for v in r])
p4.putpalette(pal[:48])
save(p4, "pil_palette4.png", bits=4)
expected["palette4_indices"] = idx4

# Palette PNG with a tRNS chunk (index 0 fully transparent, index 1 half).
pt = Image.new("P", (3, 1))
pt.putdata([0, 1, 2])
pt.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90])
save(pt, "pil_palette_trns.png", transparency=bytes([0, 128]))
expected["palette_trns_rgba"] = [[(10, 20, 30, 0), (40, 50, 60, 128), (70, 80, 90, 255)]]

# 16-bit gray PNG.
v16 = [[0, 1, 255, 256], [1000, 32768, 65534, 65535], [7, 4660, 43981, 12345]]
g16 = Image.new("I;16", (4, 3))
g16.putdata([v for r in v16 for v in r])
save(g16, "pil_gray16.png")
expected["gray16"] = v16

# RGBA PNG.
rgba = [[(255, 0, 0, 255), (0, 255, 0, 128), (0, 0, 255, 0)],
        [(10, 20, 30, 40), (200, 100, 50, 25), (1, 2, 3, 4)]]
im = Image.new("RGBA", (3, 2))
im.putdata([v for r in rgba for v in r])
save(im, "pil_rgba.png")
expected["rgba"] = rgba

# 1-bit PNG (PIL mode "1"): values 0/1 as a label, 0/255 as an image.
b = Image.new("1", (9, 2))
bits = [[1, 0, 1, 1, 0, 0, 1, 0, 1], [0, 1, 0, 0, 1, 1, 0, 1, 0]]
b.putdata([v * 255 for r in bits for v in r])
save(b, "pil_bits1.png")
expected["bits1"] = bits

# Gray JPEG (quality 90) and RGB JPEG (quality 90, 4:2:0): expected = PIL's decoding.
gray = Image.new("L", (8, 8))
gray.putdata([(x * 29 + y * 13) % 256 for y in range(8) for x in range(8)])
save(gray, "pil_gray.jpg", quality=90)
expected["gray_jpeg"] = rows(Image.open(os.path.join(HERE, "pil_gray.jpg")))

rgb = Image.new("RGB", (8, 6))
rgb.putdata([(x * 30, y * 40, 255 - x * 20 - y * 10) for y in range(6) for x in range(8)])
save(rgb, "pil_rgb.jpg", quality=90, subsampling=2)
expected["rgb_jpeg"] = rows(Image.open(os.path.join(HERE, "pil_rgb.jpg")).convert("RGB"))


def lua(v):
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join(lua(x) for x in v) + "}"
    return str(v)


with open(os.path.join(HERE, "image_fixtures_expected.lua"), "w") as f:
    f.write("-- image_fixtures_expected.lua: pixels of the pil_* fixtures, written by "
            "make_image_fixtures.py (PIL %s).\n" % Image.__version__)
    f.write("return {\n")
    for k in sorted(expected):
        f.write("  %s = %s,\n" % (k, lua(expected[k])))
    f.write("}\n")
