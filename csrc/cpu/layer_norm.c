/* layer_norm.c: CPU kernels of layer normalization over the last K elements of each row. */
#include <math.h>
#include <stdlib.h>

#include "npr_kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Row kernels, written once for float and double; statistics accumulate in double. */
#define MS_LN_ROW_KERNELS(T, SUF)                                                                  \
  static void ln_row_##SUF(const T *x, T *y, int64_t k, const T *w, const T *b, double eps,        \
                           T *mean_out, T *rstd_out) {                                             \
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s = 0;                                               \
    int64_t i = 0;                                                                                 \
    for (; i + 8 <= k; i += 8)                                                                     \
      for (int j = 0; j < 8; j++)                                                                  \
        acc[j] += (double)x[i + j];                                                                \
    for (; i < k; i++)                                                                             \
      s += (double)x[i];                                                                           \
    for (int j = 0; j < 8; j++)                                                                    \
      s += acc[j];                                                                                 \
    double m = s / (double)k, v = 0;                                                               \
    for (int j = 0; j < 8; j++)                                                                    \
      acc[j] = 0;                                                                                  \
    for (i = 0; i + 8 <= k; i += 8)                                                                \
      for (int j = 0; j < 8; j++) {                                                                \
        double d = (double)x[i + j] - m;                                                           \
        acc[j] += d * d;                                                                           \
      }                                                                                            \
    for (; i < k; i++) {                                                                           \
      double d = (double)x[i] - m;                                                                 \
      v += d * d;                                                                                  \
    }                                                                                              \
    for (int j = 0; j < 8; j++)                                                                    \
      v += acc[j];                                                                                 \
    double r = 1.0 / sqrt(v / (double)k + eps);                                                    \
    T mt = (T)m, rt = (T)r;                                                                        \
    if (w && b)                                                                                    \
      for (i = 0; i < k; i++)                                                                      \
        y[i] = (x[i] - mt) * rt * w[i] + b[i];                                                     \
    else if (w)                                                                                    \
      for (i = 0; i < k; i++)                                                                      \
        y[i] = (x[i] - mt) * rt * w[i];                                                            \
    else if (b)                                                                                    \
      for (i = 0; i < k; i++)                                                                      \
        y[i] = (x[i] - mt) * rt + b[i];                                                            \
    else                                                                                           \
      for (i = 0; i < k; i++)                                                                      \
        y[i] = (x[i] - mt) * rt;                                                                   \
    *mean_out = mt;                                                                                \
    *rstd_out = rt;                                                                                \
  }                                                                                                \
  /* dx = rstd * (g*w - mean(g*w) - xhat * mean(g*w*xhat)); dw += g*xhat; db += g */               \
  static void ln_row_back_##SUF(const T *g, const T *x, int64_t k, const T *w, double m, double r, \
                                T *dx, double *dw, double *db) {                                   \
    if (dx) {                                                                                      \
      double s1 = 0, s2 = 0;                                                                       \
      for (int64_t i = 0; i < k; i++) {                                                            \
        double gw = (double)g[i] * (w ? (double)w[i] : 1.0);                                       \
        s1 += gw;                                                                                  \
        s2 += gw * ((double)x[i] - m);                                                             \
      }                                                                                            \
      T a = (T)(s1 / (double)k), c = (T)(s2 * r * r / (double)k), mt = (T)m, rt = (T)r;            \
      if (w)                                                                                       \
        for (int64_t i = 0; i < k; i++)                                                            \
          dx[i] = rt * (g[i] * w[i] - a - (x[i] - mt) * c);                                        \
      else                                                                                         \
        for (int64_t i = 0; i < k; i++)                                                            \
          dx[i] = rt * (g[i] - a - (x[i] - mt) * c);                                               \
    }                                                                                              \
    if (dw)                                                                                        \
      for (int64_t i = 0; i < k; i++)                                                              \
        dw[i] += (double)g[i] * (((double)x[i] - m) * r);                                          \
    if (db)                                                                                        \
      for (int64_t i = 0; i < k; i++)                                                              \
        db[i] += (double)g[i];                                                                     \
  }

MS_LN_ROW_KERNELS(float, f32)
MS_LN_ROW_KERNELS(double, f64)

