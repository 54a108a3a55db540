/* sync_bn_merge.c: SyncBatchNorm's statistics exchange as two ops: a rank's f64 packet (count,
 * mean, count * variance) and the merge of the gathered packets into the global statistics (with
 * the running-stat update), validated here and run by the backend table's sync_bn entries, so a
 * layer's forward costs two calls and one all-gather instead of ~20 small tensor ops. */
#include <math.h>

#include "../core/backend.h"

int ms_batch_norm_stats_packet(ms_context *ctx, const ms_tensor *x, ms_tensor **out) {
  const char *op = "batch_norm_stats_packet";
  if (ms_check_tensor(op, "input", x)) return MS_ERR_INVALID;
  if (ms_check_float(op, "input", x)) return MS_ERR_DTYPE;
  if (x->ndim < 2)
    return ms_fail(MS_ERR_INVALID, "%s: input must be [N, C, ...], got %s", op, ms_desc(x));
  if (!out) return ms_fail(MS_ERR_INVALID, "%s: out is NULL", op);
  ms_dtype cd;
  const ms_backend *be = ms_backend_get(MS_OP_SYNC_BN_PACKET, NULL, x, x->dtype, &cd);
  if (!be) return MS_ERR_UNSUPPORTED;
  int64_t shape[1] = {2 * x->shape[1] + 1};
  ms_tensor *xw = NULL, *o = NULL;
  int st;
  if (!(st = ms_to_work(ctx, x, cd, &xw)) && !(st = ms_tensor_new_on(x, shape, 1, MS_F64, &o)) &&
      !(st = be->sync_bn_packet(ctx, xw, o)))
    *out = o, o = NULL;
  ms_tensor_free(xw);
  ms_tensor_free(o);
  return st;
}

/* A running statistic: NULL, or a 1-d float [c] on the packets' device. */
static int check_running(const char *op, const char *name, const ms_tensor *t, int64_t c,
                         const ms_tensor *all) {
  if (!t) return MS_OK;
  if (ms_check_tensor(op, name, t)) return MS_ERR_INVALID;
  if (t->ndim != 1 || t->shape[0] != c || !ms_dtype_is_float(t->dtype))
    return ms_fail(MS_ERR_INVALID, "%s: %s is %s, expected a float [%lld] (gathered %s)", op, name,
                   ms_desc(t), (long long)c, ms_desc(all));
  return ms_check_same_device(op, all, t);
}

int ms_batch_norm_merge_stats(ms_context *ctx, const ms_tensor *all, ms_dtype dtype, double eps,
                              ms_tensor *running_mean, ms_tensor *running_var, double momentum,
                              ms_tensor **mean, ms_tensor **invstd, ms_tensor **mean64,
                              ms_tensor **var64, double *count) {
  const char *op = "batch_norm_merge_stats";
  if (ms_check_tensor(op, "gathered", all)) return MS_ERR_INVALID;
  if (all->dtype != MS_F64 || all->ndim != 2 || all->shape[0] < 1 || all->shape[1] < 3 ||
      all->shape[1] % 2 == 0 || !ms_is_contiguous(all))
    return ms_fail(MS_ERR_INVALID,
                   "%s: gathered is %s, expected contiguous f64 [world size, 2C + 1] packets", op,
                   ms_desc(all));
  if ((int)dtype < 0 || dtype > MS_BOOL || !ms_dtype_is_float(dtype))
    return ms_fail(MS_ERR_DTYPE, "%s: dtype %d of mean and invstd is not a float type", op,
                   (int)dtype);
  if (!(eps >= 0) || !isfinite(eps) || !isfinite(momentum))
    return ms_fail(MS_ERR_INVALID, "%s: eps %g must be finite and >= 0, momentum %g finite", op,
                   eps, momentum);
  if (!mean || !invstd || !mean64 || !var64 || !count)
    return ms_fail(MS_ERR_INVALID, "%s: an output pointer is NULL", op);
  int64_t c = (all->shape[1] - 1) / 2;
  int st;
  if ((st = check_running(op, "running_mean", running_mean, c, all)) ||
      (st = check_running(op, "running_var", running_var, c, all)))
    return st;
  const ms_backend *be = ms_backend_get(MS_OP_SYNC_BN_MERGE, NULL, all, MS_F64, NULL);
  if (!be) return MS_ERR_UNSUPPORTED;
  int64_t shape[1] = {c};
  ms_tensor *o[4] = {NULL, NULL, NULL, NULL};
  double n = 0;
  if (!(st = ms_tensor_new_on(all, shape, 1, dtype, &o[0])) &&
      !(st = ms_tensor_new_on(all, shape, 1, dtype, &o[1])) &&
      !(st = ms_tensor_new_on(all, shape, 1, MS_F64, &o[2])) &&
      !(st = ms_tensor_new_on(all, shape, 1, MS_F64, &o[3])) &&
      !(st = be->sync_bn_merge(ctx, all, eps, momentum, running_mean, running_var, o[0], o[1], o[2],
                               o[3], &n))) {
    *mean = o[0], *invstd = o[1], *mean64 = o[2], *var64 = o[3], *count = n;
    return MS_OK;
  }
  for (int i = 0; i < 4; i++)
    ms_tensor_free(o[i]);
  return st;
}

int ms_batch_norm_param_grads(ms_context *ctx, const ms_tensor *sums, const ms_tensor *invstd,
                              ms_dtype dtype, ms_tensor **dweight, ms_tensor **dbias) {
  const char *op = "batch_norm_param_grads";
  if (ms_check_tensor(op, "sums", sums) || ms_check_tensor(op, "invstd", invstd))
    return MS_ERR_INVALID;
  if (invstd->ndim != 1 || !ms_dtype_is_float(invstd->dtype))
    return ms_fail(MS_ERR_INVALID, "%s: invstd is %s, expected a float [C]", op, ms_desc(invstd));
  int64_t c = invstd->shape[0];
  if (sums->dtype != MS_F64 || sums->ndim != 2 || sums->shape[0] != 2 || sums->shape[1] != c ||
      !ms_is_contiguous(sums))
    return ms_fail(MS_ERR_INVALID, "%s: sums is %s, expected contiguous f64 [2, %lld] (invstd %s)",
                   op, ms_desc(sums), (long long)c, ms_desc(invstd));
  int st;
  if ((st = ms_check_same_device(op, sums, invstd))) return st;
  if ((int)dtype < 0 || dtype > MS_BOOL || !ms_dtype_is_float(dtype))
    return ms_fail(MS_ERR_DTYPE, "%s: dtype %d of the gradients is not a float type", op,
                   (int)dtype);
  const ms_backend *be = ms_backend_get(MS_OP_SYNC_BN_PARAM_GRADS, NULL, sums, MS_F64, NULL);
  if (!be) return MS_ERR_UNSUPPORTED;
  int64_t shape[1] = {c};
  ms_tensor *dw = NULL, *db = NULL;
  if ((!dweight || !(st = ms_tensor_new_on(sums, shape, 1, dtype, &dw))) &&
      (!dbias || !(st = ms_tensor_new_on(sums, shape, 1, dtype, &db))) &&
      !(st = be->sync_bn_param_grads(ctx, sums, invstd, dw, db))) {
    if (dweight) *dweight = dw;
    if (dbias) *dbias = db;
    return MS_OK;
  }
  ms_tensor_free(dw);
  ms_tensor_free(db);
  return st;
}
