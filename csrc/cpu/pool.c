/* pool.c: CPU kernels of 2-d max, average and adaptive average pooling (NCHW planes). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "half_loop.h"
#include "npr_kernels.h"

#ifdef _OPENMP
#include <omp.h>
#else
static int omp_get_thread_num(void) { return 0; }
#endif

static inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

/* Divisor of an average window (PyTorch): the window clipped to the padded input, or
 * to the input itself when padding is not counted. Writes the clipped input window. */
static int64_t avg_window(int64_t o, int k, int s, int pad, int64_t in, int64_t *lo, int64_t *hi) {
  int64_t a = o * s - pad, b = imin(a + k, in + pad);
  int64_t padded = b - a;
  *lo = imax(a, 0);
  *hi = imin(b, in);
  return padded;
}

/* 1 / (columns counted) of each output column's window (0 for an empty window). */
static void col_factors(int64_t w, int64_t ow, const ms_pool2d_params *p, double *cinv) {
  for (int64_t j = 0; j < ow; j++) {
    int64_t ws, we;
    int64_t pw = avg_window(j, p->kernel[1], p->stride[1], p->padding[1], w, &ws, &we);
    int64_t cc = p->count_include_pad ? pw : we - ws;
    cinv[j] = cc > 0 ? 1.0 / (double)cc : 0.0;
  }
}

/* Doubles of scratch the average kernels need per thread: the padded row, acc, cinv. */
static size_t avg_scratch(int64_t ow, const ms_pool2d_params *p) {
  int64_t wp = (ow > 0 ? ow - 1 : 0) * p->stride[1] + p->kernel[1];
  return (size_t)(wp + 2 * (ow > 0 ? ow : 1));
}

