/* resize.c: validated entry points for 2-d interpolation (bilinear, nearest) and its backward. */
#include "../core/backend.h"

static int check_args(const char *op, const ms_tensor *t, int64_t h, int64_t w, ms_resize_mode mode,
                      const char *what) {
  if (ms_check_tensor(op, "input", t)) return MS_ERR_INVALID;
  if (ms_check_float(op, "input", t)) return MS_ERR_DTYPE;
  if (t->ndim != 4)
    return ms_fail(MS_ERR_INVALID, "%s: input must be 4-d [N, C, H, W], got %s", op, ms_desc(t));
  if (mode != MS_RESIZE_NEAREST && mode != MS_RESIZE_BILINEAR)
    return ms_fail(MS_ERR_INVALID, "%s: unknown mode %d (input %s)", op, (int)mode, ms_desc(t));
  if (h < 1 || w < 1 || t->shape[2] < 1 || t->shape[3] < 1)
    return ms_fail(MS_ERR_INVALID,
                   "%s: %s size (%lld, %lld) and input %s need every spatial "
                   "size >= 1",
                   op, what, (long long)h, (long long)w, ms_desc(t));
  return MS_OK;
}

static int run(ms_context *ctx, const char *op, const ms_tensor *src, const int64_t *shape,
               ms_resize_mode mode, int align_corners, int backward, ms_tensor **out) {
  ms_dtype wd;
  const ms_backend *be = ms_backend_get(backward ? MS_OP_INTERPOLATE_BACKWARD : MS_OP_INTERPOLATE,
                                        op, src, src->dtype, &wd);
  if (!be) return MS_ERR_UNSUPPORTED;
  ms_tensor *sw = NULL, *o = NULL, *c = NULL;
  int st = src->dtype == wd ? ms_contiguous(ctx, src, &sw) : ms_cast(ctx, src, wd, &sw);
  if (!st) st = ms_tensor_new_on(src, shape, 4, wd, &o);
  if (!st)
    st = backward ? be->interpolate_backward(ctx, sw, mode, align_corners, o)
                  : be->interpolate(ctx, sw, mode, align_corners, o);
  ms_tensor_free(sw);
  if (!st && wd != src->dtype) {
    st = ms_cast(ctx, o, src->dtype, &c);
    ms_tensor_free(o);
    o = c;
  }
  if (st) {
    ms_tensor_free(o);
    return st;
  }
  *out = o;
  return MS_OK;
}

int ms_interpolate(ms_context *ctx, const ms_tensor *x, int64_t out_h, int64_t out_w,
                   ms_resize_mode mode, int align_corners, ms_tensor **out) {
  int st = check_args("interpolate", x, out_h, out_w, mode, "output");
  if (st) return st;
  if (!out) return ms_fail(MS_ERR_INVALID, "interpolate: out is NULL");
  int64_t shape[4] = {x->shape[0], x->shape[1], out_h, out_w};
  return run(ctx, "interpolate", x, shape, mode, align_corners, 0, out);
}

int ms_interpolate_backward(ms_context *ctx, const ms_tensor *grad_out, int64_t in_h, int64_t in_w,
                            ms_resize_mode mode, int align_corners, ms_tensor **dx) {
  int st = check_args("interpolate_backward", grad_out, in_h, in_w, mode, "input");
  if (st) return st;
  if (!dx) return ms_fail(MS_ERR_INVALID, "interpolate_backward: dx is NULL");
  int64_t shape[4] = {grad_out->shape[0], grad_out->shape[1], in_h, in_w};
  return run(ctx, "interpolate_backward", grad_out, shape, mode, align_corners, 1, dx);
}
