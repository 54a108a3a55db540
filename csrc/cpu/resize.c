/* resize.c: CPU kernels of bilinear and nearest interpolation (NCHW planes) and their backward. */
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

/* Source taps of one output axis: out index i reads in[i0[i]] * l0[i] + in[i1[i]] * l1[i]. */
typedef struct {
  int64_t *i0, *i1;
  double *l0, *l1;
} axis_taps;

/* PyTorch's bilinear source coordinates (area_pixel_compute_source_index). */
static void bilinear_taps(int64_t in, int64_t out, int align_corners, axis_taps *t) {
  double scale = align_corners ? (out > 1 ? (double)(in - 1) / (double)(out - 1) : 0.0)
                               : (double)in / (double)out;
  for (int64_t i = 0; i < out; i++) {
    double src = align_corners ? scale * (double)i : scale * ((double)i + 0.5) - 0.5;
    if (src < 0) src = 0;
    int64_t a = (int64_t)src;
    if (a > in - 1) a = in - 1;
    t->i0[i] = a;
    t->i1[i] = a < in - 1 ? a + 1 : a;
    t->l1[i] = src - (double)a;
    t->l0[i] = 1.0 - t->l1[i];
  }
}

/* PyTorch's legacy 'nearest': src = min(floor(dst * (float)(in / out)), in - 1). */
static void nearest_taps(int64_t in, int64_t out, axis_taps *t) {
  float scale = (float)in / (float)out;
  for (int64_t i = 0; i < out; i++) {
    int64_t a;
    if (out == in)
      a = i;
    else if (out == 2 * in)
      a = i >> 1;
    else
      a = (int64_t)floorf((float)i * scale);
    if (a > in - 1) a = in - 1;
    t->i0[i] = t->i1[i] = a;
    t->l0[i] = 1.0;
    t->l1[i] = 0.0;
  }
}

