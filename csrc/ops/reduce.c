/* reduce.c: validated entry points for reductions over dims, arg max/min and sum_to. */
#include "../core/backend.h"

static const char *red_name(ms_redop op) {
  static const char *n[] = {"sum", "mean", "max", "min", "var", "prod"};
  return (int)op >= 0 && op <= MS_RED_PROD ? n[op] : "reduce";
}

int ms_reduce(ms_context *ctx, ms_redop op, const ms_tensor *x, const int *dims, int ndims,
              int keepdim, double p, ms_tensor **out) {
  if ((int)op < 0 || op > MS_RED_PROD) return ms_fail(MS_ERR_INVALID, "reduce: bad op %d", op);
  const char *name = red_name(op);
  if (ms_check_tensor(name, "x", x)) return MS_ERR_INVALID;
  if (!out) return ms_fail(MS_ERR_INVALID, "%s: out is NULL", name);
  if (ndims < 0 || ndims > MS_MAX_DIMS || (ndims > 0 && !dims))
    return ms_fail(MS_ERR_INVALID, "%s: bad dim list (%d dims)", name, ndims);
  int red[MS_MAX_DIMS] = {0};
  int st;
  for (int i = 0; i < ndims; i++) {
    int d;
    if ((st = ms_wrap_dim(name, dims[i], x->ndim, &d))) return st;
    if (x->ndim == 0) continue;
    if (red[d])
      return ms_fail(MS_ERR_INVALID, "%s: dim %d appears twice in the dim list for %s", name,
                     dims[i], ms_desc(x));
    red[d] = 1;
  }
  if (ndims == 0)
    for (int i = 0; i < x->ndim; i++)
      red[i] = 1;
  ms_dtype rt = x->dtype;
  if ((op == MS_RED_SUM || op == MS_RED_PROD) && !ms_dtype_is_float(x->dtype)) rt = MS_I64;
  if ((op == MS_RED_MEAN || op == MS_RED_VAR) && !ms_dtype_is_float(x->dtype))
    return ms_fail(MS_ERR_DTYPE, "%s: needs a floating-point tensor, got %s", name, ms_desc(x));
  if ((op == MS_RED_MAX || op == MS_RED_MIN) && x->dtype == MS_BOOL)
    return ms_fail(MS_ERR_DTYPE, "%s: not defined for bool tensors (got %s)", name, ms_desc(x));
  int64_t shape[MS_MAX_DIMS], r = 1;
  int nd = 0;
  for (int i = 0; i < x->ndim; i++) {
    if (red[i]) r *= x->shape[i];
    if (!red[i])
      shape[nd++] = x->shape[i];
    else if (keepdim)
      shape[nd++] = 1;
  }
  if (r == 0 && (op == MS_RED_MAX || op == MS_RED_MIN) && ms_numel(x) == 0)
    return ms_fail(MS_ERR_INVALID, "%s: cannot reduce %s over an empty dim (no identity)", name,
                   ms_desc(x));
  const ms_backend *be = ms_backend_get(MS_OP_REDUCE, name, x, x->dtype, NULL);
  if (!be) return MS_ERR_UNSUPPORTED;
  ms_tensor *xc = NULL, *o = NULL;
  if ((st = ms_contiguous(ctx, x, &xc))) return st;
  if (!(st = ms_tensor_new_on(x, shape, nd, rt, &o))) st = be->reduce(ctx, op, xc, red, p, o);
  ms_tensor_free(xc);
  if (st) {
    ms_tensor_free(o);
    return st;
  }
  *out = o;
  return MS_OK;
}

