/* conv.c: validated entry points for conv2d and its backward; dispatch to the CPU kernels. */
#include <stdlib.h>

#include "../core/backend.h"

/* The dtype the backend writes dw and db in when it computes in cdt: cdt, or f32 when w is f32 and
 * the backend's backward-weights gives f32 gradients beside cdt operands natively. */
static ms_dtype grad_w_dtype(const ms_backend *be, const ms_tensor *w, ms_dtype cdt) {
  ms_dtype c;
  if (w->dtype == MS_F32 && cdt != MS_F32 && be->supports &&
      be->supports(MS_OP_CONV2D_F32_DW, cdt, &c) && c == cdt)
    return MS_F32;
  return cdt;
}

/* Checks shapes and params; fills the geometry. grad_out (may be NULL) must be the output shape. */
static int conv_check(const char *op, const ms_tensor *x, const ms_tensor *w, const ms_tensor *b,
                      const ms_tensor *gy, const ms_conv2d_params *p, ms_conv_geom *g) {
  if (ms_check_tensor(op, "x", x) || ms_check_tensor(op, "w", w)) return MS_ERR_INVALID;
  if (!p) return ms_fail(MS_ERR_INVALID, "%s: params are NULL", op);
  if (ms_check_same_device(op, x, w) || (b && ms_check_same_device(op, x, b)) ||
      (gy && ms_check_same_device(op, x, gy)))
    return MS_ERR_DEVICE;
  if (x->ndim != 4)
    return ms_fail(MS_ERR_INVALID, "%s: x must be 4-d [N, C, H, W], got %s", op, ms_desc(x));
  if (w->ndim != 4)
    return ms_fail(MS_ERR_INVALID, "%s: w must be 4-d [Cout, Cin/groups, kh, kw], got %s", op,
                   ms_desc(w));
  if (!ms_dtype_is_float(x->dtype))
    return ms_fail(MS_ERR_DTYPE, "%s: x must be floating point, got %s", op, ms_desc(x));
  /* f32 weights beside f16/bf16 activations: autocast's conv (the weights are converted inside the
   * op, and their gradients come back in f32) */
  if (w->dtype != x->dtype && !(w->dtype == MS_F32 && ms_is_half(x->dtype)))
    return ms_fail(MS_ERR_DTYPE,
                   "%s: x %s and w %s must have the same dtype (or f32 w with f16/bf16 x)", op,
                   ms_desc(x), ms_desc(w));
  for (int i = 0; i < 2; i++)
    if (p->stride[i] < 1 || p->dilation[i] < 1 || p->padding[i] < 0)
      return ms_fail(MS_ERR_INVALID,
                     "%s: need stride >= 1, dilation >= 1, padding >= 0; got stride (%d, %d), "
                     "padding (%d, %d), dilation (%d, %d)",
                     op, p->stride[0], p->stride[1], p->padding[0], p->padding[1], p->dilation[0],
                     p->dilation[1]);
  int64_t G = p->groups;
  if (G < 1) return ms_fail(MS_ERR_INVALID, "%s: groups must be >= 1, got %lld", op, (long long)G);
  int64_t C = x->shape[1], O = w->shape[0];
  if (C % G || O % G)
    return ms_fail(MS_ERR_INVALID,
                   "%s: groups %lld must divide input channels and output channels; x %s, w %s", op,
                   (long long)G, ms_desc(x), ms_desc(w));
  if (w->shape[1] * G != C)
    return ms_fail(
        MS_ERR_INVALID,
        "%s: channel mismatch: x %s has %lld channels, w %s expects %lld (w.shape[1] %lld "
        "x groups %lld)",
        op, ms_desc(x), (long long)C, ms_desc(w), (long long)(w->shape[1] * G),
        (long long)w->shape[1], (long long)G);
  if (b) {
    if (b->dtype != w->dtype)
      return ms_fail(MS_ERR_DTYPE, "%s: bias %s must have w's dtype (w %s)", op, ms_desc(b),
                     ms_desc(w));
    if (b->ndim != 1 || b->shape[0] != O)
      return ms_fail(MS_ERR_INVALID, "%s: bias must be [%lld] for w %s, got %s", op, (long long)O,
                     ms_desc(w), ms_desc(b));
  }
  g->n = x->shape[0], g->c = C, g->h = x->shape[2], g->w = x->shape[3];
  g->o = O, g->kh = w->shape[2], g->kw = w->shape[3], g->g = G;
  g->sh = p->stride[0], g->sw = p->stride[1], g->ph = p->padding[0], g->pw = p->padding[1];
  g->dh = p->dilation[0], g->dw = p->dilation[1];
  int64_t nh = g->h + 2 * g->ph - g->dh * (g->kh - 1) - 1;
  int64_t nw = g->w + 2 * g->pw - g->dw * (g->kw - 1) - 1;
  if (g->kh < 1 || g->kw < 1 || nh < 0 || nw < 0)
    return ms_fail(MS_ERR_INVALID,
                   "%s: output size would be <= 0: x %s, w %s, stride (%d, %d), padding (%d, %d), "
                   "dilation (%d, %d)",
                   op, ms_desc(x), ms_desc(w), p->stride[0], p->stride[1], p->padding[0],
                   p->padding[1], p->dilation[0], p->dilation[1]);
  g->oh = nh / g->sh + 1, g->ow = nw / g->sw + 1;
  if (gy) {
    if (gy->dtype != x->dtype)
      return ms_fail(MS_ERR_DTYPE, "%s: grad_out %s must have x's dtype (x %s)", op, ms_desc(gy),
                     ms_desc(x));
    int64_t want[4] = {g->n, O, g->oh, g->ow};
    if (gy->ndim != 4 || memcmp(gy->shape, want, sizeof want))
      return ms_fail(MS_ERR_INVALID, "%s: grad_out %s must be %s for x %s, w %s", op, ms_desc(gy),
                     ms_shape_str(want, 4), ms_desc(x), ms_desc(w));
  }
  return MS_OK;
}

