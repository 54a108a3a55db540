/* cross_entropy.c: CPU softmax cross-entropy forward/backward over [N, C, S] logits. */
/* FP exceptions are never inspected: letting GCC ignore them lets it vectorise the
 * clamps and selects inside ms_fast_expf. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include <math.h>
#include <stdlib.h>

#include "mcsl_kernels.h"

/* Positions per task; within a task loops run over positions, so they vectorise
 * when positions are contiguous (S > 1, the segmentation case). 1024 positions keep a
 * task's logits in L2 (19 classes: 76 KB) and read 4 KB runs per class row, which the
 * prefetchers follow better than 256 (14.5 vs 17 ms for [4, 19, 512, 512] here). */
#define BLK 1024

static double exp_f64(double x) { return exp(x); }
static double log_f64(double x) { return log(x); }
static float log_f32(float x) { return logf(x); }

/* Position j of a block sits at x + j * ps, class c at + c * cs. Returns the first
 * bad position in the block or -1; adds the block's losses and weights to *ls, *ws. */
#define CE_KERNELS(T, SUF, EXP, LOG)                                                               \
  static inline __attribute__((always_inline))                                                     \
  int64_t fwd_##SUF(const T *x, const int64_t *tg, const T *w, int64_t ign, int64_t nc,            \
                    int64_t ps, int64_t cs, int64_t nb, T *lse, T *lp, double *ls, double *ws) {   \
    T mx[BLK], sm[BLK];                                                                            \
    for (int64_t j = 0; j < nb; j++)                                                               \
      mx[j] = x[j * ps], sm[j] = 0;                                                                \
    for (int64_t c = 1; c < nc; c++)                                                               \
      for (int64_t j = 0; j < nb; j++) {                                                           \
        T v = x[j * ps + c * cs];                                                                  \
        mx[j] = v > mx[j] ? v : mx[j];                                                             \
      }                                                                                            \
    for (int64_t c = 0; c < nc; c++)                                                               \
      for (int64_t j = 0; j < nb; j++)                                                             \
        sm[j] += EXP(x[j * ps + c * cs] - mx[j]);                                                  \
    int64_t bad = -1;                                                                              \
    double l_acc = 0, w_acc = 0;                                                                   \
    for (int64_t j = 0; j < nb; j++) {                                                             \
      T l = mx[j] + LOG(sm[j]);                                                                    \
      lse[j] = l;                                                                                  \
      int64_t t = tg[j];                                                                           \
      T loss = 0;                                                                                  \
      if (t != ign) {                                                                              \
        if (t < 0 || t >= nc) {                                                                    \
          if (bad < 0) bad = j;                                                                    \
        } else {                                                                                   \
          T wt = w ? w[t] : (T)1;                                                                  \
          loss = wt * (l - x[j * ps + t * cs]);                                                    \
          l_acc += (double)loss;                                                                   \
          w_acc += (double)wt;                                                                     \
        }                                                                                          \
      }                                                                                            \
      lp[j] = loss;                                                                                \
    }                                                                                              \
    *ls += l_acc;                                                                                  \
    *ws += w_acc;                                                                                  \
    return bad;                                                                                    \
  }                                                                                                \
  static inline __attribute__((always_inline)) void bwd_##SUF(                                     \
      const T *x, const int64_t *tg, const T *w, int64_t ign, int64_t nc, int64_t ps, int64_t cs,  \
      int64_t nb, const T *lse, const T *gp, T gscale, T *dx) {                                    \
    T sc[BLK], l[BLK];                                                                             \
    for (int64_t j = 0; j < nb; j++) {                                                             \
      int64_t t = tg[j];                                                                           \
      int ok = t != ign && t >= 0 && t < nc;                                                       \
      sc[j] = ok ? gscale * (gp ? gp[j] : (T)1) * (w ? w[ok ? t : 0] : (T)1) : (T)0;               \
      l[j] = lse[j];                                                                               \
    }                                                                                              \
    for (int64_t c = 0; c < nc; c++)                                                               \
      for (int64_t j = 0; j < nb; j++)                                                             \
        dx[j * ps + c * cs] = sc[j] * EXP(x[j * ps + c * cs] - l[j]);                              \
    for (int64_t j = 0; j < nb; j++) {                                                             \
      int64_t t = tg[j];                                                                           \
      if (t != ign && t >= 0 && t < nc) dx[j * ps + t * cs] -= sc[j];                              \
    }                                                                                              \
  }

