/* pool.c: validated entry points for 2-d max, average and adaptive average pooling. */
#include "../core/backend.h"

/* x must be a 4-d [N, C, H, W] floating-point tensor. */
static int check_nchw(const char *op, const char *name, const ms_tensor *x) {
  if (ms_check_tensor(op, name, x)) return MS_ERR_INVALID;
  if (ms_check_float(op, name, x)) return MS_ERR_DTYPE;
  if (x->ndim != 4)
    return ms_fail(MS_ERR_INVALID, "%s: %s must be 4-d [N, C, H, W], got %s", op, name, ms_desc(x));
  return MS_OK;
}

static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* PyTorch's pooling output size: with ceil_mode the last window must start inside the
 * input or the left padding. */
static int64_t pool_out(int64_t in, int k, int s, int pad, int ceil_mode) {
  int64_t o = floor_div(in + 2 * (int64_t)pad - k + (ceil_mode ? s - 1 : 0), s) + 1;
  if (ceil_mode && (o - 1) * s >= in + pad) o--;
  return o;
}

/* Validates p against x and writes the output shape. */
static int pool_shape(const char *op, const ms_tensor *x, const ms_pool2d_params *p,
                      int64_t *shape) {
  if (!p) return ms_fail(MS_ERR_INVALID, "%s: params are NULL", op);
  for (int d = 0; d < 2; d++) {
    if (p->kernel[d] < 1 || p->stride[d] < 1 || p->padding[d] < 0)
      return ms_fail(MS_ERR_INVALID,
                     "%s: kernel (%d, %d) and stride (%d, %d) must be >= 1 and padding (%d, %d) "
                     ">= 0 (input %s)",
                     op, p->kernel[0], p->kernel[1], p->stride[0], p->stride[1], p->padding[0],
                     p->padding[1], ms_desc(x));
    if (p->padding[d] > p->kernel[d] / 2)
      return ms_fail(MS_ERR_INVALID,
                     "%s: padding (%d, %d) must be at most half of kernel (%d, %d) (input %s)", op,
                     p->padding[0], p->padding[1], p->kernel[0], p->kernel[1], ms_desc(x));
  }
  shape[0] = x->shape[0];
  shape[1] = x->shape[1];
  for (int d = 0; d < 2; d++) {
    shape[2 + d] =
        pool_out(x->shape[2 + d], p->kernel[d], p->stride[d], p->padding[d], p->ceil_mode);
    if (shape[2 + d] < 1)
      return ms_fail(MS_ERR_INVALID,
                     "%s: kernel (%d, %d) is larger than the padded input %s with padding "
                     "(%d, %d): output would be %s",
                     op, p->kernel[0], p->kernel[1], ms_desc(x), p->padding[0], p->padding[1],
                     ms_shape_str(shape, 4));
  }
  return MS_OK;
}

static int same_shape(const ms_tensor *a, const int64_t *shape, int nd) {
  return a->ndim == nd && !memcmp(a->shape, shape, sizeof(int64_t) * (size_t)nd);
}

static int grad_shape_fail(const char *op, const ms_tensor *g, const int64_t *want,
                           const ms_tensor *x) {
  return ms_fail(MS_ERR_INVALID, "%s: grad_out %s, expected %s for input %s", op, ms_desc(g),
                 ms_shape_str(want, 4), ms_desc(x));
}

int ms_max_pool2d(ms_context *ctx, const ms_tensor *x, const ms_pool2d_params *p, ms_tensor **out,
                  ms_tensor **indices) {
  const char *op = "max_pool2d";
  int64_t shape[4];
  int st = check_nchw(op, "input", x);
  if (st || (st = pool_shape(op, x, p, shape))) return st;
  if (!out || !indices) return ms_fail(MS_ERR_INVALID, "max_pool2d: out or indices is NULL");
  ms_dtype wd;
  const ms_backend *be = ms_backend_get(MS_OP_MAX_POOL2D, op, x, x->dtype, &wd);
  if (!be) return MS_ERR_UNSUPPORTED;
  ms_tensor *xw = NULL, *y = NULL, *idx = NULL;
  if ((st = ms_to_work(ctx, x, wd, &xw)) || (st = ms_tensor_new_on(x, shape, 4, wd, &y)) ||
      (st = ms_tensor_new_on(x, shape, 4, MS_I64, &idx)) ||
      (st = be->max_pool2d(ctx, xw, p, y, idx)) || (st = ms_from_work(ctx, &y, x->dtype))) {
    ms_tensor_free(xw);
    ms_tensor_free(y);
    ms_tensor_free(idx);
    return st;
  }
  ms_tensor_free(xw);
  *out = y;
  *indices = idx;
  return MS_OK;
}