int ms_reduce_arg(ms_context *ctx, ms_redop op, const ms_tensor *x, int dim, int keepdim,
                  ms_tensor **values, ms_tensor **indices) {
  const char *name = op == MS_RED_MAX ? "max" : op == MS_RED_MIN ? "min" : "reduce_arg";
  if (op != MS_RED_MAX && op != MS_RED_MIN)
    return ms_fail(MS_ERR_INVALID, "reduce_arg: op must be max or min, got %d", op);
  if (ms_check_tensor(name, "x", x)) return MS_ERR_INVALID;
  if (!values || !indices) return ms_fail(MS_ERR_INVALID, "%s: values/indices is NULL", name);
  if (x->dtype == MS_BOOL)
    return ms_fail(MS_ERR_DTYPE, "%s: not defined for bool tensors (got %s)", name, ms_desc(x));
  int d, st;
  if ((st = ms_wrap_dim(name, dim, x->ndim, &d))) return st;
  int64_t n = x->ndim ? x->shape[d] : 1, outer = 1, inner = 1;
  int64_t shape[MS_MAX_DIMS];
  int nd = 0;
  for (int i = 0; i < x->ndim; i++) {
    if (i < d) outer *= x->shape[i];
    if (i > d) inner *= x->shape[i];
    if (i != d)
      shape[nd++] = x->shape[i];
    else if (keepdim)
      shape[nd++] = 1;
  }
  if (n == 0)
    return ms_fail(MS_ERR_INVALID, "%s: cannot reduce %s over the empty dim %d", name, ms_desc(x),
                   dim);
  const ms_backend *be = ms_backend_get(MS_OP_REDUCE_ARG, name, x, x->dtype, NULL);
  if (!be) return MS_ERR_UNSUPPORTED;
  ms_tensor *xc = NULL, *v = NULL, *ix = NULL;
  if ((st = ms_contiguous(ctx, x, &xc))) return st;
  if (!(st = ms_tensor_new_on(x, shape, nd, x->dtype, &v)) &&
      !(st = ms_tensor_new_on(x, shape, nd, MS_I64, &ix)))
    st = be->reduce_arg(ctx, op, xc, outer, n, inner, v, ix);
  ms_tensor_free(xc);
  if (st) {
    ms_tensor_free(v);
    ms_tensor_free(ix);
    return st;
  }
  *values = v;
  *indices = ix;
  return MS_OK;
}

int ms_sum_to(ms_context *ctx, const ms_tensor *grad, const int64_t *shape, int ndim,
              ms_tensor **out) {
  if (ms_check_tensor("sum_to", "grad", grad)) return MS_ERR_INVALID;
  if (!out) return ms_fail(MS_ERR_INVALID, "sum_to: out is NULL");
  if (ndim < 0 || ndim > grad->ndim || (ndim > 0 && !shape))
    return ms_fail(MS_ERR_INVALID, "sum_to: cannot reduce %s to shape %s", ms_desc(grad),
                   shape ? ms_shape_str(shape, ndim) : "(null)");
  int red[MS_MAX_DIMS] = {0}, lead = grad->ndim - ndim, any = 0;
  for (int i = 0; i < grad->ndim; i++) {
    if (i < lead) {
      red[i] = 1;
    } else {
      int64_t s = shape[i - lead];
      if (s != grad->shape[i]) {
        if (s != 1)
          return ms_fail(MS_ERR_INVALID, "sum_to: cannot reduce %s to shape %s (dim %d)",
                         ms_desc(grad), ms_shape_str(shape, ndim), i);
        red[i] = 1;
      }
    }
    any |= red[i] && grad->shape[i] != 1;
  }
  int st;
  ms_tensor *o = NULL, *gc = NULL;
  if (!any) { /* nothing to add up: a copy shaped as asked */
    ms_tensor *c = NULL;
    if ((st = ms_contiguous(ctx, grad, &gc))) return st;
    if (!(st = ms_cast(ctx, gc, gc->dtype, &c))) st = ms_view(c, shape, ndim, &o);
    ms_tensor_free(c);
    ms_tensor_free(gc);
    if (st) return st;
    *out = o;
    return MS_OK;
  }
  const ms_backend *be = ms_backend_get(MS_OP_REDUCE, "sum_to", grad, grad->dtype, NULL);
  if (!be) return MS_ERR_UNSUPPORTED;
  if ((st = ms_contiguous(ctx, grad, &gc))) return st;
  if (!(st = ms_tensor_new_on(grad, shape, ndim, grad->dtype, &o)))
    st = be->reduce(ctx, MS_RED_SUM, gc, red, 0, o);
  ms_tensor_free(gc);
  if (st) {
    ms_tensor_free(o);
    return st;
  }
  *out = o;
  return MS_OK;
}
