/* transforms_geometric.c: lazy resize / pad-crop / flip of augmentation layers, cv2 numerics. */
#include <math.h>
#include <stdlib.h>

#include "transforms.h"

void tf_layer_init(tf_layer *l, void *buf, int is_float, int channels, int64_t w, int64_t h) {
  memset(l, 0, sizeof *l);
  l->buf = buf;
  l->is_float = is_float;
  l->channels = channels;
  l->row_elems = w * channels;
  l->buf_h = h;
  l->sw = w;
  l->sh = h;
}

void tf_layer_release(tf_layer *l) {
  if (l->own) free(l->buf);
  l->buf = NULL;
  l->own = 0;
}

void tf_layer_size(const tf_layer *l, int64_t *w, int64_t *h) {
  if (l->window) {
    *w = l->ow, *h = l->oh;
  } else if (l->resize) {
    *w = l->rw, *h = l->rh;
  } else {
    *w = l->sw, *h = l->sh;
  }
}

int tf_layer_is_plain(const tf_layer *l) {
  return !l->resize && !l->window && !l->flipx && !l->flipy && l->sx0 == 0 && l->sy0 == 0 &&
         l->sw * l->channels == l->row_elems && l->sh == l->buf_h;
}

/* The cheapest exact sink for an image layer's pending values. */
static int natural_sink(const tf_layer *l) {
  if (l->is_float || (l->resize && l->interp == 1)) return TF_SINK_F32_HWC;
  if (l->window)
    for (int c = 0; c < l->channels; c++)
      if (l->pad[c] != floorf(l->pad[c]) || l->pad[c] < 0 || l->pad[c] > 255)
        return TF_SINK_F32_HWC;
  return TF_SINK_U8_TRUNC_HWC;
}

int tf_layer_resize(tf_layer *l, int64_t w, int64_t h, int interp) {
  if (l->window || l->flipx || l->flipy || l->resize) {
    int st = tf_layer_materialize(l, natural_sink(l));
    if (st) return st;
  }
  l->resize = 1;
  l->interp = interp;
  l->rw = w;
  l->rh = h;
  return MS_OK;
}

int tf_layer_window(tf_layer *l, int64_t x0, int64_t y0, int64_t w, int64_t h, const float *pad) {
  if (l->window || l->flipx || l->flipy) {
    int st = tf_layer_materialize(l, natural_sink(l));
    if (st) return st;
  }
  if (!l->resize && x0 >= 0 && y0 >= 0 && x0 + w <= l->sw && y0 + h <= l->sh) {
    l->sx0 += x0, l->sy0 += y0, l->sw = w, l->sh = h; /* a plain crop narrows the source */
    return MS_OK;
  }
  l->window = 1;
  l->x0 = x0, l->y0 = y0, l->ow = w, l->oh = h;
  for (int c = 0; c < l->channels && c < 4; c++)
    l->pad[c] = pad[c];
  return MS_OK;
}

void tf_layer_flip(tf_layer *l, int horizontal) {
  if (horizontal)
    l->flipx = !l->flipx;
  else
    l->flipy = !l->flipy;
}

/* ---- evaluation ---------------------------------------------------------------------- */

/* cv2 INTER_LINEAR source taps for destination index d (n source, m destination). */
static void lin_coef(int64_t d, int64_t n, int64_t m, int64_t *i0, int64_t *i1, float *a1) {
  double scale = (double)n / (double)m;
  float f = (float)((d + 0.5) * scale - 0.5);
  int64_t s = (int64_t)floorf(f);
  f -= (float)s;
  if (s < 0) f = 0, s = 0;
  if (s >= n - 1) f = 0, s = n - 1;
  *i0 = s;
  *i1 = s + 1 < n ? s + 1 : s;
  *a1 = f;
}

/* cv2 INTER_NEAREST: floor(d * n / m) computed as cv2 does. */
static int64_t nn_index(int64_t d, int64_t n, int64_t m) {
  double ifx = 1.0 / ((double)m / (double)n);
  int64_t s = (int64_t)floor((double)d * ifx);
  return s < n - 1 ? s : n - 1;
}