/* Plane kernels for float and double; nearest uses the same taps with l1 = 0. */
#define MS_RESIZE_PLANE_KERNELS(T, SUF)                                                            \
  /* Bilinear forward is separable: each needed input row is interpolated along w once into        \
   * one of two row buffers (rows are visited in order), then output rows blend two buffers. */    \
  static void hrow_##SUF(const T *r, T *dst, int64_t ow, const axis_taps *tw) {                    \
    for (int64_t j = 0; j < ow; j++)                                                               \
      dst[j] = (T)tw->l0[j] * r[tw->i0[j]] + (T)tw->l1[j] * r[tw->i1[j]];                          \
  }                                                                                                \
  static void resize_plane_##SUF(const T *x, int64_t w, T *y, int64_t oh, int64_t ow,              \
                                 const axis_taps *th, const axis_taps *tw, int nearest, T *buf) {  \
    T *b0 = buf, *b1 = buf + ow;                                                                   \
    int64_t row0 = -1, row1 = -1;                                                                  \
    for (int64_t i = 0; i < oh; i++) {                                                             \
      T *yr = y + i * ow;                                                                          \
      if (nearest) {                                                                               \
        const T *r0 = x + th->i0[i] * w;                                                           \
        for (int64_t j = 0; j < ow; j++)                                                           \
          yr[j] = r0[tw->i0[j]];                                                                   \
        continue;                                                                                  \
      }                                                                                            \
      int64_t want0 = th->i0[i], want1 = th->i1[i];                                                \
      if (row0 != want0) {                                                                         \
        if (row1 == want0) {                                                                       \
          T *t = b0;                                                                               \
          b0 = b1;                                                                                 \
          b1 = t;                                                                                  \
          row0 = row1;                                                                             \
          row1 = -1;                                                                               \
        } else {                                                                                   \
          hrow_##SUF(x + want0 * w, b0, ow, tw);                                                   \
          row0 = want0;                                                                            \
        }                                                                                          \
      }                                                                                            \
      if (want1 != want0 && row1 != want1) {                                                       \
        hrow_##SUF(x + want1 * w, b1, ow, tw);                                                     \
        row1 = want1;                                                                              \
      }                                                                                            \
      const T *s1 = want1 == want0 ? b0 : b1;                                                      \
      T a0 = (T)th->l0[i], a1 = (T)th->l1[i];                                                      \
      for (int64_t j = 0; j < ow; j++)                                                             \
        yr[j] = a0 * b0[j] + a1 * s1[j];                                                           \
    }                                                                                              \
  }                                                                                                \
  /* Bilinear backward, separable too: output rows are first blended into per-input-row            \
   * accumulators acc [h, ow] (contiguous, vectorised), then each accumulator row is               \
   * scattered along w into its dx row. */                                                         \
  static void resize_plane_back_##SUF(const T *g, int64_t h, int64_t w, T *dx, int64_t oh,         \
                                      int64_t ow, const axis_taps *th, const axis_taps *tw,        \
                                      int nearest, T *acc) {                                       \
    memset(dx, 0, sizeof(T) * (size_t)(h * w));                                                    \
    if (nearest) {                                                                                 \
      for (int64_t i = 0; i < oh; i++) {                                                           \
        T *r0 = dx + th->i0[i] * w;                                                                \
        const T *gr = g + i * ow;                                                                  \
        for (int64_t j = 0; j < ow; j++)                                                           \
          r0[tw->i0[j]] += gr[j];                                                                  \
      }                                                                                            \
      return;                                                                                      \
    }                                                                                              \
    memset(acc, 0, sizeof(T) * (size_t)(h * ow));                                                  \
    for (int64_t i = 0; i < oh; i++) {                                                             \
      T *r0 = acc + th->i0[i] * ow, *r1 = acc + th->i1[i] * ow;                                    \
      const T *gr = g + i * ow;                                                                    \
      T a0 = (T)th->l0[i], a1 = (T)th->l1[i];                                                      \
      for (int64_t j = 0; j < ow; j++)                                                             \
        r0[j] += a0 * gr[j];                                                                       \
      for (int64_t j = 0; j < ow; j++)                                                             \
        r1[j] += a1 * gr[j];                                                                       \
    }                                                                                              \
    for (int64_t r = 0; r < h; r++) {                                                              \
      const T *ar = acc + r * ow;                                                                  \
      T *dr = dx + r * w;                                                                          \
      for (int64_t j = 0; j < ow; j++) {                                                           \
        T v = ar[j];                                                                               \
        dr[tw->i0[j]] += (T)tw->l0[j] * v;                                                         \
        dr[tw->i1[j]] += (T)tw->l1[j] * v;                                                         \
      }                                                                                            \
    }                                                                                              \
  }

MS_RESIZE_PLANE_KERNELS(float, f32)
MS_RESIZE_PLANE_KERNELS(double, f64)

/* f16/bf16 planes (element stride 2 bytes), f32 math: input rows are converted to float one at a
 * time as the f32 kernel's steps need them, output rows are computed in float and rounded once
 * when stored, so the result is the f32 kernel's on the half values, rounded. No plane-sized
 * f32 copies in the forward; buf holds 3 * ow + w floats. */
static void resize_plane_half(const char *x, int64_t w, char *y, int64_t oh, int64_t ow,
                              const axis_taps *th, const axis_taps *tw, int nearest, ms_dtype dt,
                              float *buf) {
  float *b0 = buf, *b1 = buf + ow, *yr = buf + 2 * ow, *xr = buf + 3 * ow;
  int64_t row0 = -1, row1 = -1;
  for (int64_t i = 0; i < oh; i++) {
    char *yo = y + (size_t)(i * ow) * 2;
    if (nearest) {
      /* a gather of half values: exact without a round trip through float */
      const uint16_t *r0 = (const uint16_t *)x + th->i0[i] * w;
      uint16_t *yh = (uint16_t *)yo;
      for (int64_t j = 0; j < ow; j++)
        yh[j] = r0[tw->i0[j]];
      continue;
    }
    int64_t want0 = th->i0[i], want1 = th->i1[i];
    if (row0 != want0) {
      if (row1 == want0) {
        float *t = b0;
        b0 = b1;
        b1 = t;
        row0 = row1;
        row1 = -1;
      } else {
        ms_load_f32s(xr, x + (size_t)(want0 * w) * 2, 2, dt, w);
        hrow_f32(xr, b0, ow, tw);
        row0 = want0;
      }
    }
    if (want1 != want0 && row1 != want1) {
      ms_load_f32s(xr, x + (size_t)(want1 * w) * 2, 2, dt, w);
      hrow_f32(xr, b1, ow, tw);
      row1 = want1;
    }
    const float *s1 = want1 == want0 ? b0 : b1;
    float a0 = (float)th->l0[i], a1 = (float)th->l1[i];
    for (int64_t j = 0; j < ow; j++)
      yr[j] = a0 * b0[j] + a1 * s1[j];
    ms_store_f32s(yo, 2, dt, yr, ow);
  }
}