CE_KERNELS(float, f32, ms_fast_expf, log_f32)
CE_KERNELS(double, f64, exp_f64, log_f64)

/* ps == 1 (positions contiguous, the [N, C, H, W] case) gets its own copy of the inlined
 * block kernels with the stride constant, so the loops over positions vectorise. */
#define CE_DISPATCH(T, SUF)                                                                        \
  static int64_t fwd_blk_##SUF(const T *x, const int64_t *tg, const T *w, int64_t ign, int64_t nc, \
                               int64_t ps, int64_t cs, int64_t nb, T *lse, T *lp, double *ls,      \
                               double *ws) {                                                       \
    if (ps == 1) return fwd_##SUF(x, tg, w, ign, nc, 1, cs, nb, lse, lp, ls, ws);                  \
    return fwd_##SUF(x, tg, w, ign, nc, ps, cs, nb, lse, lp, ls, ws);                              \
  }                                                                                                \
  static void bwd_blk_##SUF(const T *x, const int64_t *tg, const T *w, int64_t ign, int64_t nc,    \
                            int64_t ps, int64_t cs, int64_t nb, const T *lse, const T *gp,         \
                            T gscale, T *dx) {                                                     \
    if (ps == 1)                                                                                   \
      bwd_##SUF(x, tg, w, ign, nc, 1, cs, nb, lse, gp, gscale, dx);                                \
    else                                                                                           \
      bwd_##SUF(x, tg, w, ign, nc, ps, cs, nb, lse, gp, gscale, dx);                               \
  }

CE_DISPATCH(float, f32)
CE_DISPATCH(double, f64)

/* Task t covers positions [p0, p0 + nb) of sample n: blocks along S, or, when S == 1,
 * blocks of samples (each row's classes contiguous). */
typedef struct {
  int64_t n, c, s, nblk, tasks;
} ce_grid;

static ce_grid grid_of(int64_t n, int64_t c, int64_t s) {
  ce_grid g = {n, c, s, 0, 0};
  g.nblk = s == 1 ? (n + BLK - 1) / BLK : (s + BLK - 1) / BLK;
  g.tasks = s == 1 ? g.nblk : n * g.nblk;
  return g;
}

/* For task t: offset of its first logit, of its first position, its ps/cs and count. */
static void task_of(const ce_grid *g, int64_t t, int64_t *xoff, int64_t *poff, int64_t *ps,
                    int64_t *cs, int64_t *nb) {
  if (g->s == 1) {
    int64_t p0 = t * BLK;
    *nb = g->n - p0 < BLK ? g->n - p0 : BLK;
    *xoff = p0 * g->c, *poff = p0, *ps = g->c, *cs = 1;
  } else {
    int64_t ni = t / g->nblk, j0 = (t % g->nblk) * BLK;
    *nb = g->s - j0 < BLK ? g->s - j0 : BLK;
    *xoff = ni * g->c * g->s + j0, *poff = ni * g->s + j0, *ps = 1, *cs = g->s;
  }
}

