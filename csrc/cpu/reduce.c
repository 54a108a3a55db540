/* reduce.c: CPU reductions (sum/mean/max/min/var/prod over dims, arg max/min). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "../core/dtype.h"
#include "ew_kernels.h"

enum { M_SUM, M_PROD, M_MAX, M_MIN, M_SQDEV };

/* x's dims with size-1 dims dropped and neighbours of the same kind merged. */
typedef struct {
  int nk, nr;
  int64_t ks[MS_MAX_DIMS], kx[MS_MAX_DIMS]; /* kept groups: sizes, element strides */
  int64_t rs[MS_MAX_DIMS], rx[MS_MAX_DIMS]; /* reduced groups */
  int64_t m, r;
  int last_reduced; /* innermost group is a reduced one (or there are no groups) */
} plan;

static void make_plan(const ms_tensor *x, const int *red, plan *p) {
  memset(p, 0, sizeof *p);
  int64_t stride = 1;
  int64_t gs[MS_MAX_DIMS], gx[MS_MAX_DIMS];
  int gk[MS_MAX_DIMS], ng = 0;
  for (int i = x->ndim - 1; i >= 0; i--) { /* innermost first */
    int64_t n = x->shape[i];
    if (n != 1) {
      if (ng > 0 && gk[ng - 1] == (red[i] != 0)) {
        gs[ng - 1] *= n;
      } else {
        gs[ng] = n;
        gx[ng] = stride;
        gk[ng] = red[i] != 0;
        ng++;
      }
    }
    stride *= n;
  }
  p->m = p->r = 1;
  for (int g = ng - 1; g >= 0; g--) { /* outermost first into the lists */
    if (gk[g]) {
      p->rs[p->nr] = gs[g];
      p->rx[p->nr++] = gx[g];
      p->r *= gs[g];
    } else {
      p->ks[p->nk] = gs[g];
      p->kx[p->nk++] = gx[g];
      p->m *= gs[g];
    }
  }
  p->last_reduced = ng == 0 || gk[0];
}

/* Element offset of linear index i over groups (sizes s, strides st, count n). */
static inline int64_t offset_of(int64_t i, const int64_t *s, const int64_t *st, int n) {
  int64_t off = 0;
  for (int g = n - 1; g >= 0; g--) {
    off += (i % s[g]) * st[g];
    i /= s[g];
  }
  return off;
}

static inline double combine(int mode, double acc, double v) {
  switch (mode) {
  case M_PROD: return acc * v;
  case M_MAX: return (v != v || v > acc) ? v : acc;
  case M_MIN: return (v != v || v < acc) ? v : acc;
  default: return acc + v;
  }
}

static double identity(int mode) {
  return mode == M_PROD ? 1.0 : mode == M_MAX ? -INFINITY : mode == M_MIN ? INFINITY : 0.0;
}

/* Folds a contiguous run of n elements into acc. */
static double run_fold(int mode, const char *p, int64_t n, ms_dtype dt, double acc, double mean) {
  if (dt == MS_F32 && (mode == M_SUM || mode == M_SQDEV)) {
    const float *x = (const float *)p;
    double s = 0;
    if (mode == M_SUM) {
#pragma omp simd reduction(+ : s)
      for (int64_t k = 0; k < n; k++)
        s += (double)x[k];
    } else {
#pragma omp simd reduction(+ : s)
      for (int64_t k = 0; k < n; k++) {
        double dv = (double)x[k] - mean;
        s += dv * dv;
      }
    }
    return acc + s;
  }
  if (dt == MS_F64 && (mode == M_SUM || mode == M_SQDEV)) {
    const double *x = (const double *)p;
    double s = 0;
    if (mode == M_SUM) {
#pragma omp simd reduction(+ : s)
      for (int64_t k = 0; k < n; k++)
        s += x[k];
    } else {
#pragma omp simd reduction(+ : s)
      for (int64_t k = 0; k < n; k++)
        s += (x[k] - mean) * (x[k] - mean);
    }
    return acc + s;
  }
  if (dt == MS_F32 && (mode == M_MAX || mode == M_MIN)) {
    const float *x = (const float *)p;
    for (int64_t k = 0; k < n; k++)
      acc = combine(mode, acc, x[k]);
    return acc;
  }
  int64_t es = ms_dtype_size(dt);
  for (int64_t k = 0; k < n; k++) {
    double v = ms_load_f64(p + k * es, dt);
    if (mode == M_SQDEV) v = (v - mean) * (v - mean);
    acc = combine(mode, acc, v);
  }
  return acc;
}