/* Plane kernels, written once for float and double (sums accumulate in double). */
#define MS_POOL_PLANE_KERNELS(T, SUF)                                                              \
  static void max_plane_##SUF(const T *x, int64_t h, int64_t w, T *y, int64_t *idx, int64_t oh,    \
                              int64_t ow, const ms_pool2d_params *p) {                             \
    for (int64_t i = 0; i < oh; i++) {                                                             \
      int64_t hs = i * p->stride[0] - p->padding[0];                                               \
      int64_t he = imin(hs + p->kernel[0], h);                                                     \
      hs = imax(hs, 0);                                                                            \
      for (int64_t j = 0; j < ow; j++) {                                                           \
        int64_t ws = j * p->stride[1] - p->padding[1];                                             \
        int64_t we = imin(ws + p->kernel[1], w);                                                   \
        ws = imax(ws, 0);                                                                          \
        T best = -INFINITY;                                                                        \
        int64_t bi = hs * w + ws;                                                                  \
        for (int64_t a = hs; a < he; a++)                                                          \
          for (int64_t b = ws; b < we; b++) {                                                      \
            T v = x[a * w + b];                                                                    \
            if (v > best || isnan(v)) {                                                            \
              best = v;                                                                            \
              bi = a * w + b;                                                                      \
              if (isnan(v)) goto found_##SUF;                                                      \
            }                                                                                      \
          }                                                                                        \
        found_##SUF : y[i * ow + j] = best;                                                        \
        idx[i * ow + j] = bi;                                                                      \
      }                                                                                            \
    }                                                                                              \
  }                                                                                                \
  /* Average pooling is separable: per output row, the window's input rows are summed              \
   * into a zero-padded double row (contiguous, vectorised), then every output sums its k          \
   * columns of it. The divisor is a product (rows counted) x (columns counted), so it is          \
   * applied as rinv * cinv[j]. Backward mirrors it: outputs scatter g / div into the padded       \
   * row, which is then added to the window's dx rows. sc: avg_scratch(w, ow, k) doubles. */       \
  static void avg_plane_##SUF(const T *x, int64_t h, int64_t w, T *y, int64_t oh, int64_t ow,      \
                              const ms_pool2d_params *p, double *sc) {                             \
    int k = p->kernel[1], st = p->stride[1], pad = p->padding[1];                                  \
    int64_t wp = (ow - 1) * st + k;                                                                \
    double *row = sc, *acc = sc + wp, *cinv = acc + ow;                                            \
    col_factors(w, ow, p, cinv);                                                                   \
    for (int64_t b = 0; b < wp; b++)                                                               \
      row[b] = 0;                                                                                  \
    double *rin = row + pad;                                                                       \
    int64_t wn = imin(w, wp - pad);                                                                \
    for (int64_t i = 0; i < oh; i++) {                                                             \
      int64_t hs, he;                                                                              \
      int64_t ph = avg_window(i, p->kernel[0], p->stride[0], p->padding[0], h, &hs, &he);          \
      int64_t rc = p->count_include_pad ? ph : he - hs;                                            \
      double rinv = rc > 0 ? 1.0 / (double)rc : 0.0;                                               \
      for (int64_t b = 0; b < wn; b++)                                                             \
        rin[b] = 0;                                                                                \
      for (int64_t a = hs; a < he; a++) {                                                          \
        const T *xr = x + a * w;                                                                   \
        for (int64_t b = 0; b < wn; b++)                                                           \
          rin[b] += (double)xr[b];                                                                 \
      }                                                                                            \
      for (int64_t j = 0; j < ow; j++)                                                             \
        acc[j] = 0;                                                                                \
      for (int t = 0; t < k; t++)                                                                  \
        for (int64_t j = 0; j < ow; j++)                                                           \
          acc[j] += row[j * st + t];                                                               \
      T *yr = y + i * ow;                                                                          \
      for (int64_t j = 0; j < ow; j++)                                                             \
        yr[j] = (T)(acc[j] * (rinv * cinv[j]));                                                    \
    }                                                                                              \
  }                                                                                                \
  static void avg_plane_back_##SUF(const T *g, int64_t h, int64_t w, T *dx, int64_t oh,            \
                                   int64_t ow, const ms_pool2d_params *p, double *sc) {            \
    int k = p->kernel[1], st = p->stride[1], pad = p->padding[1];                                  \
    int64_t wp = (ow - 1) * st + k;                                                                \
    double *row = sc, *acc = sc + wp, *cinv = acc + ow;                                            \
    col_factors(w, ow, p, cinv);                                                                   \
    double *rin = row + pad;                                                                       \
    int64_t wn = imin(w, wp - pad);                                                                \
    memset(dx, 0, sizeof(T) * (size_t)(h * w));                                                    \
    for (int64_t i = 0; i < oh; i++) {                                                             \
      int64_t hs, he;                                                                              \
      int64_t ph = avg_window(i, p->kernel[0], p->stride[0], p->padding[0], h, &hs, &he);          \
      int64_t rc = p->count_include_pad ? ph : he - hs;                                            \
      if (he <= hs || rc <= 0) continue;                                                           \
      double rinv = 1.0 / (double)rc;                                                              \
      const T *gr = g + i * ow;                                                                    \
      for (int64_t j = 0; j < ow; j++)                                                             \
        acc[j] = (double)(T)((double)gr[j] * (rinv * cinv[j]));                                    \
      for (int64_t b = 0; b < wp; b++)                                                             \
        row[b] = 0;                                                                                \
      for (int t = 0; t < k; t++)                                                                  \
        for (int64_t j = 0; j < ow; j++)                                                           \
          row[j * st + t] += acc[j];                                                               \
      for (int64_t a = hs; a < he; a++) {                                                          \
        T *dr = dx + a * w;                                                                        \
        for (int64_t b = 0; b < wn; b++)                                                           \
          dr[b] = (T)((double)dr[b] + rin[b]);                                                     \
      }                                                                                            \
    }                                                                                              \
  }                                                                                                \
  static void adaptive_plane_##SUF(const T *x, int64_t h, int64_t w, T *y, int64_t oh,             \
                                   int64_t ow) {                                                   \
    for (int64_t i = 0; i < oh; i++) {                                                             \
      int64_t hs = i * h / oh, he = ((i + 1) * h + oh - 1) / oh;                                   \
      for (int64_t j = 0; j < ow; j++) {                                                           \
        int64_t ws = j * w / ow, we = ((j + 1) * w + ow - 1) / ow;                                 \
        double s = 0;                                                                              \
        for (int64_t a = hs; a < he; a++)                                                          \
          for (int64_t b = ws; b < we; b++)                                                        \
            s += (double)x[a * w + b];                                                             \
        y[i * ow + j] = (T)(s / (double)((he - hs) * (we - ws)));                                  \
      }                                                                                            \
    }                                                                                              \
  }                                                                                                \
  static void adaptive_plane_back_##SUF(const T *g, int64_t h, int64_t w, T *dx, int64_t oh,       \
                                        int64_t ow) {                                              \
    memset(dx, 0, sizeof(T) * (size_t)(h * w));                                                    \
    for (int64_t i = 0; i < oh; i++) {                                                             \
      int64_t hs = i * h / oh, he = ((i + 1) * h + oh - 1) / oh;                                   \
      for (int64_t j = 0; j < ow; j++) {                                                           \
        int64_t ws = j * w / ow, we = ((j + 1) * w + ow - 1) / ow;                                 \
        T v = (T)((double)g[i * ow + j] / (double)((he - hs) * (we - ws)));                        \
        for (int64_t a = hs; a < he; a++)                                                          \
          for (int64_t b = ws; b < we; b++)                                                        \
            dx[a * w + b] += v;                                                                    \
      }                                                                                            \
    }                                                                                              \
  }                                                                                                \
  static void max_plane_back_##SUF(const T *g, const int64_t *idx, int64_t n, T *dx, int64_t hw) { \
    memset(dx, 0, sizeof(T) * (size_t)hw);                                                         \
    for (int64_t i = 0; i < n; i++) {                                                              \
      int64_t k = idx[i];                                                                          \
      if (k >= 0 && k < hw) dx[k] += g[i];                                                         \
    }                                                                                              \
  }

