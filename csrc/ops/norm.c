/* norm.c: validated entry points for batch and layer normalization (forward and backward). */
#include <math.h>

#include "../core/backend.h"

/* A per-channel tensor must be a 1-d float CPU tensor of c elements. */
static int check_channel_vec(const char *op, const char *name, const ms_tensor *t, int64_t c,
                             const ms_tensor *x) {
  if (!t) return MS_OK;
  if (t->ndim != 1 || t->shape[0] != c)
    return ms_fail(MS_ERR_INVALID, "%s: %s is %s, expected [%lld] (C of input %s)", op, name,
                   ms_desc(t), (long long)c, ms_desc(x));
  if (!ms_dtype_is_float(t->dtype))
    return ms_fail(MS_ERR_DTYPE, "%s: %s must be floating point, got %s", op, name, ms_desc(t));
  return ms_check_same_device(op, x, t);
}

static int check_input(const char *op, const ms_tensor *x, int min_ndim) {
  if (ms_check_tensor(op, "input", x)) return MS_ERR_INVALID;
  if (ms_check_float(op, "input", x)) return MS_ERR_DTYPE;
  if (x->ndim < min_ndim)
    return ms_fail(MS_ERR_INVALID, "%s: input must have at least %d dims, got %s", op, min_ndim,
                   ms_desc(x));
  return MS_OK;
}

static int same_shape(const ms_tensor *a, const ms_tensor *b) {
  return a->ndim == b->ndim && !memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim);
}

/* ---- batch norm ------------------------------------------------------------------ */

int ms_batch_norm(ms_context *ctx, const ms_tensor *x, const ms_tensor *weight,
                  const ms_tensor *bias, ms_tensor *running_mean, ms_tensor *running_var,
                  int training, double momentum, double eps, ms_tensor **out, ms_tensor **save_mean,
                  ms_tensor **save_invstd) {
  const char *op = "batch_norm";
  int st = check_input(op, x, 2);
  if (st) return st;
  if (!out) return ms_fail(MS_ERR_INVALID, "batch_norm: out is NULL");
  int64_t c = x->shape[1];
  if ((st = check_channel_vec(op, "weight", weight, c, x)) ||
      (st = check_channel_vec(op, "bias", bias, c, x)) ||
      (st = check_channel_vec(op, "running_mean", running_mean, c, x)) ||
      (st = check_channel_vec(op, "running_var", running_var, c, x)))
    return st;
  if (!running_mean != !running_var)
    return ms_fail(MS_ERR_INVALID,
                   "batch_norm: give both running_mean and running_var or neither "
                   "(input %s)",
                   ms_desc(x));
  if (!training && !running_mean)
    return ms_fail(MS_ERR_INVALID,
                   "batch_norm: eval mode needs running_mean and running_var "
                   "(input %s)",
                   ms_desc(x));
  if (!(eps >= 0) || !isfinite(momentum))
    return ms_fail(MS_ERR_INVALID, "batch_norm: bad eps %g or momentum %g", eps, momentum);
  /* One value per channel in training (e.g. a 1x1 pooled map at batch 1) normalises to
   * zero as Paddle does (PyTorch refuses); the kernel then leaves the running stats alone. */
  ms_dtype wd;
  const ms_backend *be = ms_backend_get(MS_OP_BATCH_NORM, op, x, x->dtype, &wd);
  if (!be) return MS_ERR_UNSUPPORTED;
  ms_tensor *xw = NULL, *y = NULL, *sm = NULL, *si = NULL;
  /* statistics in f32 when the kernel computes in a half dtype */
  ms_dtype sd = wd == MS_F16 || wd == MS_BF16 ? MS_F32 : wd;
  if ((st = ms_to_work(ctx, x, wd, &xw)) || (st = ms_tensor_new_on(x, x->shape, x->ndim, wd, &y)) ||
      (st = ms_tensor_new_on(x, &c, 1, sd, &sm)) || (st = ms_tensor_new_on(x, &c, 1, sd, &si)))
    goto done;
  if ((st = be->batch_norm(ctx, xw, weight, bias, running_mean, running_var, training, momentum,
                           eps, y, sm, si)))
    goto done;
  st = ms_from_work(ctx, &y, x->dtype);
done:
  ms_tensor_free(xw);
  if (st || !save_mean) ms_tensor_free(sm);
  if (st || !save_invstd) ms_tensor_free(si);
  if (st) {
    ms_tensor_free(y);
    return st;
  }
  *out = y;
  if (save_mean) *save_mean = sm;
  if (save_invstd) *save_invstd = si;
  return MS_OK;
}

