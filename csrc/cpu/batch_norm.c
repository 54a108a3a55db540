/* batch_norm.c: CPU kernels of batch normalization (per-channel stats, affine maps, grad sums). */
#include <math.h>
#include <stdlib.h>

#include "../core/dtype.h"
#include "half_loop.h"
#include "npr_kernels.h"

/* Row kernels, written once for float and double. Sums run over 8 independent double
 * lanes so the compiler vectorises them without reassociating a single accumulator. */
#define MS_BN_ROW_KERNELS(T, SUF)                                                                  \
  /* sum(x - k) and sum((x - k)^2) in one pass; k (a value of the channel) keeps the               \
   * second moment free of cancellation when |mean| >> std. */                                     \
  static void row_moments_##SUF(const T *x, int64_t n, double k, double *s1, double *s2) {         \
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0}, b[8] = {0, 0, 0, 0, 0, 0, 0, 0};                       \
    int64_t i = 0;                                                                                 \
    for (; i + 8 <= n; i += 8)                                                                     \
      for (int j = 0; j < 8; j++) {                                                                \
        double d = (double)x[i + j] - k;                                                           \
        a[j] += d;                                                                                 \
        b[j] += d * d;                                                                             \
      }                                                                                            \
    double u = 0, v = 0;                                                                           \
    for (; i < n; i++) {                                                                           \
      double d = (double)x[i] - k;                                                                 \
      u += d;                                                                                      \
      v += d * d;                                                                                  \
    }                                                                                              \
    for (int j = 0; j < 8; j++) {                                                                  \
      u += a[j];                                                                                   \
      v += b[j];                                                                                   \
    }                                                                                              \
    *s1 = u;                                                                                       \
    *s2 = v;                                                                                       \
  }                                                                                                \
  /* sum(g) and sum(g * (x - m)) */                                                                \
  static void row_gsums_##SUF(const T *g, const T *x, int64_t n, double m, double *sg,             \
                              double *sgx) {                                                       \
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0}, b[8] = {0, 0, 0, 0, 0, 0, 0, 0};                       \
    int64_t i = 0;                                                                                 \
    for (; i + 8 <= n; i += 8)                                                                     \
      for (int j = 0; j < 8; j++) {                                                                \
        double gv = (double)g[i + j];                                                              \
        a[j] += gv;                                                                                \
        b[j] += gv * ((double)x[i + j] - m);                                                       \
      }                                                                                            \
    double s1 = 0, s2 = 0;                                                                         \
    for (; i < n; i++) {                                                                           \
      s1 += (double)g[i];                                                                          \
      s2 += (double)g[i] * ((double)x[i] - m);                                                     \
    }                                                                                              \
    for (int j = 0; j < 8; j++) {                                                                  \
      s1 += a[j];                                                                                  \
      s2 += b[j];                                                                                  \
    }                                                                                              \
    *sg = s1;                                                                                      \
    *sgx = s2;                                                                                     \
  }                                                                                                \
  static void row_affine_##SUF(const T *x, T *y, int64_t n, T a, T b) {                            \
    for (int64_t i = 0; i < n; i++)                                                                \
      y[i] = a * x[i] + b;                                                                         \
  }                                                                                                \
  static void row_affine2_##SUF(const T *g, const T *x, T *y, int64_t n, T a, T b, T k) {          \
    for (int64_t i = 0; i < n; i++)                                                                \
      y[i] = a * g[i] + b * x[i] + k;                                                              \
  }

MS_BN_ROW_KERNELS(float, f32)
MS_BN_ROW_KERNELS(double, f64)

static int bad_dtype(const char *op, const ms_tensor *t) {
  return ms_fail(MS_ERR_DTYPE, "%s: cpu kernel needs f32, f64, f16 or bf16, got %s", op,
                 ms_desc(t));
}
static int bn_dtype_ok(ms_dtype d) { return d == MS_F32 || d == MS_F64 || ms_is_half(d); }