MS_POOL_PLANE_KERNELS(float, f32)
MS_POOL_PLANE_KERNELS(double, f64)

static int bad_dtype(const char *op, const ms_tensor *t) {
  return ms_fail(MS_ERR_DTYPE, "%s: cpu kernel needs f32, f64, f16 or bf16, got %s", op,
                 ms_desc(t));
}
static int pool_dtype_ok(ms_dtype d) { return d == MS_F32 || d == MS_F64 || ms_is_half(d); }

/* f16/bf16 planes: each thread converts its input plane to float scratch, runs the f32 plane
 * kernel into float scratch and stores the output plane (f32 math, half loads and stores). */
typedef struct {
  float *buf;
  size_t per; /* floats per thread: input plane + output plane */
} half_scratch;

static int half_scratch_new(const char *op, int nt, int64_t in_n, int64_t out_n, half_scratch *hs) {
  hs->per = (size_t)(in_n + out_n);
  hs->buf = malloc(sizeof(float) * (size_t)nt * (hs->per ? hs->per : 1));
  if (!hs->buf)
    return ms_fail(MS_ERR_OOM, "%s: out of memory for half-precision plane buffers", op);
  return MS_OK;
}

/* Geometry shared by the plane loops: in = [N, C, H, W], out = [N, C, OH, OW]. */
typedef struct {
  int64_t planes, h, w, oh, ow;
  char *in, *out;
  size_t esize;
  int par;
} plane_loop;

