/* softmax.c: CPU softmax / log_softmax forward and backward over [outer, d, inner] layouts. */
/* FP exceptions are never inspected: letting GCC ignore them lets it vectorise the
 * clamps and selects inside ms_fast_expf. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include <math.h>

#include "basic_kernels.h"
#include "mcsl_kernels.h"

/* Positions handled together when the softmax dim is strided (inner > 1, e.g. NCHW dim 1):
 * the loops then run over contiguous positions and vectorise. */
#define BLK 256

static double exp_f64(double x) { return exp(x); }
static double log_f64(double x) { return log(x); }
static float log_f32(float x) { return logf(x); }

/* One set of kernels per float type: rows (inner == 1) and blocks of positions. */
#define SOFTMAX_KERNELS(T, SUF, EXP, LOG)                                                          \
  static void fwd_rows_##SUF(const T *x, T *y, int64_t d, int log) {                               \
    T mx = x[0];                                                                                   \
    _Pragma("omp simd reduction(max : mx)") for (int64_t j = 1; j < d; j++) mx =                   \
        x[j] > mx ? x[j] : mx;                                                                     \
    T sum = 0;                                                                                     \
    if (log) {                                                                                     \
      _Pragma("omp simd reduction(+ : sum)") for (int64_t j = 0; j < d; j++) sum +=                \
          EXP(x[j] - mx);                                                                          \
      T lse = mx + (T)LOG(sum);                                                                    \
      for (int64_t j = 0; j < d; j++)                                                              \
        y[j] = x[j] - lse;                                                                         \
    } else {                                                                                       \
      _Pragma("omp simd reduction(+ : sum)") for (int64_t j = 0; j < d; j++) {                     \
        T e = EXP(x[j] - mx);                                                                      \
        y[j] = e;                                                                                  \
        sum += e;                                                                                  \
      }                                                                                            \
      T inv = (T)1 / sum;                                                                          \
      for (int64_t j = 0; j < d; j++)                                                              \
        y[j] *= inv;                                                                               \
    }                                                                                              \
  }                                                                                                \
  static void fwd_block_##SUF(const T *x, T *y, int64_t d, int64_t inner, int64_t nb, int log) {   \
    T mx[BLK], sm[BLK];                                                                            \
    for (int64_t j = 0; j < nb; j++)                                                               \
      mx[j] = x[j], sm[j] = 0;                                                                     \
    for (int64_t c = 1; c < d; c++) {                                                              \
      const T *xc = x + c * inner;                                                                 \
      for (int64_t j = 0; j < nb; j++)                                                             \
        mx[j] = xc[j] > mx[j] ? xc[j] : mx[j];                                                     \
    }                                                                                              \
    if (log) {                                                                                     \
      for (int64_t c = 0; c < d; c++) {                                                            \
        const T *xc = x + c * inner;                                                               \
        for (int64_t j = 0; j < nb; j++)                                                           \
          sm[j] += EXP(xc[j] - mx[j]);                                                             \
      }                                                                                            \
      for (int64_t j = 0; j < nb; j++)                                                             \
        mx[j] += (T)LOG(sm[j]);                                                                    \
      for (int64_t c = 0; c < d; c++) {                                                            \
        const T *xc = x + c * inner;                                                               \
        T *yc = y + c * inner;                                                                     \
        for (int64_t j = 0; j < nb; j++)                                                           \
          yc[j] = xc[j] - mx[j];                                                                   \
      }                                                                                            \
    } else {                                                                                       \
      for (int64_t c = 0; c < d; c++) {                                                            \
        const T *xc = x + c * inner;                                                               \
        T *yc = y + c * inner;                                                                     \
        for (int64_t j = 0; j < nb; j++) {                                                         \
          T e = EXP(xc[j] - mx[j]);                                                                \
          yc[j] = e;                                                                               \
          sm[j] += e;                                                                              \
        }                                                                                          \
      }                                                                                            \
      for (int64_t j = 0; j < nb; j++)                                                             \
        sm[j] = (T)1 / sm[j];                                                                      \
      for (int64_t c = 0; c < d; c++) {                                                            \
        T *yc = y + c * inner;                                                                     \
        for (int64_t j = 0; j < nb; j++)                                                           \
          yc[j] *= sm[j];                                                                          \
      }                                                                                            \
    }                                                                                              \
  }                                                                                                \
  /* softmax: dx = y * (g - sum(g * y)); log: dx = g - exp(y) * sum(g). */                         \
  static void bwd_rows_##SUF(const T *g, const T *y, T *dx, int64_t d, int log) {                  \
    T s = 0;                                                                                       \
    if (log) {                                                                                     \
      _Pragma("omp simd reduction(+ : s)") for (int64_t j = 0; j < d; j++) s += g[j];              \
      for (int64_t j = 0; j < d; j++)                                                              \
        dx[j] = g[j] - EXP(y[j]) * s;                                                              \
    } else {                                                                                       \
      _Pragma("omp simd reduction(+ : s)") for (int64_t j = 0; j < d; j++) s += g[j] * y[j];       \
      for (int64_t j = 0; j < d; j++)                                                              \
        dx[j] = y[j] * (g[j] - s);                                                                 \
    }                                                                                              \
  }                                                                                                \
  static void bwd_block_##SUF(const T *g, const T *y, T *dx, int64_t d, int64_t inner, int64_t nb, \
                              int log) {                                                           \
    T s[BLK];                                                                                      \
    for (int64_t j = 0; j < nb; j++)                                                               \
      s[j] = 0;                                                                                    \
    for (int64_t c = 0; c < d; c++) {                                                              \
      const T *gc = g + c * inner, *yc = y + c * inner;                                            \
      if (log)                                                                                     \
        for (int64_t j = 0; j < nb; j++)                                                           \
          s[j] += gc[j];                                                                           \
      else                                                                                         \
        for (int64_t j = 0; j < nb; j++)                                                           \
          s[j] += gc[j] * yc[j];                                                                   \
    }                                                                                              \
    for (int64_t c = 0; c < d; c++) {                                                              \
      const T *gc = g + c * inner, *yc = y + c * inner;                                            \
      T *dc = dx + c * inner;                                                                      \
      if (log)                                                                                     \
        for (int64_t j = 0; j < nb; j++)                                                           \
          dc[j] = gc[j] - EXP(yc[j]) * s[j];                                                       \
      else                                                                                         \
        for (int64_t j = 0; j < nb; j++)                                                           \
          dc[j] = yc[j] * (gc[j] - s[j]);                                                          \
    }                                                                                              \
  }                                                                                                \
  static void run_##SUF(ms_context *ctx, const T *a, const T *b, T *o, int64_t outer, int64_t d,   \
                        int64_t inner, int log, int backward) {                                    \
    int64_t nblk = (inner + BLK - 1) / BLK, tasks = outer * nblk;                                  \
    int par = outer * d * inner > MS_GRAIN / 4;                                                    \
    _Pragma(                                                                                       \
        "omp parallel for num_threads(ms_threads(ctx)) if (par) schedule(static)") for (int64_t    \
                                                                                            t = 0; \
                                                                                        t < tasks; \
                                                                                        t++) {     \
      int64_t o_i = t / nblk, j0 = (t % nblk) * BLK;                                               \
      int64_t nb = inner - j0 < BLK ? inner - j0 : BLK;                                            \
      int64_t base = o_i * d * inner + j0;                                                         \
      if (inner == 1) {                                                                            \
        if (backward)                                                                              \
          bwd_rows_##SUF(a + base, b + base, o + base, d, log);                                    \
        else                                                                                       \
          fwd_rows_##SUF(a + base, o + base, d, log);                                              \
      } else if (backward) {                                                                       \
        bwd_block_##SUF(a + base, b + base, o + base, d, inner, nb, log);                          \
      } else {                                                                                     \
        fwd_block_##SUF(a + base, o + base, d, inner, nb, log);                                    \
      }                                                                                            \
    }                                                                                              \
  }