int ms_batch_norm_backward(ms_context *ctx, const ms_tensor *grad_out, const ms_tensor *x,
                           const ms_tensor *weight, const ms_tensor *save_mean,
                           const ms_tensor *save_invstd, int training, ms_tensor **dx,
                           ms_tensor **dweight, ms_tensor **dbias) {
  const char *op = "batch_norm_backward";
  int st = check_input(op, x, 2);
  if (st) return st;
  if (ms_check_tensor(op, "grad_out", grad_out) || ms_check_tensor(op, "save_mean", save_mean) ||
      ms_check_tensor(op, "save_invstd", save_invstd))
    return MS_ERR_INVALID;
  if (ms_check_float(op, "grad_out", grad_out)) return MS_ERR_DTYPE;
  if (!same_shape(grad_out, x))
    return ms_fail(MS_ERR_INVALID, "%s: grad_out %s does not match input %s", op, ms_desc(grad_out),
                   ms_desc(x));
  if ((st = ms_check_same_device(op, x, grad_out))) return st;
  int64_t c = x->shape[1];
  if ((st = check_channel_vec(op, "weight", weight, c, x)) ||
      (st = check_channel_vec(op, "save_mean", save_mean, c, x)) ||
      (st = check_channel_vec(op, "save_invstd", save_invstd, c, x)))
    return st;
  ms_dtype wd, pd = weight ? weight->dtype : x->dtype;
  const ms_backend *be = ms_backend_get(MS_OP_BATCH_NORM_BACKWARD, op, x, x->dtype, &wd);
  if (!be) return MS_ERR_UNSUPPORTED;
  ms_tensor *xw = NULL, *gw = NULL, *o = NULL, *tw = NULL, *tb = NULL;
  if ((st = ms_to_work(ctx, x, wd, &xw)) || (st = ms_to_work(ctx, grad_out, wd, &gw))) goto done;
  if ((dx && (st = ms_tensor_new_on(x, x->shape, x->ndim, wd, &o))) ||
      (dweight && (st = ms_tensor_new_on(x, &c, 1, pd, &tw))) ||
      (dbias && (st = ms_tensor_new_on(x, &c, 1, pd, &tb))))
    goto done;
  if ((st = be->batch_norm_backward(ctx, gw, xw, weight, save_mean, save_invstd, training, o, tw,
                                    tb)))
    goto done;
  if (o) st = ms_from_work(ctx, &o, x->dtype);
done:
  ms_tensor_free(xw);
  ms_tensor_free(gw);
  if (st) {
    ms_tensor_free(o);
    ms_tensor_free(tw);
    ms_tensor_free(tb);
    return st;
  }
  if (dx) *dx = o;
  if (dweight) *dweight = tw;
  if (dbias) *dbias = tb;
  return MS_OK;
}

/* ---- layer norm ------------------------------------------------------------------ */

static int check_ln(const char *op, const ms_tensor *x, int nn, const ms_tensor *t,
                    const char *name) {
  if (!t) return MS_OK;
  int lead = x->ndim - nn;
  if (t->ndim != nn || memcmp(t->shape, x->shape + lead, sizeof(int64_t) * (size_t)nn))
    return ms_fail(MS_ERR_INVALID, "%s: %s is %s, expected the normalized shape %s of input %s", op,
                   name, ms_desc(t), ms_shape_str(x->shape + lead, nn), ms_desc(x));
  if (ms_check_float(op, name, t)) return MS_ERR_DTYPE;
  return ms_check_same_device(op, x, t);
}

static int check_ln_ndim(const char *op, const ms_tensor *x, int nn) {
  if (nn < 1 || nn > x->ndim)
    return ms_fail(MS_ERR_INVALID, "%s: normalized_ndim %d out of range for input %s", op, nn,
                   ms_desc(x));
  return MS_OK;
}

int ms_layer_norm(ms_context *ctx, const ms_tensor *x, int normalized_ndim, const ms_tensor *weight,
                  const ms_tensor *bias, double eps, ms_tensor **out, ms_tensor **save_mean,
                  ms_tensor **save_rstd) {
  const char *op = "layer_norm";
  int st = check_input(op, x, 1);
  if (st) return st;
  if (!out) return ms_fail(MS_ERR_INVALID, "layer_norm: out is NULL");
  int nn = normalized_ndim, lead = x->ndim - nn;
  if ((st = check_ln_ndim(op, x, nn)) || (st = check_ln(op, x, nn, weight, "weight")) ||
      (st = check_ln(op, x, nn, bias, "bias")))
    return st;
  if (!(eps >= 0)) return ms_fail(MS_ERR_INVALID, "layer_norm: bad eps %g", eps);
  int64_t m = ms_numel_of(x->shape, lead), k = ms_numel_of(x->shape + lead, nn);
  ms_dtype wd;
  const ms_backend *be = ms_backend_get(MS_OP_LAYER_NORM, op, x, x->dtype, &wd);
  if (!be) return MS_ERR_UNSUPPORTED;
  ms_tensor *xw = NULL, *ww = NULL, *bw = NULL, *y = NULL, *mt = NULL, *rt = NULL;
  if ((st = ms_to_work(ctx, x, wd, &xw))) goto done;
  if (weight && (st = ms_to_work(ctx, weight, wd, &ww))) goto done;
  if (bias && (st = ms_to_work(ctx, bias, wd, &bw))) goto done;
  if ((st = ms_tensor_new_on(x, x->shape, x->ndim, wd, &y)) ||
      (st = ms_tensor_new_on(x, x->shape, lead, wd, &mt)) ||
      (st = ms_tensor_new_on(x, x->shape, lead, wd, &rt)))
    goto done;
  if (k > 0 && (st = be->layer_norm(ctx, xw, m, k, ww, bw, eps, y, mt, rt))) goto done;
  st = ms_from_work(ctx, &y, x->dtype);
done:
  ms_tensor_free(xw);
  ms_tensor_free(ww);
  ms_tensor_free(bw);
  if (st || !save_mean) ms_tensor_free(mt);
  if (st || !save_rstd) ms_tensor_free(rt);
  if (st) {
    ms_tensor_free(y);
    return st;
  }
  *out = y;
  if (save_mean) *save_mean = mt;
  if (save_rstd) *save_rstd = rt;
  return MS_OK;
}

