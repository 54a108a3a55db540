/* softmax.c: validated softmax / log_softmax forward and backward over any dim. */
#include "../core/backend.h"

/* x seen as [outer, d, inner] around dim (a 0-d tensor is [1, 1, 1]). */
static void split_dims(const ms_tensor *x, int dim, int64_t *outer, int64_t *d, int64_t *inner) {
  *outer = 1, *d = 1, *inner = 1;
  for (int i = 0; i < x->ndim; i++) {
    if (i < dim)
      *outer *= x->shape[i];
    else if (i == dim)
      *d = x->shape[i];
    else
      *inner *= x->shape[i];
  }
}

static const char *op_name(int log) { return log ? "log_softmax" : "softmax"; }

int ms_softmax(ms_context *ctx, const ms_tensor *x, int dim, int log, ms_tensor **out) {
  const char *op = op_name(log);
  if (ms_check_tensor(op, "input", x)) return MS_ERR_INVALID;
  if (!out) return ms_fail(MS_ERR_INVALID, "%s: out is NULL", op);
  if (ms_check_float(op, "input", x)) return MS_ERR_DTYPE;
  int d;
  if (ms_wrap_dim(op, dim, x->ndim, &d)) return MS_ERR_INVALID;
  const ms_backend *be = ms_backend_get(MS_OP_SOFTMAX, op, x, x->dtype, NULL);
  if (!be) return MS_ERR_UNSUPPORTED;
  int64_t outer, n, inner;
  split_dims(x, d, &outer, &n, &inner);
  ms_tensor *xc = NULL, *y = NULL;
  int st = ms_contiguous(ctx, x, &xc);
  if (!st) st = ms_tensor_new_like(x, x->dtype, &y);
  if (!st) st = be->softmax(ctx, xc, outer, n, inner, log, y);
  ms_tensor_free(xc);
  if (st) {
    ms_tensor_free(y);
    return st;
  }
  *out = y;
  return MS_OK;
}

int ms_softmax_backward(ms_context *ctx, const ms_tensor *grad_out, const ms_tensor *y, int dim,
                        int log, ms_tensor **dx) {
  const char *op = log ? "log_softmax_backward" : "softmax_backward";
  if (ms_check_tensor(op, "grad_out", grad_out) || ms_check_tensor(op, "output", y))
    return MS_ERR_INVALID;
  if (!dx) return ms_fail(MS_ERR_INVALID, "%s: dx is NULL", op);
  if (ms_check_same_device(op, grad_out, y)) return MS_ERR_DEVICE;
  if (ms_check_float(op, "output", y)) return MS_ERR_DTYPE;
  if (grad_out->dtype != y->dtype)
    return ms_fail(MS_ERR_DTYPE, "%s: grad_out %s and output %s differ in dtype", op,
                   ms_desc(grad_out), ms_desc(y));
  if (grad_out->ndim != y->ndim ||
      memcmp(grad_out->shape, y->shape, sizeof(int64_t) * (size_t)y->ndim))
    return ms_fail(MS_ERR_INVALID, "%s: grad_out %s does not match output %s", op,
                   ms_desc(grad_out), ms_desc(y));
  int d;
  if (ms_wrap_dim(op, dim, y->ndim, &d)) return MS_ERR_INVALID;
  const ms_backend *be = ms_backend_get(MS_OP_SOFTMAX_BACKWARD, op, y, y->dtype, NULL);
  if (!be) return MS_ERR_UNSUPPORTED;
  int64_t outer, n, inner;
  split_dims(y, d, &outer, &n, &inner);
  ms_tensor *gc = NULL, *yc = NULL, *g = NULL;
  int st = ms_contiguous(ctx, grad_out, &gc);
  if (!st) st = ms_contiguous(ctx, y, &yc);
  if (!st) st = ms_tensor_new_like(y, y->dtype, &g);
  if (!st) st = be->softmax_backward(ctx, gc, yc, outer, n, inner, log, g);
  ms_tensor_free(gc);
  ms_tensor_free(yc);
  if (st) {
    ms_tensor_free(g);
    return st;
  }
  *dx = g;
  return MS_OK;
}