int ms_max_pool2d_backward(ms_context *ctx, const ms_tensor *grad_out, const ms_tensor *x,
                           const ms_tensor *indices, ms_tensor **dx) {
  const char *op = "max_pool2d_backward";
  int st = check_nchw(op, "input", x);
  if (st || (st = check_nchw(op, "grad_out", grad_out))) return st;
  if (ms_check_tensor(op, "indices", indices)) return MS_ERR_INVALID;
  if ((st = ms_check_same_device(op, x, grad_out)) || (st = ms_check_same_device(op, x, indices)))
    return st;
  if (indices->dtype != MS_I64 || !same_shape(indices, grad_out->shape, 4))
    return ms_fail(MS_ERR_INVALID, "%s: indices %s must be i64 shaped like grad_out %s", op,
                   ms_desc(indices), ms_desc(grad_out));
  if (grad_out->shape[0] != x->shape[0] || grad_out->shape[1] != x->shape[1])
    return ms_fail(MS_ERR_INVALID, "%s: grad_out %s does not match input %s in N and C", op,
                   ms_desc(grad_out), ms_desc(x));
  if (!dx) return ms_fail(MS_ERR_INVALID, "%s: dx is NULL", op);
  ms_dtype wd;
  const ms_backend *be = ms_backend_get(MS_OP_MAX_POOL2D_BACKWARD, op, x, x->dtype, &wd);
  if (!be) return MS_ERR_UNSUPPORTED;
  ms_tensor *gw = NULL, *iw = NULL, *d = NULL;
  if ((st = ms_to_work(ctx, grad_out, wd, &gw)) || (st = ms_contiguous(ctx, indices, &iw)) ||
      (st = ms_tensor_new_on(x, x->shape, 4, wd, &d)) ||
      (st = be->max_pool2d_backward(ctx, gw, iw, d)) || (st = ms_from_work(ctx, &d, x->dtype))) {
    ms_tensor_free(d);
    d = NULL;
  }
  ms_tensor_free(gw);
  ms_tensor_free(iw);
  if (st) return st;
  *dx = d;
  return MS_OK;
}

int ms_avg_pool2d(ms_context *ctx, const ms_tensor *x, const ms_pool2d_params *p, ms_tensor **out) {
  const char *op = "avg_pool2d";
  int64_t shape[4];
  int st = check_nchw(op, "input", x);
  if (st || (st = pool_shape(op, x, p, shape))) return st;
  if (!out) return ms_fail(MS_ERR_INVALID, "avg_pool2d: out is NULL");
  ms_dtype wd;
  const ms_backend *be = ms_backend_get(MS_OP_AVG_POOL2D, op, x, x->dtype, &wd);
  if (!be) return MS_ERR_UNSUPPORTED;
  ms_tensor *xw = NULL, *y = NULL;
  if ((st = ms_to_work(ctx, x, wd, &xw)) || (st = ms_tensor_new_on(x, shape, 4, wd, &y)) ||
      (st = be->avg_pool2d(ctx, xw, p, y)) || (st = ms_from_work(ctx, &y, x->dtype))) {
    ms_tensor_free(y);
    y = NULL;
  }
  ms_tensor_free(xw);
  if (st) return st;
  *out = y;
  return MS_OK;
}

