/* transforms.c: PaddleSeg augmentation pipeline: validation, Philox draws and the driver. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "../core/philox.h"
#include "transforms.h"

/* ---- draws ------------------------------------------------------------------------------ */

void tf_rng_init(tf_rng *r, uint64_t seed, uint64_t epoch, uint64_t index, int op) {
  r->seed = seed;
  r->index = index;
  r->hi = (epoch << 32) | ((uint64_t)op << 20);
  r->used = 4;
  r->block = 0;
}

static uint32_t next32(tf_rng *r) {
  if (r->used == 4) {
    ms_philox_block(r->seed, r->index, r->hi | r->block, r->buf);
    r->block++;
    r->used = 0;
  }
  return r->buf[r->used++];
}

double tf_unit(tf_rng *r) {
  uint64_t a = next32(r) >> 5, b = next32(r) >> 6;
  return ((double)a * 67108864.0 + (double)b) * (1.0 / 9007199254740992.0);
}

double tf_uniform(tf_rng *r, double lo, double hi) { return lo + (hi - lo) * tf_unit(r); }

int64_t tf_randint(tf_rng *r, int64_t n) {
  int64_t k = (int64_t)(tf_unit(r) * (double)n);
  return k < n ? k : n - 1;
}

/* ---- validation -------------------------------------------------------------------------- */

static const char *kind_name(int k) {
  static const char *names[] = {"ResizeStepScaling",  "RandomPaddingCrop", "RandomHorizontalFlip",
                                "RandomVerticalFlip", "RandomDistort",     "Resize",
                                "Normalize",          "RandomScaleAspect", "Padding",
                                "AdjustBrightness",   "AdjustContrast",    "AdjustSaturation",
                                "AdjustHue",          "AdjustSharpness"};
  return k >= 0 && k < (int)(sizeof names / sizeof names[0]) ? names[k] : "unknown transform";
}

#define TF_MAX_SIDE 65536.0

static int bad(int k, int pos, const char *what, double v) {
  return ms_fail(MS_ERR_INVALID, "%s (transform %d): %s, got %g", kind_name(k), pos, what, v);
}

static int check_size(int k, int pos, const char *name, double v) {
  if (!(v >= 1 && v <= TF_MAX_SIDE && v == floor(v))) {
    char what[96];
    snprintf(what, sizeof what, "%s must be an integer in [1, %d]", name, (int)TF_MAX_SIDE);
    return bad(k, pos, what, v);
  }
  return MS_OK;
}

static int check_prob(int k, int pos, double v) {
  return v >= 0 && v <= 1 ? MS_OK : bad(k, pos, "a probability must be in [0, 1]", v);
}

static int check_pads(int k, int pos, const double *p) {
  for (int c = 0; c < 3; c++)
    if (!(p[c] >= 0 && p[c] <= 255))
      return bad(k, pos, "im_padding_value must be in [0, 255]", p[c]);
  if (!(p[3] >= 0 && p[3] <= 255 && p[3] == floor(p[3])))
    return bad(k, pos, "label_padding_value must be an integer in [0, 255]", p[3]);
  return MS_OK;
}

