/* sync_norm.c: the CPU table's SyncBatchNorm entries: a rank's f64 moments and gradient sums, and
 * dx from globally reduced sums, on the batch-norm kernels plain batch_norm uses. */
#include <stdlib.h>

#include "../core/dtype.h"
#include "npr_kernels.h"

static double at(const ms_tensor *t, int64_t i) {
  return ms_load_f64(ms_data(t) + i * t->strides[0] * ms_dtype_size(t->dtype), t->dtype);
}

/* x viewed as [N, C, S] */
static void dims(const ms_tensor *x, int64_t *n, int64_t *c, int64_t *s) {
  *n = x->shape[0], *c = x->shape[1], *s = ms_numel_of(x->shape + 2, x->ndim - 2);
}

int ms_cpu_sync_bn_moments(ms_context *ctx, const ms_tensor *x, ms_tensor *out) {
  int64_t n, c, s;
  dims(x, &n, &c, &s);
  double *o = (double *)ms_data(out);
  return ms_cpu_bn_stats(ctx, x, n, c, s, o, o + c);
}

int ms_cpu_sync_bn_grad_sums(ms_context *ctx, const ms_tensor *gy, const ms_tensor *x,
                             const ms_tensor *mean, ms_tensor *out) {
  int64_t n, c, s;
  dims(x, &n, &c, &s);
  double *m = malloc(sizeof(double) * (size_t)(c > 0 ? c : 1));
  if (!m) return ms_fail(MS_ERR_OOM, "batch_norm_grad_sums: out of memory (input %s)", ms_desc(x));
  for (int64_t i = 0; i < c; i++)
    m[i] = at(mean, i);
  double *o = (double *)ms_data(out);
  int st = ms_cpu_bn_grad_sums(ctx, gy, x, n, c, s, m, o, o + c);
  free(m);
  return st;
}

int ms_cpu_sync_bn_backward(ms_context *ctx, const ms_tensor *gy, const ms_tensor *x,
                            const ms_tensor *weight, const ms_tensor *mean, const ms_tensor *invstd,
                            const ms_tensor *sums, double count, ms_tensor *dx) {
  int64_t n, c, s;
  dims(x, &n, &c, &s);
  const double *sg = (const double *)ms_data(sums), *sgx = sg + c;
  double *k = malloc(sizeof(double) * 3 * (size_t)(c > 0 ? c : 1));
  if (!k)
    return ms_fail(MS_ERR_OOM, "batch_norm_backward_global: out of memory (input %s)", ms_desc(x));
  /* dx = k1 g + k2 x + k3: batch_norm_backward's coefficients with the global sums and count */
  for (int64_t i = 0; i < c; i++) {
    double w = weight ? at(weight, i) : 1.0, inv = at(invstd, i), m = at(mean, i);
    k[i] = w * inv;
    k[c + i] = -w * inv * inv * inv * sgx[i] / count;
    k[2 * c + i] = -k[c + i] * m - w * inv * sg[i] / count;
  }
  int st = ms_cpu_bn_affine(ctx, gy, x, n, c, s, k, k + c, k + 2 * c, dx);
  free(k);
  return st;
}
