"""The Pillow input-pipeline peer: the chain of cv2_loader_peer.py (PaddleSeg's Cityscapes
training transforms) in Python + Pillow + numpy, one process, one thread.

  decode image PNG (RGB) + label PNG
  ResizeStepScaling(0.125, 1.5, 0.125)   image bilinear, label nearest
  RandomPaddingCrop(1024x512)            pad image 127.5 (128), label 255
  RandomHorizontalFlip(0.5)
  RandomDistort(brightness/contrast/saturation 0.4, p 0.5 each; PIL ImageEnhance, as PaddleSeg)
  Normalize(mean 0.5, std 0.5) -> float32 CHW

  /usr/bin/python3 pil_loader_peer.py DIR [N]   # DIR: <k>.png images with <k>_label.png labels
Prints one JSON line: {"images_per_s": ..., "ms_per_image": ...}.
"""
import glob, json, random, sys, time
import numpy as np
from PIL import Image, ImageEnhance


def chain(img_path, lab_path):
    im = Image.open(img_path).convert("RGB")
    lb = Image.open(lab_path)
    lb.load()
    s = random.choice(np.linspace(0.125, 1.5, 12))
    w, h = int(im.width * s + 0.5), int(im.height * s + 0.5)
    im = im.resize((w, h), Image.BILINEAR)
    lb = lb.resize((w, h), Image.NEAREST)
    cw, ch = 1024, 512
    if w < cw or h < ch:
        pim = Image.new("RGB", (max(w, cw), max(h, ch)), (128, 128, 128))
        pim.paste(im, (0, 0))
        plb = Image.new(lb.mode, (max(w, cw), max(h, ch)), 255)
        plb.paste(lb, (0, 0))
        im, lb = pim, plb
    x = random.randint(0, im.width - cw)
    y = random.randint(0, im.height - ch)
    im, lb = im.crop((x, y, x + cw, y + ch)), lb.crop((x, y, x + cw, y + ch))
    if random.random() < 0.5:
        im, lb = im.transpose(Image.FLIP_LEFT_RIGHT), lb.transpose(Image.FLIP_LEFT_RIGHT)
    for enh in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        if random.random() < 0.5:
            im = enh(im).enhance(random.uniform(0.6, 1.4))
    a = np.asarray(im, dtype=np.float32)
    a = (a / 255.0 - 0.5) / 0.5
    return np.ascontiguousarray(a.transpose(2, 0, 1)), np.asarray(lb, dtype=np.int64)


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "/tmp/ms_loader_bench"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    pairs = [(p.replace("_label.png", ".png"), p) for p in sorted(glob.glob(f"{d}/*_label.png"))]
    if not pairs:
        sys.exit(f"pil_loader_peer: no *_label.png in {d} (run loader_bench.lua first)")
    random.seed(0)
    chain(*pairs[0])
    t = time.perf_counter()
    for i in range(n):
        chain(*pairs[i % len(pairs)])
    dt = time.perf_counter() - t
    print(json.dumps({"images_per_s": round(n / dt, 2), "ms_per_image": round(1000 * dt / n, 1)}))


if __name__ == "__main__":
    main()