int ms_cpu_layer_norm(ms_context *ctx, const ms_tensor *x, int64_t m, int64_t k, const ms_tensor *w,
                      const ms_tensor *b, double eps, ms_tensor *out, ms_tensor *mean,
                      ms_tensor *rstd) {
  const int f32 = x->dtype == MS_F32;
  if (!f32 && x->dtype != MS_F64)
    return ms_fail(MS_ERR_DTYPE, "layer_norm: cpu kernel needs f32 or f64, got %s", ms_desc(x));
  const char *xb = ms_data(x), *wb = w ? ms_data(w) : NULL, *bb = b ? ms_data(b) : NULL;
  char *yb = ms_data(out), *mb = ms_data(mean), *rb = ms_data(rstd);
  const int par = m > 1 && m * k >= 4096;
#pragma omp parallel for num_threads(ms_threads(ctx)) if (par) schedule(static)
  for (int64_t r = 0; r < m; r++) {
    if (f32)
      ln_row_f32((const float *)xb + r * k, (float *)yb + r * k, k, (const float *)wb,
                 (const float *)bb, eps, (float *)mb + r, (float *)rb + r);
    else
      ln_row_f64((const double *)xb + r * k, (double *)yb + r * k, k, (const double *)wb,
                 (const double *)bb, eps, (double *)mb + r, (double *)rb + r);
  }
  return MS_OK;
}

int ms_cpu_layer_norm_backward(ms_context *ctx, const ms_tensor *g, const ms_tensor *x, int64_t m,
                               int64_t k, const ms_tensor *w, const ms_tensor *mean,
                               const ms_tensor *rstd, ms_tensor *dx, ms_tensor *dw, ms_tensor *db) {
  const int f32 = x->dtype == MS_F32;
  if (!f32 && x->dtype != MS_F64)
    return ms_fail(MS_ERR_DTYPE, "layer_norm_backward: cpu kernel needs f32 or f64, got %s",
                   ms_desc(x));
  const int par = m > 1 && m * k >= 4096;
  const int nt = par ? ms_threads(ctx) : 1;
  const int need_wb = dw || db;
  /* Per-thread partial sums of dw and db (double), reduced at the end. */
  double *part = NULL;
  if (need_wb) {
    part = calloc((size_t)nt * 2 * (size_t)(k > 0 ? k : 1), sizeof(double));
    if (!part)
      return ms_fail(MS_ERR_OOM, "layer_norm_backward: out of memory for %d x %lld partials", nt,
                     (long long)k);
  }
  const char *gb = ms_data(g), *xb = ms_data(x), *wb = w ? ms_data(w) : NULL;
  const char *mb = ms_data(mean), *rb = ms_data(rstd);
  char *dxb = dx ? ms_data(dx) : NULL;
#pragma omp parallel num_threads(nt) if (par)
  {
    int tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    double *pw = dw ? part + (size_t)tid * 2 * (size_t)k : NULL;
    double *pb = db ? part + ((size_t)tid * 2 + 1) * (size_t)k : NULL;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < m; r++) {
      if (f32)
        ln_row_back_f32((const float *)gb + r * k, (const float *)xb + r * k, k, (const float *)wb,
                        ((const float *)mb)[r], ((const float *)rb)[r],
                        dxb ? (float *)dxb + r * k : NULL, pw, pb);
      else
        ln_row_back_f64((const double *)gb + r * k, (const double *)xb + r * k, k,
                        (const double *)wb, ((const double *)mb)[r], ((const double *)rb)[r],
                        dxb ? (double *)dxb + r * k : NULL, pw, pb);
    }
  }
  for (int which = 0; which < 2; which++) {
    ms_tensor *t = which == 0 ? dw : db;
    if (!t) continue;
    char *tb = ms_data(t);
    for (int64_t i = 0; i < k; i++) {
      double s = 0;
      for (int th = 0; th < nt; th++)
        s += part[((size_t)th * 2 + (size_t)which) * (size_t)k + i];
      if (f32)
        ((float *)tb)[i] = (float)s;
      else
        ((double *)tb)[i] = s;
    }
  }
  free(part);
  return MS_OK;
}