/* acc[j] (+)= x[j] for a contiguous run (the kept-innermost case). */
static void run_cols(int mode, const char *p, int64_t n, ms_dtype dt, double *acc,
                     const double *mean) {
  if (dt == MS_F32 && mode == M_SUM) {
    const float *x = (const float *)p;
    for (int64_t j = 0; j < n; j++)
      acc[j] += x[j];
    return;
  }
  if (dt == MS_F32 && mode == M_SQDEV) {
    const float *x = (const float *)p;
    for (int64_t j = 0; j < n; j++) {
      double dv = x[j] - mean[j];
      acc[j] += dv * dv;
    }
    return;
  }
  if (dt == MS_F64 && mode == M_SUM) {
    const double *x = (const double *)p;
    for (int64_t j = 0; j < n; j++)
      acc[j] += x[j];
    return;
  }
  int64_t es = ms_dtype_size(dt);
  for (int64_t j = 0; j < n; j++) {
    double v = ms_load_f64(p + j * es, dt);
    if (mode == M_SQDEV) v = (v - mean[j]) * (v - mean[j]);
    acc[j] = combine(mode, acc[j], v);
  }
}

/* Case A (innermost group reduced): output o over linear reduced range [e0, e1). */
static double fold_A(const plan *p, int mode, const char *base, ms_dtype dt, int64_t o, int64_t e0,
                     int64_t e1, double acc, double mean) {
  int64_t es = ms_dtype_size(dt);
  int64_t inner = p->nr ? p->rs[p->nr - 1] : 1;
  const char *ob = base + offset_of(o, p->ks, p->kx, p->nk) * es;
  int64_t ro = e0 / inner, j = e0 % inner, e = e0;
  while (e < e1) {
    int64_t len = inner - j < e1 - e ? inner - j : e1 - e;
    int64_t roff = p->nr > 1 ? offset_of(ro, p->rs, p->rx, p->nr - 1) : 0;
    acc = run_fold(mode, ob + (roff + j) * es, len, dt, acc, mean);
    e += len;
    ro++;
    j = 0;
  }
  return acc;
}

/* Case B (innermost group kept): columns [j0, j1) of kept-outer row ko, reduced [r0, r1). */
static void fold_B(const plan *p, int mode, const char *base, ms_dtype dt, int64_t ko, int64_t j0,
                   int64_t j1, int64_t r0, int64_t r1, double *acc, const double *mean) {
  int64_t es = ms_dtype_size(dt);
  int64_t koff = offset_of(ko, p->ks, p->kx, p->nk - 1);
  for (int64_t ri = r0; ri < r1; ri++) {
    int64_t off = koff + offset_of(ri, p->rs, p->rx, p->nr) + j0;
    run_cols(mode, base + off * es, j1 - j0, dt, acc + j0, mean ? mean + j0 : NULL);
  }
}

/* acc[o] = fold over all reduced elements of output o; split over threads by
 * outputs when there are enough of them, else over the reduced range. */
