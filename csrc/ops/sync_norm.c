/* sync_norm.c: the per-rank pieces of synchronized batch norm (SyncBatchNorm): f64 moments and
 * gradient sums of this rank's batch, and dx from globally reduced sums, all on the kernels plain
 * batch_norm uses, so N ranks x B round like one process with N*B. */
#include <stdlib.h>

#include "../core/dtype.h"
#include "../cpu/npr_kernels.h"

#define ON_CPU(t) ((t)->storage->device == MS_CPU)

static int check_x(const char *op, const ms_tensor *x) {
  if (ms_check_tensor(op, "input", x)) return MS_ERR_INVALID;
  if (ms_check_float(op, "input", x)) return MS_ERR_DTYPE;
  if (x->ndim < 2)
    return ms_fail(MS_ERR_INVALID, "%s: input must be [N, C, ...], got %s", op, ms_desc(x));
  if (!ON_CPU(x)) return ms_fail(MS_ERR_UNSUPPORTED, "%s: not implemented on CUDA yet", op);
  return MS_OK;
}

/* A per-channel input: 1-d float of c elements (or 2*c for sums) on the CPU. */
static int check_vec(const char *op, const char *name, const ms_tensor *t, int64_t c,
                     const ms_tensor *x) {
  if (ms_check_tensor(op, name, t)) return MS_ERR_INVALID;
  if (t->ndim != 1 || t->shape[0] != c || !ms_dtype_is_float(t->dtype))
    return ms_fail(MS_ERR_INVALID, "%s: %s is %s, expected a float [%lld] (input %s)", op, name,
                   ms_desc(t), (long long)c, ms_desc(x));
  return ms_check_same_device(op, x, t);
}

static double at(const ms_tensor *t, int64_t i) {
  return ms_load_f64(ms_data(t) + i * t->strides[0] * ms_dtype_size(t->dtype), t->dtype);
}

/* An f64 [2, c] tensor from two double arrays. */
static int pair_new(const double *a, const double *b, int64_t c, ms_tensor **out) {
  int64_t shape[2] = {2, c};
  int st = ms_tensor_new(shape, 2, MS_F64, MS_CPU, 0, out);
  if (st) return st;
  double *p = (double *)ms_data(*out);
  for (int64_t i = 0; i < c; i++) {
    p[i] = a[i];
    p[c + i] = b[i];
  }
  return MS_OK;
}

int ms_batch_norm_moments(ms_context *ctx, const ms_tensor *x, ms_tensor **out) {
  const char *op = "batch_norm_moments";
  int st = check_x(op, x);
  if (st) return st;
  if (!out) return ms_fail(MS_ERR_INVALID, "%s: out is NULL", op);
  int64_t n = x->shape[0], c = x->shape[1], s = ms_numel_of(x->shape + 2, x->ndim - 2);
  ms_tensor *xw = NULL;
  double *buf = malloc(sizeof(double) * 2 * (size_t)(c > 0 ? c : 1));
  if (!buf) return ms_fail(MS_ERR_OOM, "%s: out of memory (input %s)", op, ms_desc(x));
  if (!(st = ms_to_work(ctx, x, ms_work_dtype(x), &xw)) &&
      !(st = ms_cpu_bn_stats(ctx, xw, n, c, s, buf, buf + c)))
    st = pair_new(buf, buf + c, c, out);
  ms_tensor_free(xw);
  free(buf);
  return st;
}

