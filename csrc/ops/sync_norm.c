/* sync_norm.c: the per-rank pieces of synchronized batch norm (SyncBatchNorm): f64 moments and
 * gradient sums of this rank's batch, and dx from globally reduced sums, validated here and run by
 * the backend table's sync_bn entries (the kernels plain batch_norm uses), so N ranks x B round
 * like one process with N*B. */
#include "../core/backend.h"

static int check_x(const char *op, const ms_tensor *x) {
  if (ms_check_tensor(op, "input", x)) return MS_ERR_INVALID;
  if (ms_check_float(op, "input", x)) return MS_ERR_DTYPE;
  if (x->ndim < 2)
    return ms_fail(MS_ERR_INVALID, "%s: input must be [N, C, ...], got %s", op, ms_desc(x));
  return MS_OK;
}

/* A per-channel input: 1-d float of c elements on x's device. */
static int check_vec(const char *op, const char *name, const ms_tensor *t, int64_t c,
                     const ms_tensor *x) {
  if (ms_check_tensor(op, name, t)) return MS_ERR_INVALID;
  if (t->ndim != 1 || t->shape[0] != c || !ms_dtype_is_float(t->dtype))
    return ms_fail(MS_ERR_INVALID, "%s: %s is %s, expected a float [%lld] (input %s)", op, name,
                   ms_desc(t), (long long)c, ms_desc(x));
  return ms_check_same_device(op, x, t);
}

static int check_grad(const char *op, const ms_tensor *grad_out, const ms_tensor *x) {
  if (ms_check_tensor(op, "grad_out", grad_out) || ms_check_float(op, "grad_out", grad_out))
    return MS_ERR_INVALID;
  if (grad_out->ndim != x->ndim ||
      memcmp(grad_out->shape, x->shape, sizeof(int64_t) * (size_t)x->ndim))
    return ms_fail(MS_ERR_INVALID, "%s: grad_out %s does not match input %s", op, ms_desc(grad_out),
                   ms_desc(x));
  return ms_check_same_device(op, x, grad_out);
}

/* An f64 [2, c] output on x's device. */
static int pair_new(const ms_tensor *x, ms_tensor **out) {
  int64_t shape[2] = {2, x->shape[1]};
  return ms_tensor_new_on(x, shape, 2, MS_F64, out);
}

int ms_batch_norm_moments(ms_context *ctx, const ms_tensor *x, ms_tensor **out) {
  const char *op = "batch_norm_moments";
  int st = check_x(op, x);
  if (st) return st;
  if (!out) return ms_fail(MS_ERR_INVALID, "%s: out is NULL", op);
  ms_dtype cd;
  const ms_backend *be = ms_backend_get(MS_OP_SYNC_BN_MOMENTS, NULL, x, x->dtype, &cd);
  if (!be) return MS_ERR_UNSUPPORTED;
  ms_tensor *xw = NULL, *o = NULL;
  if (!(st = ms_to_work(ctx, x, cd, &xw)) && !(st = pair_new(x, &o)) &&
      !(st = be->sync_bn_moments(ctx, xw, o)))
    *out = o, o = NULL;
  ms_tensor_free(xw);
  ms_tensor_free(o);
  return st;
}

int ms_batch_norm_grad_sums(ms_context *ctx, const ms_tensor *grad_out, const ms_tensor *x,
                            const ms_tensor *mean, ms_tensor **out) {
  const char *op = "batch_norm_grad_sums";
  int st = check_x(op, x);
  if (st) return st;
  if (!out) return ms_fail(MS_ERR_INVALID, "%s: out is NULL", op);
  if ((st = check_grad(op, grad_out, x)) || (st = check_vec(op, "mean", mean, x->shape[1], x)))
    return st;
  ms_dtype cd;
  const ms_backend *be = ms_backend_get(MS_OP_SYNC_BN_GRAD_SUMS, NULL, x, x->dtype, &cd);
  if (!be) return MS_ERR_UNSUPPORTED;
  ms_tensor *xw = NULL, *gw = NULL, *o = NULL;
  if (!(st = ms_to_work(ctx, x, cd, &xw)) && !(st = ms_to_work(ctx, grad_out, cd, &gw)) &&
      !(st = pair_new(x, &o)) && !(st = be->sync_bn_grad_sums(ctx, gw, xw, mean, o)))
    *out = o, o = NULL;
  ms_tensor_free(xw);
  ms_tensor_free(gw);
  ms_tensor_free(o);
  return st;
}

int ms_batch_norm_backward_global(ms_context *ctx, const ms_tensor *grad_out, const ms_tensor *x,
                                  const ms_tensor *weight, const ms_tensor *mean,
                                  const ms_tensor *invstd, const ms_tensor *sums, double count,
                                  ms_tensor **dx) {
  const char *op = "batch_norm_backward_global";
  int st = check_x(op, x);
  if (st) return st;
  if (!dx) return ms_fail(MS_ERR_INVALID, "%s: dx is NULL", op);
  int64_t c = x->shape[1];
  if ((st = check_grad(op, grad_out, x)) ||
      (weight && (st = check_vec(op, "weight", weight, c, x))) ||
      (st = check_vec(op, "mean", mean, c, x)) || (st = check_vec(op, "invstd", invstd, c, x)))
    return st;
  if (ms_check_tensor(op, "sums", sums)) return MS_ERR_INVALID;
  if (sums->dtype != MS_F64 || ms_numel_of(sums->shape, sums->ndim) != 2 * c ||
      !ms_is_contiguous(sums))
    return ms_fail(MS_ERR_INVALID, "%s: sums is %s, expected contiguous f64 [2, %lld]", op,
                   ms_desc(sums), (long long)c);
  if ((st = ms_check_same_device(op, x, sums))) return st;
  if (!(count > 0)) return ms_fail(MS_ERR_INVALID, "%s: count %g must be positive", op, count);
  ms_dtype cd;
  const ms_backend *be = ms_backend_get(MS_OP_SYNC_BN_BACKWARD, NULL, x, x->dtype, &cd);
  if (!be) return MS_ERR_UNSUPPORTED;
  ms_tensor *xw = NULL, *gw = NULL, *o = NULL;
  if (!(st = ms_to_work(ctx, x, cd, &xw)) && !(st = ms_to_work(ctx, grad_out, cd, &gw)) &&
      !(st = ms_tensor_new_on(x, x->shape, x->ndim, cd, &o)) &&
      !(st = be->sync_bn_backward(ctx, gw, xw, weight, mean, invstd, sums, count, o)) &&
      !(st = ms_from_work(ctx, &o, x->dtype)))
    *dx = o, o = NULL;
  ms_tensor_free(xw);
  ms_tensor_free(gw);
  ms_tensor_free(o);
  return st;
}
