/* sync_bn_merge.c: the CPU table's SyncBatchNorm packet (count, mean, count * var of this rank)
 * and the merge of every rank's packets (Chan's count-weighted merge, in f64). Compiled with
 * -ffp-contract=off: each step rounds as the tensor ops of the former Lua merge did (no fused
 * multiply-adds), so the statistics are bit for bit those of that merge. */
#include <math.h>

#include "../core/dtype.h"
#include "npr_kernels.h"

int ms_cpu_sync_bn_packet(ms_context *ctx, const ms_tensor *x, ms_tensor *out) {
  int64_t n = x->shape[0], c = x->shape[1], s = ms_numel_of(x->shape + 2, x->ndim - 2);
  double *o = (double *)ms_data(out), count = (double)(n * s);
  for (int64_t i = 0; i < 2 * c + 1; i++)
    o[i] = 0;
  o[0] = count;
  if (count == 0) return MS_OK; /* an empty shard sends zeros: it weighs nothing in the merge */
  int st = ms_cpu_bn_stats(ctx, x, n, c, s, o + 1, o + 1 + c);
  for (int64_t i = 0; i < c; i++)
    o[1 + c + i] *= count;
  return st;
}

/* v rounded to dtype d (f16/bf16 through f32, as the cast kernels do). */
static double rnd(ms_dtype d, double v) {
  char b[8];
  ms_store_f64(b, d, v);
  return ms_load_f64(b, d);
}

static double get(const ms_tensor *t, int64_t i) {
  return ms_load_f64(ms_data(t) + i * t->strides[0] * ms_dtype_size(t->dtype), t->dtype);
}

static void put(ms_tensor *t, int64_t i, double v) {
  ms_store_f64(ms_data(t) + i * t->strides[0] * ms_dtype_size(t->dtype), t->dtype, v);
}

/* r = r * (1 - m) + v * m, each product and the sum rounded to r's dtype as mul_/add_ round
 * (for f32 an f64 op rounded once to f32 is the f32 op: 53 >= 2 * 24 + 2 bits). */
static void blend(ms_tensor *r, int64_t i, double v, double m) {
  ms_dtype d = r->dtype;
  double a = rnd(d, get(r, i) * rnd(d, 1 - m)), b = rnd(d, rnd(d, v) * rnd(d, m));
  put(r, i, rnd(d, a + b));
}

int ms_cpu_sync_bn_merge(ms_context *ctx, const ms_tensor *all, double eps, double momentum,
                         ms_tensor *rm, ms_tensor *rv, ms_tensor *mean, ms_tensor *invstd,
                         ms_tensor *mean64, ms_tensor *var64, double *count) {
  (void)ctx;
  int64_t w = all->shape[0], row = all->shape[1], c = (row - 1) / 2;
  const double *a = (const double *)ms_data(all);
  double n = 0;
  for (int64_t r = 0; r < w; r++)
    n += a[r * row];
  if (!(n >= 1))
    return ms_fail(MS_ERR_INVALID,
                   "batch_norm_merge_stats: every rank's batch is empty (total count %g over %lld "
                   "ranks)",
                   n, (long long)w);
  double *m64 = (double *)ms_data(mean64), *v64 = (double *)ms_data(var64);
  double unbias = n > 1 ? n / (n - 1) : 1;
  for (int64_t j = 0; j < c; j++) {
    double s = 0;
    for (int64_t r = 0; r < w; r++)
      s += a[r * row + 1 + j] * a[r * row];
    double mu = s / n, q = 0;
    for (int64_t r = 0; r < w; r++) {
      double cnt = a[r * row], d = a[r * row + 1 + j] - mu, t = cnt * d;
      t = t * d;
      q += a[r * row + 1 + c + j] + t;
    }
    double var = q / n;
    m64[j] = mu, v64[j] = var;
    put(mean, j, mu);
    put(invstd, j, 1.0 / sqrt(var + eps));
    if (rm) blend(rm, j, mu, momentum);
    if (rv) blend(rv, j, n > 1 ? var * unbias : var, momentum);
  }
  *count = n;
  return MS_OK;
}

int ms_cpu_sync_bn_param_grads(ms_context *ctx, const ms_tensor *sums, const ms_tensor *invstd,
                               ms_tensor *dw, ms_tensor *db) {
  (void)ctx;
  int64_t c = invstd->shape[0];
  const double *sg = (const double *)ms_data(sums), *sgx = sg + c;
  for (int64_t j = 0; j < c; j++) {
    if (dw) put(dw, j, sgx[j] * get(invstd, j));
    if (db) put(db, j, sg[j]);
  }
  return MS_OK;
}