/* f16/bf16 backward of one plane, f32 accumulation: gradient rows are converted one at a time
 * and accumulated, in the f32 kernel's order, into f32 scratch (acc [h, ow] for bilinear, then
 * dxf [h, w]); dx is rounded once when stored. buf holds ow + h * w (+ h * ow bilinear) floats. */
static void resize_plane_back_half(const char *g, int64_t h, int64_t w, char *dx, int64_t oh,
                                   int64_t ow, const axis_taps *th, const axis_taps *tw,
                                   int nearest, ms_dtype dt, float *buf) {
  float *gr = buf, *dxf = buf + ow, *acc = dxf + h * w;
  memset(dxf, 0, sizeof(float) * (size_t)(h * w));
  if (nearest) {
    for (int64_t i = 0; i < oh; i++) {
      float *r0 = dxf + th->i0[i] * w;
      ms_load_f32s(gr, g + (size_t)(i * ow) * 2, 2, dt, ow);
      for (int64_t j = 0; j < ow; j++)
        r0[tw->i0[j]] += gr[j];
    }
  } else {
    memset(acc, 0, sizeof(float) * (size_t)(h * ow));
    for (int64_t i = 0; i < oh; i++) {
      float *r0 = acc + th->i0[i] * ow, *r1 = acc + th->i1[i] * ow;
      float a0 = (float)th->l0[i], a1 = (float)th->l1[i];
      ms_load_f32s(gr, g + (size_t)(i * ow) * 2, 2, dt, ow);
      for (int64_t j = 0; j < ow; j++)
        r0[j] += a0 * gr[j];
      for (int64_t j = 0; j < ow; j++)
        r1[j] += a1 * gr[j];
    }
    for (int64_t r = 0; r < h; r++) {
      const float *ar = acc + r * ow;
      float *dr = dxf + r * w;
      for (int64_t j = 0; j < ow; j++) {
        float v = ar[j];
        dr[tw->i0[j]] += (float)tw->l0[j] * v;
        dr[tw->i1[j]] += (float)tw->l1[j] * v;
      }
    }
  }
  ms_store_f32s(dx, 2, dt, dxf, h * w);
}

/* Tap tables for both axes in one allocation. */
static int make_taps(const char *op, int64_t h, int64_t w, int64_t oh, int64_t ow,
                     ms_resize_mode mode, int align_corners, axis_taps *th, axis_taps *tw,
                     void **mem) {
  size_t n = (size_t)(oh + ow);
  char *m = malloc(n * (2 * sizeof(int64_t) + 2 * sizeof(double)));
  if (!m) return ms_fail(MS_ERR_OOM, "%s: out of memory for %zu taps", op, n);
  int64_t *iv = (int64_t *)m;
  double *lv = (double *)(m + n * 2 * sizeof(int64_t));
  th->i0 = iv, th->i1 = iv + oh, tw->i0 = iv + 2 * oh, tw->i1 = iv + 2 * oh + ow;
  th->l0 = lv, th->l1 = lv + oh, tw->l0 = lv + 2 * oh, tw->l1 = lv + 2 * oh + ow;
  if (mode == MS_RESIZE_NEAREST) {
    nearest_taps(h, oh, th);
    nearest_taps(w, ow, tw);
  } else {
    bilinear_taps(h, oh, align_corners, th);
    bilinear_taps(w, ow, align_corners, tw);
  }
  *mem = m;
  return MS_OK;
}