/* Output coordinate -> coordinate in the resized (or source-rect) picture; -1 for padding. */
static int64_t axis_pos(int64_t o, int64_t out_n, int flip, int window, int64_t w0,
                        int64_t base_n) {
  int64_t v = flip ? out_n - 1 - o : o;
  if (window) {
    v += w0;
    if (v < 0 || v >= base_n) return -1;
  }
  return v;
}

typedef struct tf_eval {
  const tf_layer *l;
  int64_t W, H, C;
  int bilinear;
  int64_t *c0, *c1; /* element offsets in a source row, -1 = padding */
  float *ca;        /* weight of c1 */
  float *hbuf[2];
  int64_t tag[2];
  float *row;
} tf_eval;

static void eval_free(tf_eval *e) {
  free(e->c0);
  free(e->c1);
  free(e->ca);
  free(e->hbuf[0]);
  free(e->hbuf[1]);
  free(e->row);
}

static int eval_init(tf_eval *e, const tf_layer *l) {
  memset(e, 0, sizeof *e);
  e->l = l;
  tf_layer_size(l, &e->W, &e->H);
  e->C = l->channels;
  e->bilinear = l->resize && l->interp == 1;
  int64_t W = e->W > 0 ? e->W : 1, C = e->C;
  e->c0 = malloc(sizeof(int64_t) * W);
  e->c1 = malloc(sizeof(int64_t) * W);
  e->ca = malloc(sizeof(float) * W);
  e->row = malloc(sizeof(float) * W * C);
  if (e->bilinear) {
    e->hbuf[0] = malloc(sizeof(float) * W * C);
    e->hbuf[1] = malloc(sizeof(float) * W * C);
  }
  e->tag[0] = e->tag[1] = -1;
  if (!e->c0 || !e->c1 || !e->ca || !e->row || (e->bilinear && (!e->hbuf[0] || !e->hbuf[1]))) {
    eval_free(e);
    return ms_fail(MS_ERR_OOM, "transform: out of memory for a %lld-wide row", (long long)W);
  }
  int64_t base = l->resize ? l->rw : l->sw;
  for (int64_t ox = 0; ox < e->W; ox++) {
    int64_t v = axis_pos(ox, e->W, l->flipx, l->window, l->x0, base);
    int64_t i0 = v, i1 = v;
    float a = 0;
    if (v >= 0 && l->resize) {
      if (e->bilinear)
        lin_coef(v, l->sw, l->rw, &i0, &i1, &a);
      else
        i0 = i1 = nn_index(v, l->sw, l->rw);
    }
    e->c0[ox] = v < 0 ? -1 : (i0 + l->sx0) * C;
    e->c1[ox] = v < 0 ? -1 : (i1 + l->sx0) * C;
    e->ca[ox] = a;
  }
  return MS_OK;
}

/* Source rows (and weight of r1) for output row oy; 0 when the row is padding. */
static int row_map(const tf_eval *e, int64_t oy, int64_t *r0, int64_t *r1, float *b1) {
  const tf_layer *l = e->l;
  int64_t v = axis_pos(oy, e->H, l->flipy, l->window, l->y0, l->resize ? l->rh : l->sh);
  if (v < 0) return 0;
  *b1 = 0;
  if (e->bilinear) {
    lin_coef(v, l->sh, l->rh, r0, r1, b1);
  } else {
    *r0 = *r1 = l->resize ? nn_index(v, l->sh, l->rh) : v;
  }
  *r0 += l->sy0;
  *r1 += l->sy0;
  return 1;
}

