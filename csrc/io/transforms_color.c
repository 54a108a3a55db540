/* transforms_color.c: PIL ImageEnhance colour ops and PaddleSeg's HSV hue shift on u8 RGB. */
#include <math.h>
#include <stdlib.h>

#include "transforms.h"

/* PIL's arithmetic is plain float without fused multiply-add; keep it so for exact parity. */
#if defined(__clang__)
#pragma clang fp contract(off)
#define TF_EXACT
#else
#define TF_EXACT __attribute__((optimize("fp-contract=off")))
#endif

/* PIL Image.blend(degenerate, image, alpha) on one sample (ImagingBlend, float alpha). */
TF_EXACT static inline uint8_t blend(int deg, int img, float alpha) {
  float t = (float)deg + alpha * (float)(img - deg);
  if (t <= 0.0f) return 0;
  if (t >= 255.0f) return 255;
  return (uint8_t)t;
}

/* PIL convert("L"): ITU-R 601-2 luma in 16-bit fixed point, rounded. */
static inline int luma(const uint8_t *p) {
  return (p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16;
}

TF_EXACT void tf_brightness(uint8_t *px, int64_t n, double factor) {
  uint8_t lut[256];
  for (int v = 0; v < 256; v++)
    lut[v] = blend(0, v, (float)factor);
  for (int64_t i = 0; i < 3 * n; i++)
    px[i] = lut[px[i]];
}

TF_EXACT void tf_contrast(uint8_t *px, int64_t n, double factor) {
  int64_t sum = 0;
  for (int64_t i = 0; i < n; i++)
    sum += luma(px + 3 * i);
  /* ImageStat mean of the L image, then int(mean + 0.5). */
  int mean = n > 0 ? (int)((double)sum / (double)n + 0.5) : 0;
  uint8_t lut[256];
  for (int v = 0; v < 256; v++)
    lut[v] = blend(mean, v, (float)factor);
  for (int64_t i = 0; i < 3 * n; i++)
    px[i] = lut[px[i]];
}

TF_EXACT void tf_saturation(uint8_t *px, int64_t n, double factor) {
  float a = (float)factor;
  for (int64_t i = 0; i < n; i++) {
    uint8_t *p = px + 3 * i;
    int l = luma(p);
    p[0] = blend(l, p[0], a);
    p[1] = blend(l, p[1], a);
    p[2] = blend(l, p[2], a);
  }
}

static inline uint8_t clip8i(int v) { return v <= 0 ? 0 : v < 256 ? (uint8_t)v : 255; }

/* PIL's RGB -> HSV (Convert.c, after Python's colorsys), all components 0..255. */
TF_EXACT static void rgb2hsv(const uint8_t *in, uint8_t *h_, uint8_t *s_, uint8_t *v_) {
  int r = in[0], g = in[1], b = in[2];
  int maxc = r > g ? (r > b ? r : b) : (g > b ? g : b);
  int minc = r < g ? (r < b ? r : b) : (g < b ? g : b);
  *v_ = (uint8_t)maxc;
  if (minc == maxc) {
    *h_ = 0, *s_ = 0;
    return;
  }
  float cr = (float)(maxc - minc);
  float s = cr / (float)maxc;
  float rc = (float)(maxc - r) / cr, gc = (float)(maxc - g) / cr, bc = (float)(maxc - b) / cr;
  float h;
  if (r == maxc)
    h = bc - gc;
  else if (g == maxc)
    h = (float)(2.0 + rc - bc);
  else
    h = (float)(4.0 + gc - rc);
  h = (float)fmod(h / 6.0 + 1.0, 1.0);
  *h_ = clip8i((int)(h * 255.0));
  *s_ = clip8i((int)(s * 255.0));
}

/* PIL's HSV -> RGB. */
TF_EXACT static void hsv2rgb(int h, int s, int v, uint8_t *out) {
  if (s == 0) {
    out[0] = out[1] = out[2] = (uint8_t)v;
    return;
  }
  int i = (int)floor((float)h * 6.0 / 255.0);
  float f = (float)((float)h * 6.0 / 255.0 - (float)i);
  float fs = (float)((float)s / 255.0);
  uint8_t p = clip8i((int)round((float)v * (1.0 - fs)));
  uint8_t q = clip8i((int)round((float)v * (1.0 - fs * f)));
  uint8_t t = clip8i((int)round((float)v * (1.0 - fs * (1.0 - f))));
  uint8_t V = (uint8_t)v;
  switch (i % 6) {
  case 0: out[0] = V, out[1] = t, out[2] = p; break;
  case 1: out[0] = q, out[1] = V, out[2] = p; break;
  case 2: out[0] = p, out[1] = V, out[2] = t; break;
  case 3: out[0] = p, out[1] = q, out[2] = V; break;
  case 4: out[0] = t, out[1] = p, out[2] = V; break;
  default: out[0] = V, out[1] = p, out[2] = q; break;
  }
}

/* PaddleSeg: H channel of PIL's HSV image += delta, stored back into uint8 by numpy
 * (truncation toward zero, wrapping modulo 256), then converted back to RGB. */
void tf_hue(uint8_t *px, int64_t n, double delta) {
  uint8_t hmap[256];
  for (int h = 0; h < 256; h++) {
    double v = (double)h + delta;
    hmap[h] = (uint8_t)((int64_t)v & 255);
  }
  for (int64_t i = 0; i < n; i++) {
    uint8_t *p = px + 3 * i, h, s, v;
    rgb2hsv(p, &h, &s, &v);
    hsv2rgb(hmap[h], s, v, p);
  }
}

/* PIL ImageFilter.SMOOTH (3x3 kernel 1 1 1 / 1 5 1 / 1 1 1, scale 13, border pixels kept)
 * rounded to u8 (clip8), then blend(smooth, image, factor). */
TF_EXACT int tf_sharpness(uint8_t *px, int64_t w, int64_t h, double factor) {
  if (w < 3 || h < 3) return MS_OK; /* PIL leaves images smaller than the kernel unfiltered */
  uint8_t *deg = malloc((size_t)(w * h * 3));
  if (!deg) return ms_fail(MS_ERR_OOM, "RandomDistort: out of memory for sharpness");
  memcpy(deg, px, (size_t)(w * h * 3));
  const float k1 = 1.0f / 13.0f, k5 = 5.0f / 13.0f;
  for (int64_t y = 1; y < h - 1; y++) {
    const uint8_t *a = px + (y - 1) * w * 3, *m = px + y * w * 3, *b = px + (y + 1) * w * 3;
    uint8_t *o = deg + y * w * 3;
    for (int64_t x = 1; x < w - 1; x++) {
      for (int c = 0; c < 3; c++) {
        int64_t i = x * 3 + c;
        float ss = 0.0f;
        ss += (float)b[i - 3] * k1 + (float)b[i] * k1 + (float)b[i + 3] * k1;
        ss += (float)m[i - 3] * k1 + (float)m[i] * k5 + (float)m[i + 3] * k1;
        ss += (float)a[i - 3] * k1 + (float)a[i] * k1 + (float)a[i + 3] * k1;
        o[i] = ss <= 0.0f ? 0 : ss >= 255.0f ? 255 : (uint8_t)(int)(ss + 0.5f);
      }
    }
  }
  float a = (float)factor;
  for (int64_t i = 0; i < w * h * 3; i++)
    px[i] = blend(deg[i], px[i], a);
  free(deg);
  return MS_OK;
}