static plane_loop loop_of(const ms_tensor *in, const ms_tensor *out) {
  plane_loop l;
  l.planes = in->shape[0] * in->shape[1];
  l.h = in->shape[2];
  l.w = in->shape[3];
  l.oh = out->shape[2];
  l.ow = out->shape[3];
  l.in = ms_data(in);
  l.out = ms_data(out);
  l.esize = (size_t)ms_dtype_size(in->dtype);
  l.par = l.planes > 1 && l.planes * (l.h * l.w + l.oh * l.ow) >= 4096;
  return l;
}

int ms_cpu_max_pool2d(ms_context *ctx, const ms_tensor *x, const ms_pool2d_params *p,
                      ms_tensor *out, ms_tensor *indices) {
  if (!pool_dtype_ok(x->dtype)) return bad_dtype("max_pool2d", x);
  plane_loop l = loop_of(x, out);
  const int f32 = x->dtype == MS_F32, half = ms_is_half(x->dtype);
  int64_t *ib = (int64_t *)ms_data(indices);
  int nt = l.par ? ms_threads(ctx) : 1;
  half_scratch hs = {NULL, 0};
  if (half && half_scratch_new("max_pool2d", nt, l.h * l.w, l.oh * l.ow, &hs)) return MS_ERR_OOM;
#pragma omp parallel for num_threads(nt) if (l.par) schedule(static)
  for (int64_t q = 0; q < l.planes; q++) {
    const char *xp = l.in + (size_t)(q * l.h * l.w) * l.esize;
    char *yp = l.out + (size_t)(q * l.oh * l.ow) * l.esize;
    int64_t *ip = ib + q * l.oh * l.ow;
    if (half) {
      float *xf = hs.buf + (size_t)omp_get_thread_num() * hs.per, *yf = xf + l.h * l.w;
      ms_load_f32s(xf, xp, 2, x->dtype, l.h * l.w);
      max_plane_f32(xf, l.h, l.w, yf, ip, l.oh, l.ow, p);
      ms_store_f32s(yp, 2, x->dtype, yf, l.oh * l.ow);
    } else if (f32)
      max_plane_f32((const float *)xp, l.h, l.w, (float *)yp, ip, l.oh, l.ow, p);
    else
      max_plane_f64((const double *)xp, l.h, l.w, (double *)yp, ip, l.oh, l.ow, p);
  }
  free(hs.buf);
  return MS_OK;
}

/* g, indices: [N, C, OH, OW]; dx: [N, C, H, W]. */
int ms_cpu_max_pool2d_backward(ms_context *ctx, const ms_tensor *g, const ms_tensor *indices,
                               ms_tensor *dx) {
  if (!pool_dtype_ok(g->dtype)) return bad_dtype("max_pool2d_backward", g);
  plane_loop l = loop_of(dx, g); /* in = dx geometry, out = g geometry */
  const int f32 = g->dtype == MS_F32, half = ms_is_half(g->dtype);
  const int64_t *ib = (const int64_t *)ms_data(indices);
  const char *gb = ms_data(g);
  char *db = ms_data(dx);
  int64_t hw = l.h * l.w, on = l.oh * l.ow;
  int nt = l.par ? ms_threads(ctx) : 1;
  half_scratch hs = {NULL, 0};
  if (half && half_scratch_new("max_pool2d_backward", nt, hw, on, &hs)) return MS_ERR_OOM;
#pragma omp parallel for num_threads(nt) if (l.par) schedule(static)
  for (int64_t q = 0; q < l.planes; q++) {
    if (half) {
      float *df = hs.buf + (size_t)omp_get_thread_num() * hs.per, *gf = df + hw;
      ms_load_f32s(gf, gb + (size_t)(q * on) * 2, 2, g->dtype, on);
      max_plane_back_f32(gf, ib + q * on, on, df, hw);
      ms_store_f32s(db + (size_t)(q * hw) * 2, 2, g->dtype, df, hw);
    } else if (f32)
      max_plane_back_f32((const float *)gb + q * on, ib + q * on, on, (float *)db + q * hw, hw);
    else
      max_plane_back_f64((const double *)gb + q * on, ib + q * on, on, (double *)db + q * hw, hw);
  }
  free(hs.buf);
  return MS_OK;
}