/* Horizontal pass of source row r into dst (non-padding columns only). */
static void hpass(const tf_eval *e, int64_t r, float *dst) {
  const tf_layer *l = e->l;
  const int64_t W = e->W, C = e->C;
  if (l->is_float) {
    const float *s = (const float *)l->buf + r * l->row_elems;
    for (int64_t x = 0; x < W; x++) {
      int64_t o0 = e->c0[x], o1 = e->c1[x];
      if (o0 < 0) continue;
      float a1 = e->ca[x], a0 = 1.f - a1;
      for (int64_t c = 0; c < C; c++)
        dst[x * C + c] = s[o0 + c] * a0 + s[o1 + c] * a1;
    }
  } else {
    const uint8_t *s = (const uint8_t *)l->buf + r * l->row_elems;
    if (C == 3) {
      for (int64_t x = 0; x < W; x++) {
        int64_t o0 = e->c0[x], o1 = e->c1[x];
        if (o0 < 0) continue;
        float a1 = e->ca[x], a0 = 1.f - a1;
        dst[x * 3 + 0] = (float)s[o0 + 0] * a0 + (float)s[o1 + 0] * a1;
        dst[x * 3 + 1] = (float)s[o0 + 1] * a0 + (float)s[o1 + 1] * a1;
        dst[x * 3 + 2] = (float)s[o0 + 2] * a0 + (float)s[o1 + 2] * a1;
      }
    } else {
      for (int64_t x = 0; x < W; x++) {
        int64_t o0 = e->c0[x], o1 = e->c1[x];
        if (o0 < 0) continue;
        float a1 = e->ca[x], a0 = 1.f - a1;
        for (int64_t c = 0; c < C; c++)
          dst[x * C + c] = (float)s[o0 + c] * a0 + (float)s[o1 + c] * a1;
      }
    }
  }
}

/* Cached horizontal pass of row r, never evicting row `keep`. */
static const float *hrow(tf_eval *e, int64_t r, int64_t keep) {
  if (e->tag[0] == r) return e->hbuf[0];
  if (e->tag[1] == r) return e->hbuf[1];
  int slot = e->tag[0] == keep ? 1 : 0;
  hpass(e, r, e->hbuf[slot]);
  e->tag[slot] = r;
  return e->hbuf[slot];
}

/* Output row oy of an image layer as floats (W * C). */
static const float *eval_row(tf_eval *e, int64_t oy) {
  const tf_layer *l = e->l;
  const int64_t W = e->W, C = e->C;
  float *out = e->row;
  int64_t r0, r1;
  float b1;
  if (!row_map(e, oy, &r0, &r1, &b1)) {
    for (int64_t x = 0; x < W; x++)
      for (int64_t c = 0; c < C; c++)
        out[x * C + c] = l->pad[c];
    return out;
  }
  if (e->bilinear) {
    const float *h0 = hrow(e, r0, r1), *h1 = hrow(e, r1, r0);
    float b0 = 1.f - b1;
    for (int64_t x = 0; x < W; x++) {
      if (e->c0[x] < 0) {
        for (int64_t c = 0; c < C; c++)
          out[x * C + c] = l->pad[c];
      } else {
        for (int64_t c = 0; c < C; c++)
          out[x * C + c] = h0[x * C + c] * b0 + h1[x * C + c] * b1;
      }
    }
    return out;
  }
  if (l->is_float) {
    const float *s = (const float *)l->buf + r0 * l->row_elems;
    for (int64_t x = 0; x < W; x++) {
      int64_t o = e->c0[x];
      for (int64_t c = 0; c < C; c++)
        out[x * C + c] = o < 0 ? l->pad[c] : s[o + c];
    }
  } else {
    const uint8_t *s = (const uint8_t *)l->buf + r0 * l->row_elems;
    for (int64_t x = 0; x < W; x++) {
      int64_t o = e->c0[x];
      for (int64_t c = 0; c < C; c++)
        out[x * C + c] = o < 0 ? l->pad[c] : (float)s[o + c];
    }
  }
  return out;
}

static inline uint8_t trunc_u8(float v) {
  return v <= 0.f ? 0 : v >= 255.f ? 255 : (uint8_t)v; /* numpy astype('uint8') in range */
}

/* Output row oy of a u8 layer gathered without float conversion (labels). */
static void eval_row_u8(tf_eval *e, int64_t oy, uint8_t *dst) {
  const tf_layer *l = e->l;
  const int64_t W = e->W, C = e->C;
  int64_t r0, r1;
  float b1;
  uint8_t pad[4];
  for (int64_t c = 0; c < C && c < 4; c++)
    pad[c] = trunc_u8(l->pad[c]);
  if (!row_map(e, oy, &r0, &r1, &b1)) {
    for (int64_t x = 0; x < W; x++)
      for (int64_t c = 0; c < C; c++)
        dst[x * C + c] = pad[c];
    return;
  }
  const uint8_t *s = (const uint8_t *)l->buf + r0 * l->row_elems;
  if (C == 1) {
    for (int64_t x = 0; x < W; x++) {
      int64_t o = e->c0[x];
      dst[x] = o < 0 ? pad[0] : s[o];
    }
  } else {
    for (int64_t x = 0; x < W; x++) {
      int64_t o = e->c0[x];
      for (int64_t c = 0; c < C; c++)
        dst[x * C + c] = o < 0 ? pad[c] : s[o + c];
    }
  }
}