/* f16/bf16 rows: chunks loaded to float, the f32 row kernels, sums added in double. */
static void row_moments_half(const char *x, ms_dtype d, int64_t n, double k, double *s1,
                             double *s2) {
  float buf[MS_HALF_CHUNK];
  double u = 0, v = 0;
  for (int64_t i = 0; i < n; i += MS_HALF_CHUNK) {
    int64_t m = n - i < MS_HALF_CHUNK ? n - i : MS_HALF_CHUNK;
    double a, b;
    ms_load_f32s(buf, x + 2 * i, 2, d, m);
    row_moments_f32(buf, m, k, &a, &b);
    u += a;
    v += b;
  }
  *s1 = u;
  *s2 = v;
}
static void row_gsums_half(const char *g, const char *x, ms_dtype d, int64_t n, double mean,
                           double *sg, double *sgx) {
  float gb[MS_HALF_CHUNK], xb[MS_HALF_CHUNK];
  double u = 0, v = 0;
  for (int64_t i = 0; i < n; i += MS_HALF_CHUNK) {
    int64_t m = n - i < MS_HALF_CHUNK ? n - i : MS_HALF_CHUNK;
    double a, b;
    ms_load_f32s(gb, g + 2 * i, 2, d, m);
    ms_load_f32s(xb, x + 2 * i, 2, d, m);
    row_gsums_f32(gb, xb, m, mean, &a, &b);
    u += a;
    v += b;
  }
  *sg = u;
  *sgx = v;
}
/* y = a * x + b, or a * g + b * x + k when g is given; y of dtype d like x and g. */
static void row_affine_half(const char *g, const char *x, char *y, ms_dtype d, int64_t n, float a,
                            float b, float k) {
  float gb[MS_HALF_CHUNK], xb[MS_HALF_CHUNK], yb[MS_HALF_CHUNK];
  for (int64_t i = 0; i < n; i += MS_HALF_CHUNK) {
    int64_t m = n - i < MS_HALF_CHUNK ? n - i : MS_HALF_CHUNK;
    ms_load_f32s(xb, x + 2 * i, 2, d, m);
    if (g) {
      ms_load_f32s(gb, g + 2 * i, 2, d, m);
      row_affine2_f32(gb, xb, yb, m, a, b, k);
    } else {
      row_affine_f32(xb, yb, m, a, b);
    }
    ms_store_f32s(y + 2 * i, 2, d, yb, m);
  }
}

/* Sums partials[p] over the n planes of each channel. */
static void per_channel(const double *partial, int64_t n, int64_t c, double scale, double *out) {
  for (int64_t ci = 0; ci < c; ci++) {
    double s = 0;
    for (int64_t ni = 0; ni < n; ni++)
      s += partial[ni * c + ci];
    out[ci] = s * scale;
  }
}

int ms_cpu_bn_stats(ms_context *ctx, const ms_tensor *x, int64_t n, int64_t c, int64_t s,
                    double *mean, double *var) {
  if (!bn_dtype_ok(x->dtype)) return bad_dtype("batch_norm", x);
  int64_t planes = n * c;
  size_t cnt = (size_t)(planes > 0 ? planes : 1);
  double *part = malloc(sizeof(double) * cnt * 2);
  if (!part)
    return ms_fail(MS_ERR_OOM, "batch_norm: out of memory for %lld partial sums",
                   (long long)planes);
  double *part2 = part + cnt;
  const int f32 = x->dtype == MS_F32;
  const char *base = ms_data(x);
  double inv = n * s > 0 ? 1.0 / (double)(n * s) : 0.0;
  /* shift per channel: its first value (mean and var are shift invariant) */
  const int64_t es = ms_dtype_size(x->dtype);
  for (int64_t ci = 0; ci < c; ci++)
    mean[ci] = n * s == 0 ? 0.0 : ms_load_f64(base + ci * s * es, x->dtype);
  const int par = planes > 1 && planes * s >= 4096;
#pragma omp parallel for num_threads(ms_threads(ctx)) if (par) schedule(static)
  for (int64_t p = 0; p < planes; p++) {
    double k = mean[p % c];
    if (ms_is_half(x->dtype))
      row_moments_half(base + p * s * 2, x->dtype, s, k, &part[p], &part2[p]);
    else if (f32)
      row_moments_f32((const float *)base + p * s, s, k, &part[p], &part2[p]);
    else
      row_moments_f64((const double *)base + p * s, s, k, &part[p], &part2[p]);
  }
  double *d1 = var; /* scratch: per-channel mean of (x - k), then the variance */
  per_channel(part, n, c, inv, d1);
  for (int64_t ci = 0; ci < c; ci++) {
    double m1 = d1[ci], m2 = 0;
    for (int64_t ni = 0; ni < n; ni++)
      m2 += part2[ni * c + ci];
    m2 *= inv;
    double v = m2 - m1 * m1;
    mean[ci] += m1;
    var[ci] = v > 0 ? v : 0.0;
  }
  free(part);
  return MS_OK;
}