/* t itself when contiguous and of dtype dt, else a contiguous copy in dt (*tmp owns it). */
static int prep(ms_context *ctx, const ms_tensor *t, ms_dtype dt, const ms_tensor **use,
                ms_tensor **tmp) {
  *tmp = NULL;
  *use = t;
  if (!t) return MS_OK;
  if (t->dtype == dt && ms_is_contiguous(t)) return MS_OK;
  int st = ms_cast(ctx, t, dt, tmp); /* ms_cast always gives a contiguous copy */
  if (!st) *use = *tmp;
  return st;
}

static int new_out(const ms_tensor *on, const int64_t *shape, int ndim, ms_dtype dt,
                   ms_tensor **out) {
  return ms_tensor_new_on(on, shape, ndim, dt, out);
}

int ms_conv2d(ms_context *ctx, const ms_tensor *x, const ms_tensor *w, const ms_tensor *b,
              const ms_conv2d_params *p, ms_tensor **out) {
  const char *op = "conv2d";
  if (!out) return ms_fail(MS_ERR_INVALID, "%s: out is NULL", op);
  ms_conv_geom g;
  int st = conv_check(op, x, w, b, NULL, p, &g);
  if (st) return st;
  ms_dtype cdt; /* the backend's precision policy: native, or converted in and out */
  const ms_backend *be = ms_backend_get(MS_OP_CONV2D, NULL, x, x->dtype, &cdt);
  if (!be) return MS_ERR_UNSUPPORTED;
  int64_t ys[4] = {g.n, g.o, g.oh, g.ow};
  const ms_tensor *xc, *wc, *bc;
  ms_tensor *tx = NULL, *tw = NULL, *tb = NULL, *y = NULL, *yc = NULL;
  if ((st = prep(ctx, x, cdt, &xc, &tx)) || (st = prep(ctx, w, cdt, &wc, &tw)) ||
      (st = prep(ctx, b, cdt, &bc, &tb)) || (st = new_out(x, ys, 4, cdt, &y)))
    goto done;
  if (ms_numel(y) > 0) {
    if (g.n * g.c == 0) {
      /* No input channels: the output is just the bias (or zero). */
      st = ms_fill_(ctx, y, 0);
      if (!st && b) {
        int64_t bs[3] = {g.o, 1, 1}, bst[3] = {1, 0, 0};
        ms_tensor *bv;
        if (!(st = ms_tensor_make_view(bc, bs, bst, 3, bc->offset, &bv))) {
          st = ms_copy_(ctx, y, bv);
          ms_tensor_free(bv);
        }
      }
    } else {
      st = be->conv2d(ctx, &g, xc, wc, bc, y);
    }
    if (st) goto done;
  }
  if (x->dtype != cdt) {
    if ((st = ms_cast(ctx, y, x->dtype, &yc))) goto done;
    ms_tensor_free(y);
    y = yc;
  }
  *out = y;
  y = NULL;
done:
  ms_tensor_free(tx);
  ms_tensor_free(tw);
  ms_tensor_free(tb);
  ms_tensor_free(y);
  return st;
}

