/* creation.c: validated entry points for creation, copies, casts and random fills. */
#include <math.h>

#include "../core/backend.h"

int ms_empty(ms_context *ctx, const int64_t *shape, int ndim, ms_dtype dtype, ms_device_type device,
             int device_index, ms_tensor **out) {
  (void)ctx;
  if (!out) return ms_fail(MS_ERR_INVALID, "empty: out is NULL");
  if (ndim > 0 && !shape) return ms_fail(MS_ERR_INVALID, "empty: shape is NULL");
  return ms_tensor_new(shape, ndim, dtype, device, device_index, out);
}

int ms_fill_(ms_context *ctx, ms_tensor *t, double value) {
  if (ms_check_tensor("fill_", "tensor", t)) return MS_ERR_INVALID;
  const ms_backend *be = ms_backend_get(MS_OP_FILL, NULL, t, t->dtype, NULL);
  return be ? be->fill(ctx, t, value) : MS_ERR_UNSUPPORTED;
}

int ms_full(ms_context *ctx, const int64_t *shape, int ndim, ms_dtype dtype, ms_device_type device,
            int device_index, double value, ms_tensor **out) {
  ms_tensor *t;
  int st = ms_empty(ctx, shape, ndim, dtype, device, device_index, &t);
  if (st) return st;
  if ((st = ms_fill_(ctx, t, value))) {
    ms_tensor_free(t);
    return st;
  }
  *out = t;
  return MS_OK;
}

int ms_arange(ms_context *ctx, double start, double end, double step, ms_dtype dtype,
              ms_device_type device, int device_index, ms_tensor **out) {
  if (step == 0 || !isfinite(step) || !isfinite(start) || !isfinite(end))
    return ms_fail(MS_ERR_INVALID,
                   "arange: need finite start, end and a non-zero step (got %g, %g, %g)", start,
                   end, step);
  double count = ceil((end - start) / step);
  int64_t n = count > 0 ? (int64_t)count : 0;
  ms_tensor *t;
  /* host devices are filled in place; others get a host copy moved over */
  int host = device == MS_CPU;
  int st = ms_tensor_new(&n, 1, dtype, MS_CPU, host ? device_index : 0, &t);
  if (st) return st;
  if ((st = ms_backend_for(MS_CPU)->arange(ctx, t, start, step))) {
    ms_tensor_free(t);
    return st;
  }
  if (host) {
    *out = t;
    return MS_OK;
  }
  st = ms_to_device(ctx, t, device, device_index, out);
  ms_tensor_free(t);
  return st;
}

int ms_from_host(ms_context *ctx, const void *data, int64_t nbytes, const int64_t *shape, int ndim,
                 ms_dtype dtype, ms_device_type device, int device_index, ms_tensor **out) {
  if (!data && nbytes) return ms_fail(MS_ERR_INVALID, "from_host: data is NULL");
  if (!ms_dtype_valid(dtype)) return ms_fail(MS_ERR_DTYPE, "from_host: invalid dtype %d", dtype);
  int64_t need = ms_numel_of(shape, ndim) * ms_dtype_size(dtype);
  if (nbytes != need)
    return ms_fail(MS_ERR_INVALID, "from_host: %lld bytes given, shape %s of %s needs %lld",
                   (long long)nbytes, ms_shape_str(shape, ndim), ms_dtype_name(dtype),
                   (long long)need);
  ms_tensor *t;
  int host = device == MS_CPU;
  int st = ms_tensor_new(shape, ndim, dtype, MS_CPU, host ? device_index : 0, &t);
  if (st) return st;
  if (nbytes) memcpy(t->storage->data, data, (size_t)nbytes);
  if (host) {
    *out = t;
    return MS_OK;
  }
  st = ms_to_device(ctx, t, device, device_index, out);
  ms_tensor_free(t);
  return st;
}

/* Host tensor holding t's values (t itself when already on the host). */
static int host_view(ms_context *ctx, const ms_tensor *t, ms_tensor **host) {
  if (t->storage->device == MS_CPU) {
    *host = (ms_tensor *)t;
    return MS_OK;
  }
  return ms_to_device(ctx, t, MS_CPU, 0, host);
}