static int fold_all(ms_context *ctx, const plan *p, int mode, const char *base, ms_dtype dt,
                    double *acc, const double *mean) {
  int nt = ms_threads(ctx);
  int64_t m = p->m, r = p->r;
  double id = identity(mode);
  for (int64_t o = 0; o < m; o++)
    acc[o] = id;
  if (r == 0) return MS_OK;
  if (m * r < MS_GRAIN) nt = 1;
  if (p->last_reduced) {
    if (m >= 4 * nt || nt == 1) {
#pragma omp parallel for num_threads(nt) schedule(static)
      for (int64_t o = 0; o < m; o++)
        acc[o] = fold_A(p, mode, base, dt, o, 0, r, id, mean ? mean[o] : 0);
      return MS_OK;
    }
    double *part = malloc(sizeof(double) * (size_t)(m * nt));
    if (!part) return ms_fail(MS_ERR_OOM, "reduce: out of memory for partial sums");
    for (int64_t i = 0; i < m * nt; i++)
      part[i] = id;
#pragma omp parallel num_threads(nt)
    {
      int t = omp_get_thread_num(), T = omp_get_num_threads();
      int64_t e0 = r * t / T, e1 = r * (t + 1) / T;
      for (int64_t o = 0; o < m; o++)
        part[t * m + o] = fold_A(p, mode, base, dt, o, e0, e1, id, mean ? mean[o] : 0);
    }
    for (int t = 0; t < nt; t++)
      for (int64_t o = 0; o < m; o++)
        acc[o] =
            mode == M_SQDEV ? acc[o] + part[t * m + o] : combine(mode, acc[o], part[t * m + o]);
    free(part);
    return MS_OK;
  }
  int64_t inner = p->ks[p->nk - 1], kouter = m / inner;
  if (m >= 256 * nt || nt == 1 || r < 4 * nt) {
    int64_t chunk = inner / nt > 64 ? inner / nt : 64;
    if (chunk > inner) chunk = inner;
    int64_t nch = (inner + chunk - 1) / chunk, tasks = kouter * nch;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t t = 0; t < tasks; t++) {
      int64_t ko = t / nch, j0 = (t % nch) * chunk, j1 = j0 + chunk < inner ? j0 + chunk : inner;
      fold_B(p, mode, base, dt, ko, j0, j1, 0, r, acc + ko * inner,
             mean ? mean + ko * inner : NULL);
    }
    return MS_OK;
  }
  double *part = malloc(sizeof(double) * (size_t)(m * nt));
  if (!part) return ms_fail(MS_ERR_OOM, "reduce: out of memory for partial sums");
  for (int64_t i = 0; i < m * nt; i++)
    part[i] = id;
#pragma omp parallel num_threads(nt)
  {
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    int64_t r0 = r * t / T, r1 = r * (t + 1) / T;
    for (int64_t ko = 0; ko < kouter; ko++)
      fold_B(p, mode, base, dt, ko, 0, inner, r0, r1, part + t * m + ko * inner,
             mean ? mean + ko * inner : NULL);
  }
  for (int t = 0; t < nt; t++)
    for (int64_t o = 0; o < m; o++)
      acc[o] = mode == M_SQDEV ? acc[o] + part[t * m + o] : combine(mode, acc[o], part[t * m + o]);
  free(part);
  return MS_OK;
}

/* Integer dtypes: exact int64 accumulation, one output per iteration. */
static void reduce_int(ms_context *ctx, ms_redop op, const plan *p, const ms_tensor *x,
                       ms_tensor *out) {
  int64_t es = ms_dtype_size(x->dtype), m = p->m, r = p->r;
  const char *base = ms_data(x);
  char *ob = ms_data(out);
  int64_t oes = ms_dtype_size(out->dtype);
  int nt = m * r < MS_GRAIN ? 1 : ms_threads(ctx);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t o = 0; o < m; o++) {
    int64_t koff = offset_of(o, p->ks, p->kx, p->nk);
    int64_t acc = op == MS_RED_PROD  ? 1
                  : op == MS_RED_MAX ? INT64_MIN
                  : op == MS_RED_MIN ? INT64_MAX
                                     : 0;
    for (int64_t i = 0; i < r; i++) {
      int64_t v = ms_load_i64(base + (koff + offset_of(i, p->rs, p->rx, p->nr)) * es, x->dtype);
      switch (op) {
      case MS_RED_PROD: acc = (int64_t)((uint64_t)acc * (uint64_t)v); break;
      case MS_RED_MAX: acc = v > acc ? v : acc; break;
      case MS_RED_MIN: acc = v < acc ? v : acc; break;
      default: acc = (int64_t)((uint64_t)acc + (uint64_t)v);
      }
    }
    char *q = ob + o * oes;
    switch (out->dtype) {
    case MS_I64: *(int64_t *)q = acc; break;
    case MS_I32: *(int32_t *)q = (int32_t)acc; break;
    case MS_BOOL: *(uint8_t *)q = acc != 0; break;
    default: *(uint8_t *)q = (uint8_t)acc;
    }
  }
}