int ms_layer_norm_backward(ms_context *ctx, const ms_tensor *grad_out, const ms_tensor *x,
                           int normalized_ndim, const ms_tensor *weight, const ms_tensor *save_mean,
                           const ms_tensor *save_rstd, ms_tensor **dx, ms_tensor **dweight,
                           ms_tensor **dbias) {
  const char *op = "layer_norm_backward";
  int st = check_input(op, x, 1);
  if (st) return st;
  if (ms_check_tensor(op, "grad_out", grad_out) || ms_check_tensor(op, "save_mean", save_mean) ||
      ms_check_tensor(op, "save_rstd", save_rstd))
    return MS_ERR_INVALID;
  if (ms_check_float(op, "grad_out", grad_out)) return MS_ERR_DTYPE;
  int nn = normalized_ndim, lead = x->ndim - nn;
  if ((st = check_ln_ndim(op, x, nn)) || (st = check_ln(op, x, nn, weight, "weight"))) return st;
  if (!same_shape(grad_out, x))
    return ms_fail(MS_ERR_INVALID, "%s: grad_out %s does not match input %s", op, ms_desc(grad_out),
                   ms_desc(x));
  if ((st = ms_check_same_device(op, x, grad_out))) return st;
  if ((st = ms_check_same_device(op, x, save_mean)) ||
      (st = ms_check_same_device(op, x, save_rstd)))
    return st;
  int64_t m = ms_numel_of(x->shape, lead), k = ms_numel_of(x->shape + lead, nn);
  if (ms_numel(save_mean) != m || ms_numel(save_rstd) != m)
    return ms_fail(MS_ERR_INVALID,
                   "%s: save_mean %s / save_rstd %s need %lld elements for input %s", op,
                   ms_desc(save_mean), ms_desc(save_rstd), (long long)m, ms_desc(x));
  ms_dtype wd, pd = weight ? weight->dtype : x->dtype;
  const ms_backend *be = ms_backend_get(MS_OP_LAYER_NORM_BACKWARD, op, x, x->dtype, &wd);
  if (!be) return MS_ERR_UNSUPPORTED;
  ms_tensor *xw = NULL, *gw = NULL, *ww = NULL, *mw = NULL, *rw = NULL;
  ms_tensor *o = NULL, *tw = NULL, *tb = NULL;
  if ((st = ms_to_work(ctx, x, wd, &xw)) || (st = ms_to_work(ctx, grad_out, wd, &gw)) ||
      (weight && (st = ms_to_work(ctx, weight, wd, &ww))) ||
      (st = ms_to_work(ctx, save_mean, wd, &mw)) || (st = ms_to_work(ctx, save_rstd, wd, &rw)))
    goto done;
  if (dx && (st = ms_tensor_new_on(x, x->shape, x->ndim, wd, &o))) goto done;
  if (dweight && (st = ms_tensor_new_on(x, x->shape + lead, nn, wd, &tw))) goto done;
  if (dbias && (st = ms_tensor_new_on(x, x->shape + lead, nn, wd, &tb))) goto done;
  if (m == 0 || k == 0) {
    if ((tw && (st = ms_fill_(ctx, tw, 0))) || (tb && (st = ms_fill_(ctx, tb, 0)))) goto done;
  } else if ((st = be->layer_norm_backward(ctx, gw, xw, m, k, ww, mw, rw, o, tw, tb))) {
    goto done;
  }
  if ((o && (st = ms_from_work(ctx, &o, x->dtype))) || (tw && (st = ms_from_work(ctx, &tw, pd))) ||
      (tb && (st = ms_from_work(ctx, &tb, pd))))
    goto done;
done:
  ms_tensor_free(xw);
  ms_tensor_free(gw);
  ms_tensor_free(ww);
  ms_tensor_free(mw);
  ms_tensor_free(rw);
  if (st) {
    ms_tensor_free(o);
    ms_tensor_free(tw);
    ms_tensor_free(tb);
    return st;
  }
  if (dx) *dx = o;
  if (dweight) *dweight = tw;
  if (dbias) *dbias = tb;
  return MS_OK;
}