int ms_read_f64(ms_context *ctx, const ms_tensor *t, double *dst, int64_t n) {
  if (ms_check_tensor("read", "tensor", t)) return MS_ERR_INVALID;
  if (n != ms_numel(t))
    return ms_fail(MS_ERR_INVALID, "read: buffer of %lld for %s", (long long)n, ms_desc(t));
  ms_tensor *h;
  int st = host_view(ctx, t, &h);
  if (st) return st;
  ms_storage s;
  ms_tensor w;
  ms_wrap_host(&s, &w, dst, h->shape, h->ndim, MS_F64);
  ms_backend_for(MS_CPU)->copy(ctx, &w, h);
  if (h != t) ms_tensor_free(h);
  return MS_OK;
}

int ms_to_host(ms_context *ctx, const ms_tensor *t, void *dst, int64_t nbytes) {
  if (ms_check_tensor("to_host", "tensor", t)) return MS_ERR_INVALID;
  if (nbytes != ms_numel(t) * ms_dtype_size(t->dtype))
    return ms_fail(MS_ERR_INVALID, "to_host: buffer of %lld bytes for %s", (long long)nbytes,
                   ms_desc(t));
  ms_tensor *h;
  int st = host_view(ctx, t, &h);
  if (st) return st;
  ms_storage s;
  ms_tensor w;
  ms_wrap_host(&s, &w, dst, h->shape, h->ndim, h->dtype);
  ms_backend_for(MS_CPU)->copy(ctx, &w, h);
  if (h != t) ms_tensor_free(h);
  return MS_OK;
}

int ms_copy_(ms_context *ctx, ms_tensor *dst, const ms_tensor *src) {
  if (ms_check_tensor("copy_", "dst", dst) || ms_check_tensor("copy_", "src", src))
    return MS_ERR_INVALID;
  int64_t shape[MS_MAX_DIMS];
  int nd;
  if (ms_broadcast_shapes("copy_", dst->shape, dst->ndim, src->shape, src->ndim, shape, &nd))
    return MS_ERR_INVALID;
  if (nd != dst->ndim || memcmp(shape, dst->shape, sizeof(int64_t) * nd))
    return ms_fail(MS_ERR_INVALID, "copy_: source %s does not broadcast to destination %s",
                   ms_desc(src), ms_desc(dst));
  const ms_backend *be;
  if (ms_same_device(dst, src)) {
    be = ms_backend_get(MS_OP_COPY, NULL, dst, dst->dtype, NULL);
    return be ? be->copy(ctx, dst, src) : MS_ERR_UNSUPPORTED;
  }
  /* Between devices the non-host side's backend copies (cpu:0 -> cpu:1: the CPU's, a copy). */
  const ms_tensor *dev = dst->storage->device != MS_CPU ? dst : src;
  be = ms_backend_get(MS_OP_COPY_BETWEEN, NULL, dev, dev->dtype, NULL);
  return be ? be->copy_between(ctx, dst, src) : MS_ERR_UNSUPPORTED;
}

int ms_cast(ms_context *ctx, const ms_tensor *t, ms_dtype dtype, ms_tensor **out) {
  if (ms_check_tensor("cast", "tensor", t)) return MS_ERR_INVALID;
  if (!ms_dtype_valid(dtype)) return ms_fail(MS_ERR_DTYPE, "cast: invalid dtype %d", dtype);
  ms_tensor *o;
  int st = ms_tensor_new_like(t, dtype, &o);
  if (st) return st;
  if ((st = ms_copy_(ctx, o, t))) {
    ms_tensor_free(o);
    return st;
  }
  *out = o;
  return MS_OK;
}

int ms_contiguous(ms_context *ctx, const ms_tensor *t, ms_tensor **out) {
  if (ms_check_tensor("contiguous", "tensor", t)) return MS_ERR_INVALID;
  if (ms_is_contiguous(t)) return ms_tensor_alias(t, out);
  return ms_cast(ctx, t, t->dtype, out);
}

int ms_to_device(ms_context *ctx, const ms_tensor *t, ms_device_type device, int device_index,
                 ms_tensor **out) {
  if (ms_check_tensor("to", "tensor", t)) return MS_ERR_INVALID;
  ms_tensor *o;
  int st = ms_tensor_new(t->shape, t->ndim, t->dtype, device, device_index, &o);
  if (st) return st;
  if ((st = ms_copy_(ctx, o, t))) {
    ms_tensor_free(o);
    return st;
  }
  *out = o;
  return MS_OK;
}