static int validate(const ms_transform *ops, int n) {
  for (int i = 0; i < n; i++) {
    int k = ops[i].kind;
    const double *p = ops[i].p;
    int st = MS_OK;
    for (int j = 0; j < 12; j++)
      if (!isfinite(p[j])) return bad(k, i, "parameters must be finite", p[j]);
    switch (k) {
    case MS_TF_RESIZE_STEP_SCALING:
      if (!(p[0] > 0)) return bad(k, i, "min_scale_factor must be > 0", p[0]);
      if (p[0] > p[1])
        return ms_fail(
            MS_ERR_INVALID,
            "ResizeStepScaling (transform %d): min_scale_factor %g > max_scale_factor %g", i, p[0],
            p[1]);
      if (!(p[2] >= 0)) return bad(k, i, "scale_step_size must be >= 0", p[2]);
      break;
    case MS_TF_RANDOM_PADDING_CROP:
    case MS_TF_PADDING:
      if ((st = check_size(k, i, "width", p[0])) || (st = check_size(k, i, "height", p[1])))
        return st;
      if ((st = check_pads(k, i, p + 2))) return st;
      break;
    case MS_TF_RANDOM_HORIZONTAL_FLIP:
    case MS_TF_RANDOM_VERTICAL_FLIP:
      if ((st = check_prob(k, i, p[0]))) return st;
      break;
    case MS_TF_RANDOM_DISTORT:
      for (int j = 0; j < 10; j += 2) {
        if (!(p[j] >= 0)) return bad(k, i, "ranges must be >= 0", p[j]);
        if ((st = check_prob(k, i, p[j + 1]))) return st;
      }
      break;
    case MS_TF_RESIZE:
      if ((st = check_size(k, i, "width", p[0])) || (st = check_size(k, i, "height", p[1])))
        return st;
      if (p[2] != 0 && p[2] != 1)
        return bad(k, i, "interp must be 0 (NEAREST) or 1 (LINEAR)", p[2]);
      break;
    case MS_TF_NORMALIZE:
      for (int c = 0; c < 3; c++)
        if (p[3 + c] == 0) return bad(k, i, "std must be non-zero", p[3 + c]);
      if (i != n - 1)
        return ms_fail(MS_ERR_INVALID, "Normalize (transform %d of %d) must be the last transform",
                       i, n);
      break;
    case MS_TF_RANDOM_SCALE_ASPECT:
      if (!(p[0] >= 0 && p[0] <= 1)) return bad(k, i, "min_scale must be in [0, 1]", p[0]);
      if (!(p[1] >= 0)) return bad(k, i, "aspect_ratio must be >= 0", p[1]);
      break;
    case MS_TF_ADJUST_BRIGHTNESS:
    case MS_TF_ADJUST_CONTRAST:
    case MS_TF_ADJUST_SATURATION:
    case MS_TF_ADJUST_SHARPNESS:
    case MS_TF_ADJUST_HUE: break;
    default: return ms_fail(MS_ERR_INVALID, "transform %d: unknown kind %d (0..13)", i, k);
    }
  }
  return MS_OK;
}

static int check_inputs(const ms_tensor *img, const ms_tensor *label) {
  if (ms_check_tensor("transform", "image", img)) return MS_ERR_INVALID;
  if (img->storage->device != MS_CPU)
    return ms_fail(MS_ERR_DEVICE, "transform: image %s must be on the CPU", ms_desc(img));
  if (img->dtype != MS_U8 && img->dtype != MS_F32)
    return ms_fail(MS_ERR_DTYPE, "transform: image must be u8 or f32 [H, W, 3], got %s",
                   ms_desc(img));
  if (img->ndim != 3 || img->shape[2] != 3 || img->shape[0] < 1 || img->shape[1] < 1)
    return ms_fail(MS_ERR_INVALID, "transform: image must be [H, W, 3] (HWC RGB), got %s",
                   ms_desc(img));
  if (!label) return MS_OK;
  if (ms_check_tensor("transform", "label", label)) return MS_ERR_INVALID;
  if (label->storage->device != MS_CPU)
    return ms_fail(MS_ERR_DEVICE, "transform: label %s must be on the CPU", ms_desc(label));
  if (label->dtype != MS_U8)
    return ms_fail(MS_ERR_DTYPE, "transform: label must be u8 [H, W], got %s", ms_desc(label));
  if (label->ndim != 2 || label->shape[0] != img->shape[0] || label->shape[1] != img->shape[1])
    return ms_fail(MS_ERR_INVALID, "transform: label %s does not match image %s (need [H, W])",
                   ms_desc(label), ms_desc(img));
  return MS_OK;
}

/* ---- the driver ---------------------------------------------------------------------------- */

typedef struct tf_sample {
  tf_layer im, lb;
  int has_label;
} tf_sample;

static int both_resize(tf_sample *s, int64_t w, int64_t h, int interp) {
  int st = tf_layer_resize(&s->im, w, h, interp);
  if (!st && s->has_label) st = tf_layer_resize(&s->lb, w, h, 0);
  return st;
}

static int both_window(tf_sample *s, int64_t x0, int64_t y0, int64_t w, int64_t h,
                       const double *pads) {
  float ip[4] = {(float)pads[0], (float)pads[1], (float)pads[2], 0}, lp[4] = {(float)pads[3]};
  int st = tf_layer_window(&s->im, x0, y0, w, h, ip);
  if (!st && s->has_label) st = tf_layer_window(&s->lb, x0, y0, w, h, lp);
  return st;
}

