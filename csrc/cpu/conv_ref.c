/* conv_ref.c: conv2d by im2col + BLAS gemm (the f64 path, and the f32 fallback when oneDNN can't).
 */
#include <cblas.h>
#include <stdlib.h>

#include "conv_cpu.h"

#define DEFINE_CONV_REF(T, SUF, GEMM)                                                              \
  static void im2col_##SUF(const ms_conv_geom *g, int64_t cg, const T *x, T *col) {                \
    int64_t ohw = g->oh * g->ow;                                                                   \
    for (int64_t c = 0; c < cg; c++)                                                               \
      for (int64_t i = 0; i < g->kh; i++)                                                          \
        for (int64_t j = 0; j < g->kw; j++) {                                                      \
          T *row = col + ((c * g->kh + i) * g->kw + j) * ohw;                                      \
          const T *xc = x + c * g->h * g->w;                                                       \
          for (int64_t oy = 0; oy < g->oh; oy++) {                                                 \
            int64_t iy = oy * g->sh - g->ph + i * g->dh;                                           \
            T *r = row + oy * g->ow;                                                               \
            if (iy < 0 || iy >= g->h) {                                                            \
              for (int64_t ox = 0; ox < g->ow; ox++)                                               \
                r[ox] = 0;                                                                         \
              continue;                                                                            \
            }                                                                                      \
            for (int64_t ox = 0; ox < g->ow; ox++) {                                               \
              int64_t ix = ox * g->sw - g->pw + j * g->dw;                                         \
              r[ox] = (ix >= 0 && ix < g->w) ? xc[iy * g->w + ix] : (T)0;                          \
            }                                                                                      \
          }                                                                                        \
        }                                                                                          \
  }                                                                                                \
  static void col2im_##SUF(const ms_conv_geom *g, int64_t cg, const T *col, T *x) {                \
    int64_t ohw = g->oh * g->ow;                                                                   \
    for (int64_t c = 0; c < cg; c++)                                                               \
      for (int64_t i = 0; i < g->kh; i++)                                                          \
        for (int64_t j = 0; j < g->kw; j++) {                                                      \
          const T *row = col + ((c * g->kh + i) * g->kw + j) * ohw;                                \
          T *xc = x + c * g->h * g->w;                                                             \
          for (int64_t oy = 0; oy < g->oh; oy++) {                                                 \
            int64_t iy = oy * g->sh - g->ph + i * g->dh;                                           \
            if (iy < 0 || iy >= g->h) continue;                                                    \
            const T *r = row + oy * g->ow;                                                         \
            for (int64_t ox = 0; ox < g->ow; ox++) {                                               \
              int64_t ix = ox * g->sw - g->pw + j * g->dw;                                         \
              if (ix >= 0 && ix < g->w) xc[iy * g->w + ix] += r[ox];                               \
            }                                                                                      \
          }                                                                                        \
        }                                                                                          \
  }                                                                                                \
  static int fwd_##SUF(const ms_conv_geom *g, const T *x, const T *w, const T *b, T *y) {          \
    int64_t cg = g->c / g->g, og = g->o / g->g, K = cg * g->kh * g->kw, ohw = g->oh * g->ow;       \
    T *col = malloc(sizeof(T) * (size_t)(K * ohw));                                                \
    if (!col) return ms_fail(MS_ERR_OOM, "conv2d: out of host memory for the im2col buffer");      \
    for (int64_t n = 0; n < g->n; n++)                                                             \
      for (int64_t gi = 0; gi < g->g; gi++) {                                                      \
        const T *xg = x + (n * g->c + gi * cg) * g->h * g->w;                                      \
        T *yg = y + (n * g->o + gi * og) * ohw;                                                    \
        im2col_##SUF(g, cg, xg, col);                                                              \
        GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, og, ohw, K, 1, w + gi * og * K, K, col,    \
             ohw, 0, yg, ohw);                                                                     \
        if (b)                                                                                     \
          for (int64_t o = 0; o < og; o++)                                                         \
            for (int64_t p = 0; p < ohw; p++)                                                      \
              yg[o * ohw + p] += b[gi * og + o];                                                   \
      }                                                                                            \
    free(col);                                                                                     \
    return MS_OK;                                                                                  \
  }                                                                                                \
  static int bwd_##SUF(const ms_conv_geom *g, const T *gy, const T *x, const T *w, T *dx, T *dw) { \
    int64_t cg = g->c / g->g, og = g->o / g->g, K = cg * g->kh * g->kw, ohw = g->oh * g->ow;       \
    T *col = malloc(sizeof(T) * (size_t)(K * ohw));                                                \
    if (!col) return ms_fail(MS_ERR_OOM, "conv2d_backward: out of host memory for im2col");        \
    if (dx) memset(dx, 0, sizeof(T) * (size_t)(g->n * g->c * g->h * g->w));                        \
    for (int64_t n = 0; n < g->n; n++)                                                             \
      for (int64_t gi = 0; gi < g->g; gi++) {                                                      \
        const T *gyg = gy + (n * g->o + gi * og) * ohw;                                            \
        if (dw) {                                                                                  \
          im2col_##SUF(g, cg, x + (n * g->c + gi * cg) * g->h * g->w, col);                        \
          GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, og, K, ohw, 1, gyg, ohw, col, ohw,         \
               n == 0 ? 0 : 1, dw + gi * og * K, K);                                               \
        }                                                                                          \
        if (dx) {                                                                                  \
          GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, K, ohw, og, 1, w + gi * og * K, K, gyg,    \
               ohw, 0, col, ohw);                                                                  \
          col2im_##SUF(g, cg, col, dx + (n * g->c + gi * cg) * g->h * g->w);                       \
        }                                                                                          \
      }                                                                                            \
    if (dw && g->n == 0) memset(dw, 0, sizeof(T) * (size_t)(g->o * K));                            \
    free(col);                                                                                     \
    return MS_OK;                                                                                  \
  }