int ms_cpu_reduce(ms_context *ctx, ms_redop op, const ms_tensor *x, const int *red, double p,
                  ms_tensor *out) {
  plan pl;
  make_plan(x, red, &pl);
  if (pl.m == 0) return MS_OK;
  if (!ms_dtype_is_float(x->dtype)) {
    reduce_int(ctx, op, &pl, x, out);
    return MS_OK;
  }
  double *acc = malloc(sizeof(double) * (size_t)pl.m);
  double *mean = NULL;
  if (!acc) return ms_fail(MS_ERR_OOM, "reduce: out of memory");
  int mode = op == MS_RED_PROD  ? M_PROD
             : op == MS_RED_MAX ? M_MAX
             : op == MS_RED_MIN ? M_MIN
                                : M_SUM;
  const char *base = ms_data(x);
  int st = fold_all(ctx, &pl, mode, base, x->dtype, acc, NULL);
  double rn = (double)pl.r;
  if (!st && op == MS_RED_VAR) {
    mean = acc;
    acc = malloc(sizeof(double) * (size_t)pl.m);
    if (!acc) st = ms_fail(MS_ERR_OOM, "reduce: out of memory");
    if (!st) {
      for (int64_t o = 0; o < pl.m; o++)
        mean[o] /= rn;
      st = fold_all(ctx, &pl, M_SQDEV, base, x->dtype, acc, mean);
    }
  }
  if (!st) {
    double div = op == MS_RED_MEAN ? rn : op == MS_RED_VAR ? (rn - p > 0 ? rn - p : 0) : 1;
    char *ob = ms_data(out);
    int64_t oes = ms_dtype_size(out->dtype);
    for (int64_t o = 0; o < pl.m; o++) {
      double v = acc[o];
      if (op == MS_RED_MEAN || op == MS_RED_VAR) v /= div;
      ms_store_f64(ob + o * oes, out->dtype, v);
    }
  }
  free(acc);
  free(mean);
  return st;
}

/* ---- arg max/min along one dim: [outer, n, inner] -> [outer, inner] ---- */
/* f32 arg-max/min of one chunk [j0, j1) over the n rows: float lanes and int32 indices
 * with selects, so it vectorises; NaN wins (the first NaN), as in the generic path. */
static inline __attribute__((always_inline)) void arg_chunk_f32(const float *row, int64_t n,
                                                                int64_t inner, int64_t j0,
                                                                int64_t j1, int ismax, float *best,
                                                                int32_t *bi) {
  int64_t m = j1 - j0;
  for (int64_t j = 0; j < m; j++)
    best[j] = row[j0 + j], bi[j] = 0;
  for (int64_t i = 1; i < n; i++) {
    const float *r = row + i * inner + j0;
    for (int64_t j = 0; j < m; j++) {
      float v = r[j], b = best[j];
      int take = ismax ? (v > b || (v != v && b == b)) : (v < b || (v != v && b == b));
      best[j] = take ? v : b;
      bi[j] = take ? (int32_t)i : bi[j];
    }
  }
}