static void both_flip(tf_sample *s, int horizontal) {
  tf_layer_flip(&s->im, horizontal);
  if (s->has_label) tf_layer_flip(&s->lb, horizontal);
}

/* The image as plain u8 pixels of our own (PaddleSeg: im.astype('uint8')) for the colour ops,
 * which work in place: the caller's tensor is never written. */
static int image_u8(tf_sample *s) {
  if (!s->im.is_float && tf_layer_is_plain(&s->im) && s->im.own) return MS_OK;
  return tf_layer_materialize(&s->im, TF_SINK_U8_TRUNC_HWC);
}

static int color_op(tf_sample *s, int which, double factor) {
  int st = image_u8(s);
  if (st) return st;
  int64_t w, h;
  tf_layer_size(&s->im, &w, &h);
  uint8_t *px = s->im.buf;
  switch (which) {
  case 0: tf_brightness(px, w * h, factor); break;
  case 1: tf_contrast(px, w * h, factor); break;
  case 2: tf_saturation(px, w * h, factor); break;
  case 3: tf_hue(px, w * h, factor); break;
  default: return tf_sharpness(px, w, h, factor);
  }
  return MS_OK;
}

static int run_distort(tf_sample *s, const double *p, tf_rng *r) {
  /* PaddleSeg: ops = [brightness, contrast, saturation, hue, sharpness]; random.shuffle(ops);
   * each applied when uniform(0, 1) < prob with factor uniform(1 - range, 1 + range), hue
   * delta uniform(-range, range). */
  int order[5] = {0, 1, 2, 3, 4};
  static const int pidx[5] = {0, 2, 4, 6, 8};
  for (int i = 4; i > 0; i--) {
    int j = (int)tf_randint(r, i + 1), t = order[i];
    order[i] = order[j], order[j] = t;
  }
  int st = image_u8(s);
  for (int i = 0; i < 5 && !st; i++) {
    int op = order[i];
    double range = p[pidx[op]], prob = p[pidx[op] + 1];
    if (!(tf_unit(r) < prob)) continue;
    double f = op == 3 ? tf_uniform(r, -range, range) : tf_uniform(r, 1 - range, 1 + range);
    st = color_op(s, op, f);
  }
  return st;
}