DEFINE_CONV_REF(double, f64, cblas_dgemm)
DEFINE_CONV_REF(float, f32, cblas_sgemm)

int ms_cpu_conv2d_fwd_ref(ms_context *ctx, const ms_conv_geom *g, const ms_tensor *x,
                          const ms_tensor *w, const ms_tensor *b, ms_tensor *y) {
  (void)ctx;
  if (x->dtype == MS_F64)
    return fwd_f64(g, (const double *)ms_data(x), (const double *)ms_data(w),
                   b ? (const double *)ms_data(b) : NULL, (double *)ms_data(y));
  if (x->dtype == MS_F32)
    return fwd_f32(g, (const float *)ms_data(x), (const float *)ms_data(w),
                   b ? (const float *)ms_data(b) : NULL, (float *)ms_data(y));
  return ms_fail(MS_ERR_DTYPE, "conv2d: reference kernel takes f64 or f32, got %s", ms_desc(x));
}

int ms_cpu_conv2d_bwd_ref(ms_context *ctx, const ms_conv_geom *g, const ms_tensor *gy,
                          const ms_tensor *x, const ms_tensor *w, ms_tensor *dx, ms_tensor *dw,
                          ms_tensor *db) {
  int st = MS_OK;
  if (dx || dw) {
    if (x->dtype == MS_F64)
      st = bwd_f64(g, (const double *)ms_data(gy), (const double *)ms_data(x),
                   (const double *)ms_data(w), dx ? (double *)ms_data(dx) : NULL,
                   dw ? (double *)ms_data(dw) : NULL);
    else if (x->dtype == MS_F32)
      st = bwd_f32(g, (const float *)ms_data(gy), (const float *)ms_data(x),
                   (const float *)ms_data(w), dx ? (float *)ms_data(dx) : NULL,
                   dw ? (float *)ms_data(dw) : NULL);
    else
      return ms_fail(MS_ERR_DTYPE, "conv2d_backward: reference kernel takes f64 or f32, got %s",
                     ms_desc(x));
  }
  if (!st && db) ms_cpu_conv2d_bias_grad(ctx, g, gy, db);
  return st;
}

void ms_cpu_conv2d_bias_grad(ms_context *ctx, const ms_conv_geom *g, const ms_tensor *gy,
                             ms_tensor *db) {
  int64_t ohw = g->oh * g->ow, O = g->o, N = g->n;
  int is64 = gy->dtype == MS_F64;
  const char *src = ms_data(gy);
  char *dst = ms_data(db);
#pragma omp parallel for num_threads(ms_threads(ctx)) schedule(static)
  for (int64_t o = 0; o < O; o++) {
    double s = 0;
    for (int64_t n = 0; n < N; n++) {
      int64_t base = (n * O + o) * ohw;
      if (is64) {
        const double *p = (const double *)src + base;
        for (int64_t i = 0; i < ohw; i++)
          s += p[i];
      } else {
        const float *p = (const float *)src + base;
        float acc[16] = {0};
        int64_t i = 0;
        for (; i + 16 <= ohw; i += 16)
          for (int k = 0; k < 16; k++)
            acc[k] += p[i + k];
        for (; i < ohw; i++)
          acc[0] += p[i];
        for (int k = 0; k < 16; k++)
          s += acc[k];
      }
    }
    if (is64)
      ((double *)dst)[o] = s;
    else
      ((float *)dst)[o] = (float)s;
  }
}