int ms_cpu_avg_pool2d(ms_context *ctx, const ms_tensor *x, const ms_pool2d_params *p,
                      ms_tensor *out) {
  if (!pool_dtype_ok(x->dtype)) return bad_dtype("avg_pool2d", x);
  plane_loop l = loop_of(x, out);
  const int f32 = x->dtype == MS_F32, half = ms_is_half(x->dtype);
  int nt = l.par ? ms_threads(ctx) : 1;
  size_t per = avg_scratch(l.ow, p);
  double *bufs = malloc(sizeof(double) * (size_t)nt * per);
  if (!bufs)
    return ms_fail(MS_ERR_OOM, "avg_pool2d: out of memory for row buffers (%s)", ms_desc(x));
  half_scratch hs = {NULL, 0};
  if (half && half_scratch_new("avg_pool2d", nt, l.h * l.w, l.oh * l.ow, &hs)) {
    free(bufs);
    return MS_ERR_OOM;
  }
#pragma omp parallel for num_threads(nt) if (l.par) schedule(static)
  for (int64_t q = 0; q < l.planes; q++) {
    const char *xp = l.in + (size_t)(q * l.h * l.w) * l.esize;
    char *yp = l.out + (size_t)(q * l.oh * l.ow) * l.esize;
    double *buf = bufs + (size_t)omp_get_thread_num() * per;
    if (half) {
      float *xf = hs.buf + (size_t)omp_get_thread_num() * hs.per, *yf = xf + l.h * l.w;
      ms_load_f32s(xf, xp, 2, x->dtype, l.h * l.w);
      avg_plane_f32(xf, l.h, l.w, yf, l.oh, l.ow, p, buf);
      ms_store_f32s(yp, 2, x->dtype, yf, l.oh * l.ow);
    } else if (f32)
      avg_plane_f32((const float *)xp, l.h, l.w, (float *)yp, l.oh, l.ow, p, buf);
    else
      avg_plane_f64((const double *)xp, l.h, l.w, (double *)yp, l.oh, l.ow, p, buf);
  }
  free(bufs);
  free(hs.buf);
  return MS_OK;
}

int ms_cpu_avg_pool2d_backward(ms_context *ctx, const ms_tensor *g, const ms_pool2d_params *p,
                               ms_tensor *dx) {
  if (!pool_dtype_ok(g->dtype)) return bad_dtype("avg_pool2d_backward", g);
  plane_loop l = loop_of(dx, g);
  const int f32 = g->dtype == MS_F32, half = ms_is_half(g->dtype);
  int nt = l.par ? ms_threads(ctx) : 1;
  size_t per = avg_scratch(l.ow, p);
  double *bufs = malloc(sizeof(double) * (size_t)nt * per);
  if (!bufs)
    return ms_fail(MS_ERR_OOM, "avg_pool2d_backward: out of memory for row buffers (%s)",
                   ms_desc(g));
  half_scratch hs = {NULL, 0};
  if (half && half_scratch_new("avg_pool2d_backward", nt, l.h * l.w, l.oh * l.ow, &hs)) {
    free(bufs);
    return MS_ERR_OOM;
  }
#pragma omp parallel for num_threads(nt) if (l.par) schedule(static)
  for (int64_t q = 0; q < l.planes; q++) {
    char *dp = l.in + (size_t)(q * l.h * l.w) * l.esize;
    const char *gp = l.out + (size_t)(q * l.oh * l.ow) * l.esize;
    double *buf = bufs + (size_t)omp_get_thread_num() * per;
    if (half) {
      float *df = hs.buf + (size_t)omp_get_thread_num() * hs.per, *gf = df + l.h * l.w;
      ms_load_f32s(gf, gp, 2, g->dtype, l.oh * l.ow);
      avg_plane_back_f32(gf, l.h, l.w, df, l.oh, l.ow, p, buf);
      ms_store_f32s(dp, 2, g->dtype, df, l.h * l.w);
    } else if (f32)
      avg_plane_back_f32((const float *)gp, l.h, l.w, (float *)dp, l.oh, l.ow, p, buf);
    else
      avg_plane_back_f64((const double *)gp, l.h, l.w, (double *)dp, l.oh, l.ow, p, buf);
  }
  free(bufs);
  free(hs.buf);
  return MS_OK;
}