SOFTMAX_KERNELS(float, f32, ms_fast_expf, log_f32)
SOFTMAX_KERNELS(double, f64, exp_f64, log_f64)

/* Half inputs: compute in f32 temporaries and round the result once. */
static int via_f32(ms_context *ctx, const ms_tensor *a, const ms_tensor *b, int64_t outer,
                   int64_t d, int64_t inner, int log, int backward, ms_tensor *o) {
  ms_tensor *af = NULL, *bf = NULL, *of = NULL;
  int st = ms_tensor_new(a->shape, a->ndim, MS_F32, MS_CPU, 0, &af);
  if (!st) st = ms_cpu_copy(ctx, af, a);
  if (!st && b) st = ms_tensor_new(b->shape, b->ndim, MS_F32, MS_CPU, 0, &bf);
  if (!st && b) st = ms_cpu_copy(ctx, bf, b);
  if (!st) st = ms_tensor_new(o->shape, o->ndim, MS_F32, MS_CPU, 0, &of);
  if (!st) {
    run_f32(ctx, (const float *)ms_data(af), bf ? (const float *)ms_data(bf) : NULL,
            (float *)ms_data(of), outer, d, inner, log, backward);
    st = ms_cpu_copy(ctx, o, of);
  }
  ms_tensor_free(af);
  ms_tensor_free(bf);
  ms_tensor_free(of);
  return st;
}

static int dispatch(ms_context *ctx, const ms_tensor *a, const ms_tensor *b, int64_t outer,
                    int64_t d, int64_t inner, int log, int backward, ms_tensor *o) {
  if (outer * d * inner == 0) return MS_OK;
  switch (o->dtype) {
  case MS_F32:
    run_f32(ctx, (const float *)ms_data(a), b ? (const float *)ms_data(b) : NULL,
            (float *)ms_data(o), outer, d, inner, log, backward);
    return MS_OK;
  case MS_F64:
    run_f64(ctx, (const double *)ms_data(a), b ? (const double *)ms_data(b) : NULL,
            (double *)ms_data(o), outer, d, inner, log, backward);
    return MS_OK;
  case MS_F16:
  case MS_BF16: return via_f32(ctx, a, b, outer, d, inner, log, backward, o);
  default: return ms_fail(MS_ERR_DTYPE, "softmax: unsupported dtype %s", ms_dtype_name(o->dtype));
  }
}

int ms_cpu_softmax(ms_context *ctx, const ms_tensor *x, int64_t outer, int64_t d, int64_t inner,
                   int log, ms_tensor *y) {
  return dispatch(ctx, x, NULL, outer, d, inner, log, 0, y);
}

int ms_cpu_softmax_backward(ms_context *ctx, const ms_tensor *g, const ms_tensor *y, int64_t outer,
                            int64_t d, int64_t inner, int log, ms_tensor *dx) {
  return dispatch(ctx, g, y, outer, d, inner, log, 1, dx);
}