int ms_avg_pool2d_backward(ms_context *ctx, const ms_tensor *grad_out, const ms_tensor *x,
                           const ms_pool2d_params *p, ms_tensor **dx) {
  const char *op = "avg_pool2d_backward";
  int64_t shape[4];
  int st = check_nchw(op, "input", x);
  if (st || (st = check_nchw(op, "grad_out", grad_out)) || (st = pool_shape(op, x, p, shape)) ||
      (st = ms_check_same_device(op, x, grad_out)))
    return st;
  if (!same_shape(grad_out, shape, 4)) return grad_shape_fail(op, grad_out, shape, x);
  if (!dx) return ms_fail(MS_ERR_INVALID, "%s: dx is NULL", op);
  ms_dtype wd;
  const ms_backend *be = ms_backend_get(MS_OP_AVG_POOL2D_BACKWARD, op, x, x->dtype, &wd);
  if (!be) return MS_ERR_UNSUPPORTED;
  ms_tensor *gw = NULL, *d = NULL;
  if ((st = ms_to_work(ctx, grad_out, wd, &gw)) ||
      (st = ms_tensor_new_on(x, x->shape, 4, wd, &d)) ||
      (st = be->avg_pool2d_backward(ctx, gw, p, d)) || (st = ms_from_work(ctx, &d, x->dtype))) {
    ms_tensor_free(d);
    d = NULL;
  }
  ms_tensor_free(gw);
  if (st) return st;
  *dx = d;
  return MS_OK;
}

int ms_adaptive_avg_pool2d(ms_context *ctx, const ms_tensor *x, int64_t out_h, int64_t out_w,
                           ms_tensor **out) {
  const char *op = "adaptive_avg_pool2d";
  int st = check_nchw(op, "input", x);
  if (st) return st;
  if (out_h < 1 || out_w < 1)
    return ms_fail(MS_ERR_INVALID, "%s: output size (%lld, %lld) must be >= 1 (input %s)", op,
                   (long long)out_h, (long long)out_w, ms_desc(x));
  if ((x->shape[2] < 1 || x->shape[3] < 1))
    return ms_fail(MS_ERR_INVALID, "%s: input %s has an empty spatial dim", op, ms_desc(x));
  if (!out) return ms_fail(MS_ERR_INVALID, "%s: out is NULL", op);
  int64_t shape[4] = {x->shape[0], x->shape[1], out_h, out_w};
  ms_dtype wd;
  const ms_backend *be = ms_backend_get(MS_OP_ADAPTIVE_AVG_POOL2D, op, x, x->dtype, &wd);
  if (!be) return MS_ERR_UNSUPPORTED;
  ms_tensor *xw = NULL, *y = NULL;
  if ((st = ms_to_work(ctx, x, wd, &xw)) || (st = ms_tensor_new_on(x, shape, 4, wd, &y)) ||
      (st = be->adaptive_avg_pool2d(ctx, xw, y)) || (st = ms_from_work(ctx, &y, x->dtype))) {
    ms_tensor_free(y);
    y = NULL;
  }
  ms_tensor_free(xw);
  if (st) return st;
  *out = y;
  return MS_OK;
}

int ms_adaptive_avg_pool2d_backward(ms_context *ctx, const ms_tensor *grad_out, const ms_tensor *x,
                                    ms_tensor **dx) {
  const char *op = "adaptive_avg_pool2d_backward";
  int st = check_nchw(op, "input", x);
  if (st || (st = check_nchw(op, "grad_out", grad_out)) ||
      (st = ms_check_same_device(op, x, grad_out)))
    return st;
  int64_t want[4] = {x->shape[0], x->shape[1], grad_out->shape[2], grad_out->shape[3]};
  if (!same_shape(grad_out, want, 4) || want[2] < 1 || want[3] < 1 || x->shape[2] < 1 ||
      x->shape[3] < 1)
    return grad_shape_fail(op, grad_out, want, x);
  if (!dx) return ms_fail(MS_ERR_INVALID, "%s: dx is NULL", op);
  ms_dtype wd;
  const ms_backend *be = ms_backend_get(MS_OP_ADAPTIVE_AVG_POOL2D_BACKWARD, op, x, x->dtype, &wd);
  if (!be) return MS_ERR_UNSUPPORTED;
  ms_tensor *gw = NULL, *d = NULL;
  if ((st = ms_to_work(ctx, grad_out, wd, &gw)) ||
      (st = ms_tensor_new_on(x, x->shape, 4, wd, &d)) ||
      (st = be->adaptive_avg_pool2d_backward(ctx, gw, d)) ||
      (st = ms_from_work(ctx, &d, x->dtype))) {
    ms_tensor_free(d);
    d = NULL;
  }
  ms_tensor_free(gw);
  if (st) return st;
  *dx = d;
  return MS_OK;
}