int ms_cpu_bn_affine(ms_context *ctx, const ms_tensor *g, const ms_tensor *x, int64_t n, int64_t c,
                     int64_t s, const double *a, const double *b, const double *k, ms_tensor *out) {
  if (!bn_dtype_ok(x->dtype)) return bad_dtype("batch_norm", x);
  int64_t planes = n * c;
  const int f32 = x->dtype == MS_F32;
  const char *xb = ms_data(x), *gb = g ? ms_data(g) : NULL;
  char *yb = ms_data(out);
  const int par = planes > 1 && planes * s >= 4096;
#pragma omp parallel for num_threads(ms_threads(ctx)) if (par) schedule(static)
  for (int64_t p = 0; p < planes; p++) {
    int64_t ci = p % c;
    if (ms_is_half(x->dtype)) {
      row_affine_half(gb ? gb + p * s * 2 : NULL, xb + p * s * 2, yb + p * s * 2, x->dtype, s,
                      (float)a[ci], (float)b[ci], k ? (float)k[ci] : 0.0f);
    } else if (f32) {
      const float *xp = (const float *)xb + p * s;
      float *yp = (float *)yb + p * s;
      if (gb)
        row_affine2_f32((const float *)gb + p * s, xp, yp, s, (float)a[ci], (float)b[ci],
                        (float)k[ci]);
      else
        row_affine_f32(xp, yp, s, (float)a[ci], (float)b[ci]);
    } else {
      const double *xp = (const double *)xb + p * s;
      double *yp = (double *)yb + p * s;
      if (gb)
        row_affine2_f64((const double *)gb + p * s, xp, yp, s, a[ci], b[ci], k[ci]);
      else
        row_affine_f64(xp, yp, s, a[ci], b[ci]);
    }
  }
  return MS_OK;
}

int ms_cpu_bn_grad_sums(ms_context *ctx, const ms_tensor *g, const ms_tensor *x, int64_t n,
                        int64_t c, int64_t s, const double *mean, double *sum_g, double *sum_gx) {
  if (!bn_dtype_ok(x->dtype)) return bad_dtype("batch_norm_backward", x);
  int64_t planes = n * c;
  size_t cnt = (size_t)(planes > 0 ? planes : 1);
  double *p1 = malloc(sizeof(double) * cnt * 2);
  if (!p1)
    return ms_fail(MS_ERR_OOM, "batch_norm_backward: out of memory for %lld partial sums",
                   (long long)planes);
  double *p2 = p1 + cnt;
  const int f32 = x->dtype == MS_F32;
  const char *xb = ms_data(x), *gb = ms_data(g);
  const int par = planes > 1 && planes * s >= 4096;
#pragma omp parallel for num_threads(ms_threads(ctx)) if (par) schedule(static)
  for (int64_t p = 0; p < planes; p++) {
    double m = mean[p % c];
    if (ms_is_half(x->dtype))
      row_gsums_half(gb + p * s * 2, xb + p * s * 2, x->dtype, s, m, &p1[p], &p2[p]);
    else if (f32)
      row_gsums_f32((const float *)gb + p * s, (const float *)xb + p * s, s, m, &p1[p], &p2[p]);
    else
      row_gsums_f64((const double *)gb + p * s, (const double *)xb + p * s, s, m, &p1[p], &p2[p]);
  }
  per_channel(p1, n, c, 1.0, sum_g);
  per_channel(p2, n, c, 1.0, sum_gx);
  free(p1);
  return MS_OK;
}

/* ---- the CPU table's entries: statistics, coefficients and running stats in the kernel ---- */

static double load1(const ms_tensor *t, int64_t i) {
  return ms_load_f64(ms_data(t) + i * t->strides[0] * ms_dtype_size(t->dtype), t->dtype);
}
static void store1(ms_tensor *t, int64_t i, double v) {
  ms_store_f64(ms_data(t) + i * t->strides[0] * ms_dtype_size(t->dtype), t->dtype, v);
}