/* small: [N, C, H, W] input side, big: [N, C, OH, OW] output side. */
static int run(ms_context *ctx, const char *op, const ms_tensor *small, const ms_tensor *big,
               ms_resize_mode mode, int align_corners, int backward) {
  const ms_dtype dt = small->dtype;
  if (dt != MS_F32 && dt != MS_F64 && !ms_is_half(dt))
    return ms_fail(MS_ERR_DTYPE, "%s: cpu kernel needs f32, f64, f16 or bf16, got %s", op,
                   ms_desc(small));
  int64_t planes = small->shape[0] * small->shape[1];
  int64_t h = small->shape[2], w = small->shape[3], oh = big->shape[2], ow = big->shape[3];
  axis_taps th, tw;
  void *mem = NULL;
  int st = make_taps(op, h, w, oh, ow, mode, align_corners, &th, &tw, &mem);
  if (st) return st;
  const int f32 = dt == MS_F32, half = ms_is_half(dt), nearest = mode == MS_RESIZE_NEAREST;
  char *sb = ms_data(small), *bb = ms_data(big);
  const int par = planes > 1 && planes * (oh * ow + h * w) >= 4096;
  const int nt = par ? ms_threads(ctx) : 1;
  size_t esz = f32 || half ? sizeof(float) : sizeof(double);
  /* per thread: two row buffers (forward) or an [h, ow] accumulator (bilinear backward); half
   * types also a converted input row and an output row (forward) or a gradient row and an f32
   * dx plane (backward) */
  size_t per = backward ? (nearest ? 1 : (size_t)(h * ow)) : 2 * (size_t)ow;
  if (half)
    per = backward ? (nearest ? 0 : (size_t)(h * ow)) + (size_t)(ow + h * w) : (size_t)(3 * ow + w);
  char *rows = malloc((size_t)nt * (per > 0 ? per : 1) * esz);
  if (!rows) {
    free(mem);
    return ms_fail(MS_ERR_OOM, "%s: out of memory for row buffers (%s)", op, ms_desc(small));
  }
#pragma omp parallel for num_threads(nt) if (par) schedule(static)
  for (int64_t q = 0; q < planes; q++) {
    char *buf = rows + (size_t)omp_get_thread_num() * per * esz;
    if (half) {
      char *sp = sb + (size_t)(q * h * w) * 2, *bp = bb + (size_t)(q * oh * ow) * 2;
      if (backward)
        resize_plane_back_half(bp, h, w, sp, oh, ow, &th, &tw, nearest, dt, (float *)buf);
      else
        resize_plane_half(sp, w, bp, oh, ow, &th, &tw, nearest, dt, (float *)buf);
    } else if (f32) {
      float *sp = (float *)sb + q * h * w, *bp = (float *)bb + q * oh * ow;
      if (backward)
        resize_plane_back_f32(bp, h, w, sp, oh, ow, &th, &tw, nearest, (float *)buf);
      else
        resize_plane_f32(sp, w, bp, oh, ow, &th, &tw, nearest, (float *)buf);
    } else {
      double *sp = (double *)sb + q * h * w, *bp = (double *)bb + q * oh * ow;
      if (backward)
        resize_plane_back_f64(bp, h, w, sp, oh, ow, &th, &tw, nearest, (double *)buf);
      else
        resize_plane_f64(sp, w, bp, oh, ow, &th, &tw, nearest, (double *)buf);
    }
  }
  free(rows);
  free(mem);
  return MS_OK;
}

int ms_cpu_interpolate(ms_context *ctx, const ms_tensor *x, ms_resize_mode mode, int align_corners,
                       ms_tensor *out) {
  return run(ctx, "interpolate", x, out, mode, align_corners, 0);
}

int ms_cpu_interpolate_backward(ms_context *ctx, const ms_tensor *g, ms_resize_mode mode,
                                int align_corners, ms_tensor *dx) {
  return run(ctx, "interpolate_backward", dx, g, mode, align_corners, 1);
}