int ms_conv2d_backward(ms_context *ctx, const ms_tensor *grad_out, const ms_tensor *x,
                       const ms_tensor *w, const ms_conv2d_params *p, ms_tensor **dx,
                       ms_tensor **dw, ms_tensor **db) {
  const char *op = "conv2d_backward";
  ms_conv_geom g;
  if (ms_check_tensor(op, "grad_out", grad_out)) return MS_ERR_INVALID;
  int st = conv_check(op, x, w, NULL, grad_out, p, &g);
  if (st) return st;
  if (!dx && !dw && !db) return MS_OK;
  ms_dtype cdt;
  const ms_backend *be = ms_backend_get(MS_OP_CONV2D_BACKWARD, NULL, x, x->dtype, &cdt);
  if (!be) return MS_ERR_UNSUPPORTED;
  /* oneDNN's bf16 backward gives db only beside dw: a bias-only or empty bf16 backward takes the
   * f32 path */
  if (cdt == MS_BF16 && ((db && !dw) || g.c == 0)) cdt = MS_F32;
  /* f32 w beside half x (autocast): w converted here, dw and db in f32 where the backend writes
   * them so (no bf16 rounding of the weight gradients, no cast back) */
  ms_dtype wdt = dw || db ? grad_w_dtype(be, w, cdt) : cdt;
  const ms_tensor *gc, *xc, *wc;
  ms_tensor *tg = NULL, *tx = NULL, *tw = NULL, *r[3] = {NULL, NULL, NULL};
  int64_t ws[4] = {g.o, g.c / g.g, g.kh, g.kw};
  if ((st = prep(ctx, grad_out, cdt, &gc, &tg)) || (st = prep(ctx, x, cdt, &xc, &tx)) ||
      (st = prep(ctx, w, cdt, &wc, &tw)))
    goto done;
  if ((dx && (st = new_out(x, x->shape, 4, cdt, &r[0]))) ||
      (dw && (st = new_out(x, ws, 4, wdt, &r[1]))) ||
      (db && (st = new_out(x, &g.o, 1, wdt, &r[2]))))
    goto done;
  if (ms_numel(grad_out) == 0 || g.c == 0) {
    /* Nothing flows: every wanted gradient is zero. */
    for (int i = 0; i < 3; i++)
      if (r[i] && (st = ms_fill_(ctx, r[i], 0))) goto done;
    if (r[2] && ms_numel(grad_out) > 0) {
      /* db is grad_out summed over N, H and W */
      const int red[4] = {1, 0, 1, 1};
      const ms_backend *rb = ms_backend_get(MS_OP_REDUCE, op, gc, gc->dtype, NULL);
      if ((st = rb ? rb->reduce(ctx, MS_RED_SUM, gc, red, 0, r[2]) : MS_ERR_UNSUPPORTED)) goto done;
    }
  } else if ((st = be->conv2d_backward(ctx, &g, gc, xc, wc, r[0], r[1], r[2]))) {
    if (st != MS_ERR_UNSUPPORTED || wdt == cdt) goto done;
    /* no kernel for f32 gradients at this geometry: cdt gradients, cast back below */
    ms_clear_error();
    ms_tensor_free(r[1]), ms_tensor_free(r[2]);
    r[1] = r[2] = NULL;
    if ((dw && (st = new_out(x, ws, 4, cdt, &r[1]))) ||
        (db && (st = new_out(x, &g.o, 1, cdt, &r[2]))) ||
        (st = be->conv2d_backward(ctx, &g, gc, xc, wc, r[0], r[1], r[2])))
      goto done;
  }
  /* back to the callers' dtypes: dx as x, dw and db as w */
  for (int i = 0; i < 3; i++) {
    ms_dtype want = i == 0 ? x->dtype : w->dtype;
    if (r[i] && r[i]->dtype != want) {
      ms_tensor *c;
      if ((st = ms_cast(ctx, r[i], want, &c))) goto done;
      ms_tensor_free(r[i]);
      r[i] = c;
    }
  }
  if (dx) *dx = r[0], r[0] = NULL;
  if (dw) *dw = r[1], r[1] = NULL;
  if (db) *db = r[2], r[2] = NULL;
done:
  ms_tensor_free(tg);
  ms_tensor_free(tx);
  ms_tensor_free(tw);
  for (int i = 0; i < 3; i++)
    ms_tensor_free(r[i]);
  return st;
}