int ms_cpu_batch_norm(ms_context *ctx, const ms_tensor *x, const ms_tensor *weight,
                      const ms_tensor *bias, ms_tensor *running_mean, ms_tensor *running_var,
                      int training, double momentum, double eps, ms_tensor *y, ms_tensor *save_mean,
                      ms_tensor *save_invstd) {
  int64_t n = x->shape[0], c = x->shape[1], s = ms_numel_of(x->shape + 2, x->ndim - 2);
  int64_t count = n * s;
  double *buf = malloc(sizeof(double) * 5 * (size_t)(c > 0 ? c : 1));
  if (!buf) return ms_fail(MS_ERR_OOM, "batch_norm: out of memory (input %s)", ms_desc(x));
  double *mean = buf, *var = buf + c, *a = buf + 2 * c, *b = buf + 3 * c, *inv = buf + 4 * c;
  int st = MS_OK;
  if (training) {
    if ((st = ms_cpu_bn_stats(ctx, x, n, c, s, mean, var))) goto done;
  } else {
    for (int64_t i = 0; i < c; i++) {
      mean[i] = load1(running_mean, i);
      var[i] = load1(running_var, i);
    }
  }
  for (int64_t i = 0; i < c; i++) {
    inv[i] = 1.0 / sqrt(var[i] + eps);
    double w = weight ? load1(weight, i) : 1.0, bi = bias ? load1(bias, i) : 0.0;
    a[i] = w * inv[i];
    b[i] = bi - mean[i] * a[i];
  }
  /* One value per channel (e.g. a 1x1 pooled map at batch 1) leaves the running stats alone. */
  if (training && running_mean && count > 1) {
    double unbias = (double)count / (double)(count - 1);
    for (int64_t i = 0; i < c; i++) {
      store1(running_mean, i, (1 - momentum) * load1(running_mean, i) + momentum * mean[i]);
      store1(running_var, i, (1 - momentum) * load1(running_var, i) + momentum * var[i] * unbias);
    }
  }
  if ((st = ms_cpu_bn_affine(ctx, NULL, x, n, c, s, a, b, NULL, y))) goto done;
  for (int64_t i = 0; i < c; i++) {
    if (save_mean) store1(save_mean, i, mean[i]);
    if (save_invstd) store1(save_invstd, i, inv[i]);
  }
done:
  free(buf);
  return st;
}

int ms_cpu_batch_norm_backward(ms_context *ctx, const ms_tensor *gy, const ms_tensor *x,
                               const ms_tensor *weight, const ms_tensor *save_mean,
                               const ms_tensor *save_invstd, int training, ms_tensor *dx,
                               ms_tensor *dweight, ms_tensor *dbias) {
  int64_t n = x->shape[0], c = x->shape[1], s = ms_numel_of(x->shape + 2, x->ndim - 2);
  double *buf = malloc(sizeof(double) * 7 * (size_t)(c > 0 ? c : 1));
  if (!buf) return ms_fail(MS_ERR_OOM, "batch_norm_backward: out of memory (input %s)", ms_desc(x));
  double *mean = buf, *inv = buf + c, *sg = buf + 2 * c, *sgx = buf + 3 * c;
  double *k1 = buf + 4 * c, *k2 = buf + 5 * c, *k3 = buf + 6 * c;
  int st = MS_OK;
  for (int64_t i = 0; i < c; i++) {
    mean[i] = load1(save_mean, i);
    inv[i] = load1(save_invstd, i);
  }
  const int need_sums = training || dweight || dbias;
  if (need_sums && (st = ms_cpu_bn_grad_sums(ctx, gy, x, n, c, s, mean, sg, sgx))) goto done;
  if (dx) {
    double cnt = (double)(n * s);
    for (int64_t i = 0; i < c; i++) {
      double w = weight ? load1(weight, i) : 1.0;
      k1[i] = w * inv[i];
      k2[i] = training && cnt > 0 ? -w * inv[i] * inv[i] * inv[i] * sgx[i] / cnt : 0.0;
      k3[i] = training && cnt > 0 ? -k2[i] * mean[i] - w * inv[i] * sg[i] / cnt : 0.0;
    }
    if (training)
      st = ms_cpu_bn_affine(ctx, gy, x, n, c, s, k1, k2, k3, dx);
    else
      st = ms_cpu_bn_affine(ctx, NULL, gy, n, c, s, k1, k3, NULL, dx);
    if (st) goto done;
  }
  for (int64_t i = 0; i < c; i++) {
    if (dweight) store1(dweight, i, sgx[i] * inv[i]); /* sum(g * xhat) */
    if (dbias) store1(dbias, i, sg[i]);
  }
done:
  free(buf);
  return st;
}