int ms_batch_norm_grad_sums(ms_context *ctx, const ms_tensor *grad_out, const ms_tensor *x,
                            const ms_tensor *mean, ms_tensor **out) {
  const char *op = "batch_norm_grad_sums";
  int st = check_x(op, x);
  if (st) return st;
  if (!out) return ms_fail(MS_ERR_INVALID, "%s: out is NULL", op);
  if (ms_check_tensor(op, "grad_out", grad_out) || ms_check_float(op, "grad_out", grad_out))
    return MS_ERR_INVALID;
  if (grad_out->ndim != x->ndim ||
      memcmp(grad_out->shape, x->shape, sizeof(int64_t) * (size_t)x->ndim))
    return ms_fail(MS_ERR_INVALID, "%s: grad_out %s does not match input %s", op, ms_desc(grad_out),
                   ms_desc(x));
  int64_t n = x->shape[0], c = x->shape[1], s = ms_numel_of(x->shape + 2, x->ndim - 2);
  if ((st = check_vec(op, "mean", mean, c, x))) return st;
  ms_tensor *xw = NULL, *gw = NULL;
  double *buf = malloc(sizeof(double) * 3 * (size_t)(c > 0 ? c : 1));
  if (!buf) return ms_fail(MS_ERR_OOM, "%s: out of memory (input %s)", op, ms_desc(x));
  for (int64_t i = 0; i < c; i++)
    buf[2 * c + i] = at(mean, i);
  ms_dtype wd = ms_work_dtype(x);
  if (!(st = ms_to_work(ctx, x, wd, &xw)) && !(st = ms_to_work(ctx, grad_out, wd, &gw)) &&
      !(st = ms_cpu_bn_grad_sums(ctx, gw, xw, n, c, s, buf + 2 * c, buf, buf + c)))
    st = pair_new(buf, buf + c, c, out);
  ms_tensor_free(xw);
  ms_tensor_free(gw);
  free(buf);
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
  if (ms_check_tensor(op, "grad_out", grad_out) || ms_check_float(op, "grad_out", grad_out))
    return MS_ERR_INVALID;
  if (grad_out->ndim != x->ndim ||
      memcmp(grad_out->shape, x->shape, sizeof(int64_t) * (size_t)x->ndim))
    return ms_fail(MS_ERR_INVALID, "%s: grad_out %s does not match input %s", op, ms_desc(grad_out),
                   ms_desc(x));
  int64_t n = x->shape[0], c = x->shape[1], s = ms_numel_of(x->shape + 2, x->ndim - 2);
  if ((weight && (st = check_vec(op, "weight", weight, c, x))) ||
      (st = check_vec(op, "mean", mean, c, x)) || (st = check_vec(op, "invstd", invstd, c, x)))
    return st;
  if (ms_check_tensor(op, "sums", sums)) return MS_ERR_INVALID;
  if (sums->dtype != MS_F64 || ms_numel_of(sums->shape, sums->ndim) != 2 * c ||
      !ms_is_contiguous(sums))
    return ms_fail(MS_ERR_INVALID, "%s: sums is %s, expected contiguous f64 [2, %lld]", op,
                   ms_desc(sums), (long long)c);
  if (!(count > 0)) return ms_fail(MS_ERR_INVALID, "%s: count %g must be positive", op, count);
  const double *sg = (const double *)ms_data(sums), *sgx = sg + c;
  ms_tensor *xw = NULL, *gw = NULL, *o = NULL;
  double *k = malloc(sizeof(double) * 3 * (size_t)(c > 0 ? c : 1));
  if (!k) return ms_fail(MS_ERR_OOM, "%s: out of memory (input %s)", op, ms_desc(x));
  /* dx = k1 g + k2 x + k3: batch_norm_backward's coefficients with the global sums and count */
  for (int64_t i = 0; i < c; i++) {
    double w = weight ? at(weight, i) : 1.0, inv = at(invstd, i), m = at(mean, i);
    k[i] = w * inv;
    k[c + i] = -w * inv * inv * inv * sgx[i] / count;
    k[2 * c + i] = -k[c + i] * m - w * inv * sg[i] / count;
  }
  ms_dtype wd = ms_work_dtype(x);
  if (!(st = ms_to_work(ctx, x, wd, &xw)) && !(st = ms_to_work(ctx, grad_out, wd, &gw)) &&
      !(st = ms_tensor_new(x->shape, x->ndim, wd, MS_CPU, 0, &o)) &&
      !(st = ms_cpu_bn_affine(ctx, gw, xw, n, c, s, k, k + c, k + 2 * c, o)))
    st = ms_from_work(ctx, &o, x->dtype);
  ms_tensor_free(xw);
  ms_tensor_free(gw);
  free(k);
  if (st) {
    ms_tensor_free(o);
    return st;
  }
  *dx = o;
  return MS_OK;
}