static int check_random(const char *op, ms_generator *g, const ms_tensor *t) {
  if (!g) return ms_fail(MS_ERR_INVALID, "%s: generator is NULL", op);
  return ms_check_tensor(op, "tensor", t);
}

int ms_uniform_(ms_context *ctx, ms_generator *gen, ms_tensor *t, double low, double high) {
  if (check_random("uniform_", gen, t)) return MS_ERR_INVALID;
  if (!ms_dtype_is_float(t->dtype))
    return ms_fail(MS_ERR_DTYPE, "uniform_: needs a float tensor, got %s", ms_desc(t));
  if (!(low <= high)) return ms_fail(MS_ERR_INVALID, "uniform_: low %g > high %g", low, high);
  const ms_backend *be = ms_backend_get(MS_OP_UNIFORM, NULL, t, t->dtype, NULL);
  return be ? be->uniform(ctx, gen, t, low, high) : MS_ERR_UNSUPPORTED;
}

int ms_normal_(ms_context *ctx, ms_generator *gen, ms_tensor *t, double mean, double std) {
  if (check_random("normal_", gen, t)) return MS_ERR_INVALID;
  if (!ms_dtype_is_float(t->dtype))
    return ms_fail(MS_ERR_DTYPE, "normal_: needs a float tensor, got %s", ms_desc(t));
  if (!(std >= 0)) return ms_fail(MS_ERR_INVALID, "normal_: std must be >= 0, got %g", std);
  const ms_backend *be = ms_backend_get(MS_OP_NORMAL, NULL, t, t->dtype, NULL);
  return be ? be->normal(ctx, gen, t, mean, std) : MS_ERR_UNSUPPORTED;
}

int ms_randint_(ms_context *ctx, ms_generator *gen, ms_tensor *t, int64_t low, int64_t high) {
  if (check_random("randint_", gen, t)) return MS_ERR_INVALID;
  if (high <= low)
    return ms_fail(MS_ERR_INVALID, "randint_: empty range [%lld, %lld)", (long long)low,
                   (long long)high);
  const ms_backend *be = ms_backend_get(MS_OP_RANDINT, NULL, t, t->dtype, NULL);
  return be ? be->randint(ctx, gen, t, low, high) : MS_ERR_UNSUPPORTED;
}

int ms_dropout(ms_context *ctx, ms_generator *gen, const ms_tensor *x, double p, ms_tensor **out,
               ms_tensor **mask) {
  if (check_random("dropout", gen, x)) return MS_ERR_INVALID;
  if (ms_check_float("dropout", "input", x)) return MS_ERR_DTYPE;
  if (!(p >= 0 && p < 1)) return ms_fail(MS_ERR_INVALID, "dropout: p must be in [0, 1), got %g", p);
  const ms_backend *be = ms_backend_get(MS_OP_DROPOUT, NULL, x, x->dtype, NULL);
  if (!be) return MS_ERR_UNSUPPORTED;
  ms_tensor *xc = NULL, *o = NULL, *m = NULL;
  int st = ms_contiguous(ctx, x, &xc);
  if (!st) st = ms_tensor_new_like(x, x->dtype, &o);
  if (!st) st = ms_tensor_new_like(x, x->dtype, &m);
  if (!st) st = be->dropout(ctx, gen, xc, p, o, m);
  ms_tensor_free(xc);
  if (st) {
    ms_tensor_free(o);
    ms_tensor_free(m);
    return st;
  }
  *out = o;
  *mask = m;
  return MS_OK;
}

int ms_to_work(ms_context *ctx, const ms_tensor *t, ms_dtype wd, ms_tensor **out) {
  if (t->dtype == wd) return ms_contiguous(ctx, t, out);
  return ms_cast(ctx, t, wd, out);
}

int ms_from_work(ms_context *ctx, ms_tensor **t, ms_dtype d) {
  if ((*t)->dtype == d) return MS_OK;
  ms_tensor *c;
  int st = ms_cast(ctx, *t, d, &c);
  ms_tensor_free(*t);
  *t = st ? NULL : c;
  return st;
}