static int run_op(tf_sample *s, const ms_transform *t, int pos, tf_rng *r) {
  const double *p = t->p;
  int64_t W, H;
  tf_layer_size(&s->im, &W, &H);
  switch (t->kind) {
  case MS_TF_RESIZE_STEP_SCALING: {
    double mn = p[0], mx = p[1], step = p[2], scale;
    if (mn == mx) {
      scale = mn;
    } else if (step == 0) {
      scale = tf_uniform(r, mn, mx);
    } else {
      int64_t num = (int64_t)((mx - mn) / step + 1); /* numpy.linspace grid, one drawn */
      if (num <= 1) {
        scale = mn;
      } else {
        int64_t k = tf_randint(r, num);
        scale = k == num - 1 ? mx : (double)k * ((mx - mn) / (double)(num - 1)) + mn;
      }
    }
    int64_t w = (int64_t)nearbyint(scale * (double)W), h = (int64_t)nearbyint(scale * (double)H);
    if (w < 1 || h < 1 || w > TF_MAX_SIDE || h > TF_MAX_SIDE)
      return ms_fail(MS_ERR_INVALID,
                     "ResizeStepScaling (transform %d): scale %g turns a [%lld, %lld] image into "
                     "[%lld, %lld]",
                     pos, scale, (long long)H, (long long)W, (long long)h, (long long)w);
    return both_resize(s, w, h, 1);
  }
  case MS_TF_RANDOM_PADDING_CROP: {
    int64_t cw = (int64_t)p[0], ch = (int64_t)p[1];
    if (W == cw && H == ch) return MS_OK;
    int64_t ph = H > ch ? H : ch, pw = W > cw ? W : cw;
    int64_t h_off = tf_randint(r, ph - ch + 1);
    int64_t w_off = tf_randint(r, pw - cw + 1);
    return both_window(s, w_off, h_off, cw, ch, p + 2);
  }
  case MS_TF_PADDING: {
    int64_t tw = (int64_t)p[0], th = (int64_t)p[1];
    if (W > tw || H > th)
      return ms_fail(MS_ERR_INVALID,
                     "Padding (transform %d): image [%lld, %lld] is larger than target_size "
                     "(W %lld, H %lld)",
                     pos, (long long)H, (long long)W, (long long)tw, (long long)th);
    if (W == tw && H == th) return MS_OK;
    return both_window(s, 0, 0, tw, th, p + 2);
  }
  case MS_TF_RANDOM_HORIZONTAL_FLIP:
  case MS_TF_RANDOM_VERTICAL_FLIP:
    if (tf_unit(r) < p[0]) both_flip(s, t->kind == MS_TF_RANDOM_HORIZONTAL_FLIP);
    return MS_OK;
  case MS_TF_RESIZE: return both_resize(s, (int64_t)p[0], (int64_t)p[1], (int)p[2]);
  case MS_TF_RANDOM_SCALE_ASPECT: {
    if (p[0] == 0 || p[1] == 0) return MS_OK;
    for (int i = 0; i < 10; i++) {
      double area = (double)H * (double)W;
      double target = area * tf_uniform(r, p[0], 1.0);
      double ar = tf_uniform(r, p[1], 1.0 / p[1]);
      int64_t dw = (int64_t)sqrt(target * ar), dh = (int64_t)sqrt(target / ar);
      if (tf_randint(r, 10) < 5) {
        int64_t t2 = dw;
        dw = dh, dh = t2;
      }
      if (dh < H && dw < W && dh >= 1 && dw >= 1) {
        int64_t h1 = tf_randint(r, H - dh), w1 = tf_randint(r, W - dw);
        static const double nopad[4] = {0, 0, 0, 0};
        int st = both_window(s, w1, h1, dw, dh, nopad);
        return st ? st : both_resize(s, W, H, 1);
      }
    }
    return MS_OK;
  }
  case MS_TF_RANDOM_DISTORT: return run_distort(s, p, r);
  case MS_TF_ADJUST_BRIGHTNESS:
  case MS_TF_ADJUST_CONTRAST:
  case MS_TF_ADJUST_SATURATION:
  case MS_TF_ADJUST_HUE:
  case MS_TF_ADJUST_SHARPNESS: {
    static const int which[] = {0, 1, 2, 3, 4};
    return color_op(s, which[t->kind - MS_TF_ADJUST_BRIGHTNESS], p[0]);
  }
  default: /* Normalize is applied by the final write */ return MS_OK;
  }
}

static int check_common(const ms_transform *ops, int n, uint64_t epoch, const ms_tensor *img,
                        const ms_tensor *label) {
  if (n < 0 || n > 4096 || (n > 0 && !ops))
    return ms_fail(MS_ERR_INVALID, "transform: need 0..4096 ops, got %d%s", n,
                   ops ? "" : " (ops is NULL)");
  if (epoch >> 32)
    return ms_fail(MS_ERR_INVALID, "transform: epoch %llu does not fit in 32 bits",
                   (unsigned long long)epoch);
  int st = check_inputs(img, label);
  return st ? st : validate(ops, n);
}

/* Runs the ops, leaving the result pending in s (inputs are held in *holds). */
static int run_all(ms_context *ctx, const ms_transform *ops, int n, uint64_t seed, uint64_t epoch,
                   uint64_t index, const ms_tensor *img, const ms_tensor *label, tf_sample *s,
                   ms_tensor **holds) {
  memset(s, 0, sizeof *s);
  int st = ms_contiguous(ctx, img, &holds[0]);
  if (!st && label) st = ms_contiguous(ctx, label, &holds[1]);
  if (st) return st;
  tf_layer_init(&s->im, ms_data(holds[0]), img->dtype == MS_F32, 3, img->shape[1], img->shape[0]);
  if (label) {
    s->has_label = 1;
    tf_layer_init(&s->lb, ms_data(holds[1]), 0, 1, label->shape[1], label->shape[0]);
  }
  for (int i = 0; i < n && !st; i++) {
    tf_rng r;
    tf_rng_init(&r, seed, epoch, index, i);
    st = run_op(s, &ops[i], i, &r);
  }
  return st;
}