int ms_cpu_reduce_arg(ms_context *ctx, ms_redop op, const ms_tensor *x, int64_t outer, int64_t n,
                      int64_t inner, ms_tensor *values, ms_tensor *indices) {
  if (x->dtype == MS_F32 && values->dtype == MS_F32 && n < INT32_MAX) {
    enum { CF = 512 };
    int64_t nch = (inner + CF - 1) / CF, tasks = outer * nch;
    const float *xb = (const float *)ms_data(x);
    float *vb = (float *)ms_data(values);
    int64_t *ib = (int64_t *)ms_data(indices);
    int ismax = op == MS_RED_MAX;
    int nt = outer * n * inner < MS_GRAIN ? 1 : ms_threads(ctx);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t t = 0; t < tasks; t++) {
      int64_t o = t / nch, j0 = (t % nch) * CF, j1 = j0 + CF < inner ? j0 + CF : inner;
      float best[CF];
      int32_t bi[CF];
      const float *row = xb + o * n * inner;
      if (ismax)
        arg_chunk_f32(row, n, inner, j0, j1, 1, best, bi);
      else
        arg_chunk_f32(row, n, inner, j0, j1, 0, best, bi);
      for (int64_t j = j0; j < j1; j++) {
        vb[o * inner + j] = best[j - j0];
        ib[o * inner + j] = bi[j - j0];
      }
    }
    return MS_OK;
  }
  enum { CH = 256 };
  int64_t nch = (inner + CH - 1) / CH, tasks = outer * nch;
  int64_t es = ms_dtype_size(x->dtype), ves = ms_dtype_size(values->dtype);
  const char *base = ms_data(x);
  char *vb = ms_data(values);
  int64_t *ib = (int64_t *)ms_data(indices);
  int ismax = op == MS_RED_MAX, isint = !ms_dtype_is_float(x->dtype);
  int nt = outer * n * inner < MS_GRAIN ? 1 : ms_threads(ctx);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t t = 0; t < tasks; t++) {
    int64_t o = t / nch, j0 = (t % nch) * CH, j1 = j0 + CH < inner ? j0 + CH : inner;
    double best[CH];
    int64_t bi[CH], besti[CH];
    const char *row = base + o * n * inner * es;
    for (int64_t j = j0; j < j1; j++) {
      best[j - j0] = ms_load_f64(row + j * es, x->dtype);
      besti[j - j0] = ms_load_i64(row + j * es, x->dtype);
      bi[j - j0] = 0;
    }
    for (int64_t i = 1; i < n; i++) {
      const char *r = row + i * inner * es;
      if (x->dtype == MS_F32) {
        const float *xf = (const float *)r;
        for (int64_t j = j0; j < j1; j++) {
          double v = xf[j], b = best[j - j0];
          int take = ismax ? (v > b || (v != v && b == b)) : (v < b || (v != v && b == b));
          if (take) {
            best[j - j0] = v;
            bi[j - j0] = i;
          }
        }
      } else if (isint) {
        for (int64_t j = j0; j < j1; j++) {
          int64_t v = ms_load_i64(r + j * es, x->dtype), b = besti[j - j0];
          if (ismax ? v > b : v < b) {
            besti[j - j0] = v;
            bi[j - j0] = i;
          }
        }
      } else {
        for (int64_t j = j0; j < j1; j++) {
          double v = ms_load_f64(r + j * es, x->dtype), b = best[j - j0];
          int take = ismax ? (v > b || (v != v && b == b)) : (v < b || (v != v && b == b));
          if (take) {
            best[j - j0] = v;
            bi[j - j0] = i;
          }
        }
      }
    }
    for (int64_t j = j0; j < j1; j++) {
      int64_t oi = o * inner + j;
      ib[oi] = bi[j - j0];
      memcpy(vb + oi * ves, base + (o * n * inner + bi[j - j0] * inner + j) * es, (size_t)es);
    }
  }
  return MS_OK;
}