int ms_cpu_cross_entropy(ms_context *ctx, const ms_tensor *logits, const ms_tensor *target,
                         const ms_tensor *weight, int64_t ignore_index, int64_t n, int64_t c,
                         int64_t s, ms_tensor *loss_pos, ms_tensor *lse, double *lsum, double *wsum,
                         int64_t *bad_pos) {
  *lsum = 0, *wsum = 0, *bad_pos = -1;
  ce_grid g = grid_of(n, c, s);
  if (n * s == 0) return MS_OK;
  /* Per-task partial sums added in task order: the result does not depend on threads. */
  double *part = calloc((size_t)g.tasks * 2, sizeof(double));
  int64_t *bad = malloc((size_t)g.tasks * sizeof(int64_t));
  if (!part || !bad) {
    free(part);
    free(bad);
    return ms_fail(MS_ERR_OOM, "cross_entropy: out of host memory");
  }
  const int64_t *tg = (const int64_t *)ms_data(target);
  int is32 = logits->dtype == MS_F32;
  const char *xb = ms_data(logits), *wb = weight ? ms_data(weight) : NULL;
  char *lb = ms_data(lse), *pb = ms_data(loss_pos);
  int par = n * c * s > MS_GRAIN / 4;
#pragma omp parallel for num_threads(ms_threads(ctx)) if (par) schedule(static)
  for (int64_t t = 0; t < g.tasks; t++) {
    int64_t xo, po, ps, cs, nb, b;
    task_of(&g, t, &xo, &po, &ps, &cs, &nb);
    if (is32)
      b = fwd_blk_f32((const float *)xb + xo, tg + po, (const float *)wb, ignore_index, c, ps, cs,
                      nb, (float *)lb + po, (float *)pb + po, &part[2 * t], &part[2 * t + 1]);
    else
      b = fwd_blk_f64((const double *)xb + xo, tg + po, (const double *)wb, ignore_index, c, ps, cs,
                      nb, (double *)lb + po, (double *)pb + po, &part[2 * t], &part[2 * t + 1]);
    bad[t] = b < 0 ? -1 : po + b;
  }
  for (int64_t t = 0; t < g.tasks; t++) {
    *lsum += part[2 * t];
    *wsum += part[2 * t + 1];
    if (bad[t] >= 0 && (*bad_pos < 0 || bad[t] < *bad_pos)) *bad_pos = bad[t];
  }
  free(part);
  free(bad);
  return *bad_pos >= 0 ? MS_ERR_INVALID : MS_OK;
}

int ms_cpu_cross_entropy_backward(ms_context *ctx, const ms_tensor *logits, const ms_tensor *target,
                                  const ms_tensor *weight, int64_t ignore_index, int64_t n,
                                  int64_t c, int64_t s, const ms_tensor *lse,
                                  const ms_tensor *grad_pos, double gscale, int mean,
                                  ms_tensor *dlogits) {
  ce_grid g = grid_of(n, c, s);
  if (n * s == 0 || c == 0) return MS_OK;
  const int64_t *tg = (const int64_t *)ms_data(target);
  int is32 = logits->dtype == MS_F32;
  const char *xb = ms_data(logits), *wb = weight ? ms_data(weight) : NULL;
  if (mean) {
    double ws = 0;
    for (int64_t p = 0; p < n * s; p++) {
      int64_t t = tg[p];
      if (t == ignore_index || t < 0 || t >= c) continue;
      ws += !wb ? 1.0 : is32 ? (double)((const float *)wb)[t] : ((const double *)wb)[t];
    }
    gscale = ws != 0 ? gscale / ws : 0.0;
  }
  const char *lb = ms_data(lse), *gb = grad_pos ? ms_data(grad_pos) : NULL;
  char *db = ms_data(dlogits);
  int par = n * c * s > MS_GRAIN / 4;
#pragma omp parallel for num_threads(ms_threads(ctx)) if (par) schedule(static)
  for (int64_t t = 0; t < g.tasks; t++) {
    int64_t xo, po, ps, cs, nb;
    task_of(&g, t, &xo, &po, &ps, &cs, &nb);
    if (is32)
      bwd_blk_f32((const float *)xb + xo, tg + po, (const float *)wb, ignore_index, c, ps, cs, nb,
                  (const float *)lb + po, gb ? (const float *)gb + po : NULL, (float)gscale,
                  (float *)db + xo);
    else
      bwd_blk_f64((const double *)xb + xo, tg + po, (const double *)wb, ignore_index, c, ps, cs, nb,
                  (const double *)lb + po, gb ? (const double *)gb + po : NULL, gscale,
                  (double *)db + xo);
  }
  return MS_OK;
}