int ms_cpu_adaptive_avg_pool2d(ms_context *ctx, const ms_tensor *x, ms_tensor *out) {
  if (!pool_dtype_ok(x->dtype)) return bad_dtype("adaptive_avg_pool2d", x);
  plane_loop l = loop_of(x, out);
  const int f32 = x->dtype == MS_F32, half = ms_is_half(x->dtype);
  int nt = l.par ? ms_threads(ctx) : 1;
  half_scratch hs = {NULL, 0};
  if (half && half_scratch_new("adaptive_avg_pool2d", nt, l.h * l.w, l.oh * l.ow, &hs))
    return MS_ERR_OOM;
#pragma omp parallel for num_threads(nt) if (l.par) schedule(static)
  for (int64_t q = 0; q < l.planes; q++) {
    const char *xp = l.in + (size_t)(q * l.h * l.w) * l.esize;
    char *yp = l.out + (size_t)(q * l.oh * l.ow) * l.esize;
    if (half) {
      float *xf = hs.buf + (size_t)omp_get_thread_num() * hs.per, *yf = xf + l.h * l.w;
      ms_load_f32s(xf, xp, 2, x->dtype, l.h * l.w);
      adaptive_plane_f32(xf, l.h, l.w, yf, l.oh, l.ow);
      ms_store_f32s(yp, 2, x->dtype, yf, l.oh * l.ow);
    } else if (f32)
      adaptive_plane_f32((const float *)xp, l.h, l.w, (float *)yp, l.oh, l.ow);
    else
      adaptive_plane_f64((const double *)xp, l.h, l.w, (double *)yp, l.oh, l.ow);
  }
  free(hs.buf);
  return MS_OK;
}

int ms_cpu_adaptive_avg_pool2d_backward(ms_context *ctx, const ms_tensor *g, ms_tensor *dx) {
  if (!pool_dtype_ok(g->dtype)) return bad_dtype("adaptive_avg_pool2d_backward", g);
  plane_loop l = loop_of(dx, g);
  const int f32 = g->dtype == MS_F32, half = ms_is_half(g->dtype);
  int nt = l.par ? ms_threads(ctx) : 1;
  half_scratch hs = {NULL, 0};
  if (half && half_scratch_new("adaptive_avg_pool2d_backward", nt, l.h * l.w, l.oh * l.ow, &hs))
    return MS_ERR_OOM;
#pragma omp parallel for num_threads(nt) if (l.par) schedule(static)
  for (int64_t q = 0; q < l.planes; q++) {
    char *dp = l.in + (size_t)(q * l.h * l.w) * l.esize;
    const char *gp = l.out + (size_t)(q * l.oh * l.ow) * l.esize;
    if (half) {
      float *df = hs.buf + (size_t)omp_get_thread_num() * hs.per, *gf = df + l.h * l.w;
      ms_load_f32s(gf, gp, 2, g->dtype, l.oh * l.ow);
      adaptive_plane_back_f32(gf, l.h, l.w, df, l.oh, l.ow);
      ms_store_f32s(dp, 2, g->dtype, df, l.h * l.w);
    } else if (f32)
      adaptive_plane_back_f32((const float *)gp, l.h, l.w, (float *)dp, l.oh, l.ow);
    else
      adaptive_plane_back_f64((const double *)gp, l.h, l.w, (double *)dp, l.oh, l.ow);
  }
  free(hs.buf);
  return MS_OK;
}