static void finish(tf_sample *s, ms_tensor **holds) {
  tf_layer_release(&s->im);
  tf_layer_release(&s->lb);
  ms_tensor_free(holds[0]);
  ms_tensor_free(holds[1]);
}

static int write_outputs(const ms_transform *ops, int n, tf_sample *s, ms_tensor *img_dst,
                         ms_tensor *label_dst) {
  const double *mean = NULL, *std = NULL;
  if (n > 0 && ops[n - 1].kind == MS_TF_NORMALIZE) mean = ops[n - 1].p, std = ops[n - 1].p + 3;
  int st = tf_layer_write_chw(&s->im, (float *)ms_data(img_dst), mean, std);
  if (!st && s->has_label && label_dst)
    st = tf_layer_write_u8(&s->lb, (uint8_t *)ms_data(label_dst));
  return st;
}

int ms_transform_apply(ms_context *ctx, const ms_transform *ops, int n, uint64_t seed,
                       uint64_t epoch, uint64_t index, const ms_tensor *img, const ms_tensor *label,
                       ms_tensor **img_out, ms_tensor **label_out) {
  if (!img_out || (label && !label_out))
    return ms_fail(MS_ERR_INVALID, "transform: output pointer is NULL");
  int st = check_common(ops, n, epoch, img, label);
  if (st) return st;
  tf_sample s;
  ms_tensor *holds[2] = {NULL, NULL}, *io = NULL, *lo = NULL;
  st = run_all(ctx, ops, n, seed, epoch, index, img, label, &s, holds);
  int64_t W, H;
  tf_layer_size(&s.im, &W, &H);
  int64_t ishape[3] = {3, H, W}, lshape[2] = {H, W};
  if (!st) st = ms_tensor_new(ishape, 3, MS_F32, MS_CPU, 0, &io);
  if (!st && label) st = ms_tensor_new(lshape, 2, MS_U8, MS_CPU, 0, &lo);
  if (!st) st = write_outputs(ops, n, &s, io, lo);
  finish(&s, holds);
  if (st) {
    ms_tensor_free(io);
    ms_tensor_free(lo);
    return st;
  }
  *img_out = io;
  if (label) *label_out = lo;
  return MS_OK;
}

int ms_transform_apply_into(ms_context *ctx, const ms_transform *ops, int n, uint64_t seed,
                            uint64_t epoch, uint64_t index, const ms_tensor *img,
                            const ms_tensor *label, ms_tensor *img_dst, ms_tensor *label_dst) {
  int st = check_common(ops, n, epoch, img, label);
  if (st) return st;
  if (ms_check_tensor("transform_into", "img_dst", img_dst)) return MS_ERR_INVALID;
  if (label && ms_check_tensor("transform_into", "label_dst", label_dst)) return MS_ERR_INVALID;
  tf_sample s;
  ms_tensor *holds[2] = {NULL, NULL};
  st = run_all(ctx, ops, n, seed, epoch, index, img, label, &s, holds);
  if (!st) {
    int64_t W, H;
    tf_layer_size(&s.im, &W, &H);
    if (img_dst->storage->device != MS_CPU || img_dst->dtype != MS_F32 || img_dst->ndim != 3 ||
        img_dst->shape[0] != 3 || img_dst->shape[1] != H || img_dst->shape[2] != W ||
        !ms_is_contiguous(img_dst))
      st = ms_fail(MS_ERR_INVALID,
                   "transform_into: img_dst %s must be a contiguous CPU f32 [3, %lld, %lld]",
                   ms_desc(img_dst), (long long)H, (long long)W);
    else if (label && (label_dst->storage->device != MS_CPU || label_dst->dtype != MS_U8 ||
                       label_dst->ndim != 2 || label_dst->shape[0] != H ||
                       label_dst->shape[1] != W || !ms_is_contiguous(label_dst)))
      st = ms_fail(MS_ERR_INVALID,
                   "transform_into: label_dst %s must be a contiguous CPU u8 [%lld, %lld]",
                   ms_desc(label_dst), (long long)H, (long long)W);
  }
  if (!st) st = write_outputs(ops, n, &s, img_dst, label ? label_dst : NULL);
  finish(&s, holds);
  return st;
}