int tf_layer_materialize(tf_layer *l, int sink) {
  tf_eval e;
  int st = eval_init(&e, l);
  if (st) return st;
  const int64_t W = e.W, H = e.H, C = e.C, n = W * C;
  int to_f32 = sink == TF_SINK_F32_HWC;
  int gather_u8 = !l->is_float && !e.bilinear && !to_f32;
  void *nb = malloc((size_t)(H * n > 0 ? H * n : 1) * (to_f32 ? sizeof(float) : 1));
  if (!nb) {
    eval_free(&e);
    return ms_fail(MS_ERR_OOM, "transform: out of memory for a [%lld, %lld, %lld] image",
                   (long long)H, (long long)W, (long long)C);
  }
  for (int64_t y = 0; y < H; y++) {
    if (gather_u8) {
      eval_row_u8(&e, y, (uint8_t *)nb + y * n);
      continue;
    }
    const float *row = eval_row(&e, y);
    if (to_f32) {
      memcpy((float *)nb + y * n, row, sizeof(float) * n);
    } else {
      uint8_t *d = (uint8_t *)nb + y * n;
      for (int64_t i = 0; i < n; i++)
        d[i] = trunc_u8(row[i]);
    }
  }
  eval_free(&e);
  tf_layer_release(l);
  tf_layer_init(l, nb, to_f32, (int)C, W, H);
  l->own = 1;
  return MS_OK;
}

/* numpy: im.astype(float32) / 255.0; im -= mean (float64); im /= std (float64). */
static inline float norm_value(float x, double mean, double std) {
  float v = x / 255.0f;
  v = (float)((double)v - mean);
  return (float)((double)v / std);
}

int tf_layer_write_chw(tf_layer *l, float *dst, const double *mean, const double *std) {
  int64_t W, H;
  tf_layer_size(l, &W, &H);
  const int64_t C = l->channels, plane = W * H;
  if (tf_layer_is_plain(l) && !l->is_float) {
    const uint8_t *s = (const uint8_t *)l->buf;
    float lut[4][256];
    for (int64_t c = 0; c < C && c < 4; c++)
      for (int v = 0; v < 256; v++)
        lut[c][v] = mean ? norm_value((float)v, mean[c], std[c]) : v;
    if (C == 3) {
      float *d0 = dst, *d1 = dst + plane, *d2 = dst + 2 * plane;
      for (int64_t i = 0; i < plane; i++) {
        d0[i] = lut[0][s[3 * i]];
        d1[i] = lut[1][s[3 * i + 1]];
        d2[i] = lut[2][s[3 * i + 2]];
      }
    } else {
      for (int64_t i = 0; i < plane; i++)
        for (int64_t c = 0; c < C; c++)
          dst[c * plane + i] = lut[c][s[C * i + c]];
    }
    return MS_OK;
  }
  tf_eval e;
  int st = eval_init(&e, l);
  if (st) return st;
  for (int64_t y = 0; y < H; y++) {
    const float *row = eval_row(&e, y);
    for (int64_t c = 0; c < C; c++) {
      float *d = dst + c * plane + y * W;
      if (mean) {
        double m = mean[c], sd = std[c];
        for (int64_t x = 0; x < W; x++)
          d[x] = norm_value(row[x * C + c], m, sd);
      } else {
        for (int64_t x = 0; x < W; x++)
          d[x] = row[x * C + c];
      }
    }
  }
  eval_free(&e);
  return MS_OK;
}

int tf_layer_write_u8(tf_layer *l, uint8_t *dst) {
  tf_eval e;
  int st = eval_init(&e, l);
  if (st) return st;
  for (int64_t y = 0; y < e.H; y++)
    eval_row_u8(&e, y, dst + y * e.W * e.C);
  eval_free(&e);
  return MS_OK;
}
