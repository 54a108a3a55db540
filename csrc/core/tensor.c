/* tensor.c: tensor handles, metadata accessors and contiguity. */
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

int ms_tensor_make_view(const ms_tensor *t, const int64_t *shape, const int64_t *strides, int ndim,
                        int64_t offset, ms_tensor **out) {
  if (ndim < 0 || ndim > MS_MAX_DIMS)
    return ms_fail(MS_ERR_INVALID, "view: %d dims, at most %d supported", ndim, MS_MAX_DIMS);
  ms_tensor *v = calloc(1, sizeof *v);
  if (!v) return ms_fail(MS_ERR_OOM, "view: out of host memory");
  v->storage = t->storage;
  ms_storage_retain(t->storage);
  v->ndim = ndim;
  if (ndim) memcpy(v->shape, shape, sizeof(int64_t) * ndim);
  if (ndim) memcpy(v->strides, strides, sizeof(int64_t) * ndim);
  v->offset = offset;
  v->dtype = t->dtype;
  *out = v;
  return MS_OK;
}

void ms_contiguous_strides(const int64_t *shape, int ndim, int64_t *strides) {
  int64_t s = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i] > 1 ? shape[i] : 1;
  }
}

int ms_tensor_new(const int64_t *shape, int ndim, ms_dtype dtype, ms_device_type device,
                  int device_index, ms_tensor **out) {
  if (ndim < 0 || ndim > MS_MAX_DIMS)
    return ms_fail(MS_ERR_INVALID, "tensor: %d dims, at most %d supported", ndim, MS_MAX_DIMS);
  if (!ms_dtype_valid(dtype)) return ms_fail(MS_ERR_DTYPE, "tensor: invalid dtype %d", dtype);
  if (device != MS_CPU && device != MS_CUDA)
    return ms_fail(MS_ERR_DEVICE, "tensor: invalid device type %d", device);
  if (device_index < 0 || (device == MS_CPU && device_index >= MS_MAX_CPU_DEVICES))
    return ms_fail(MS_ERR_DEVICE, "tensor: no device %s (cpu devices are cpu:0 .. cpu:%d)",
                   ms_device_str(device, device_index), MS_MAX_CPU_DEVICES - 1);
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0)
      return ms_fail(MS_ERR_INVALID, "tensor: negative size in shape %s",
                     ms_shape_str(shape, ndim));
    if (shape[i] && n > INT64_MAX / 16 / shape[i])
      return ms_fail(MS_ERR_INVALID, "tensor: shape %s is too large", ms_shape_str(shape, ndim));
    n *= shape[i];
  }
  ms_tensor *t = calloc(1, sizeof *t);
  if (!t) return ms_fail(MS_ERR_OOM, "tensor: out of host memory");
  int st = ms_storage_new(n * ms_dtype_size(dtype), device, device_index, &t->storage);
  if (st) {
    free(t);
    return st;
  }
  t->ndim = ndim;
  if (ndim) memcpy(t->shape, shape, sizeof(int64_t) * ndim);
  ms_contiguous_strides(shape, ndim, t->strides);
  t->dtype = dtype;
  *out = t;
  return MS_OK;
}

int ms_tensor_new_like(const ms_tensor *t, ms_dtype dtype, ms_tensor **out) {
  return ms_tensor_new(t->shape, t->ndim, dtype, t->storage->device, t->storage->device_index, out);
}

int ms_tensor_new_on(const ms_tensor *on, const int64_t *shape, int ndim, ms_dtype dtype,
                     ms_tensor **out) {
  return ms_tensor_new(shape, ndim, dtype, on->storage->device, on->storage->device_index, out);
}

void ms_tensor_free(ms_tensor *t) {
  if (!t) return;
  ms_storage_release(t->storage);
  free(t);
}

int ms_tensor_alias(const ms_tensor *t, ms_tensor **out) {
  if (!t) return ms_fail(MS_ERR_INVALID, "alias: tensor is NULL");
  return ms_tensor_make_view(t, t->shape, t->strides, t->ndim, t->offset, out);
}

int ms_tensor_ndim(const ms_tensor *t) { return t->ndim; }
int64_t ms_tensor_size(const ms_tensor *t, int dim) {
  return dim >= 0 && dim < t->ndim ? t->shape[dim] : -1;
}
int64_t ms_tensor_stride(const ms_tensor *t, int dim) {
  return dim >= 0 && dim < t->ndim ? t->strides[dim] : 0;
}
int64_t ms_tensor_offset(const ms_tensor *t) { return t->offset; }
int64_t ms_tensor_numel(const ms_tensor *t) { return ms_numel(t); }
ms_dtype ms_tensor_dtype(const ms_tensor *t) { return t->dtype; }
ms_device_type ms_tensor_device_type(const ms_tensor *t) { return t->storage->device; }
int ms_tensor_device_index(const ms_tensor *t) { return t->storage->device_index; }
int ms_tensor_is_contiguous(const ms_tensor *t) { return ms_is_contiguous(t); }
void *ms_tensor_data_ptr(const ms_tensor *t) {
  return t->storage->device == MS_CPU ? ms_data(t) : NULL;
}
int ms_tensor_same_storage(const ms_tensor *a, const ms_tensor *b) {
  return a && b && a->storage == b->storage;
}
int64_t ms_tensor_storage_nbytes(const ms_tensor *t) { return t->storage->nbytes; }
int64_t ms_tensor_storage_serial(const ms_tensor *t) { return t->storage->serial; }

int ms_is_contiguous(const ms_tensor *t) {
  int64_t s = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    if (t->shape[i] == 1) continue;
    if (t->strides[i] != s) return 0;
    s *= t->shape[i];
  }
  return 1;
}

int ms_wrap_dim(const char *op, int dim, int ndim, int *out) {
  int lo = ndim ? -ndim : -1, hi = ndim ? ndim - 1 : 0;
  if (dim < lo || dim > hi)
    return ms_fail(MS_ERR_INVALID, "%s: dim %d out of range for a %d-d tensor (valid %d..%d)", op,
                   dim, ndim, lo, hi);
  *out = dim < 0 ? dim + (ndim ? ndim : 1) : dim;
  return MS_OK;
}

int ms_check_tensor(const char *op, const char *name, const ms_tensor *t) {
  if (!t) return ms_fail(MS_ERR_INVALID, "%s: %s is NULL", op, name);
  return MS_OK;
}

int ms_check_same_device(const char *op, const ms_tensor *a, const ms_tensor *b) {
  if (!a || !b) return MS_OK;
  if (!ms_same_device(a, b))
    return ms_fail(MS_ERR_DEVICE, "%s: operands on different devices (%s vs %s)", op,
                   ms_device_str(a->storage->device, a->storage->device_index),
                   ms_device_str(b->storage->device, b->storage->device_index));
  return MS_OK;
}

const char *ms_device_str(ms_device_type device, int index) {
  static __thread char ring[4][32];
  static __thread int next;
  char *b = ring[next++ & 3];
  snprintf(b, sizeof ring[0], "%s:%d",
           device == MS_CPU    ? "cpu"
           : device == MS_CUDA ? "cuda"
                               : "?",
           index);
  return b;
}

int ms_check_float(const char *op, const char *name, const ms_tensor *t) {
  if (!ms_dtype_is_float(t->dtype))
    return ms_fail(MS_ERR_DTYPE, "%s: %s must be floating point, got %s", op, name, ms_desc(t));
  return MS_OK;
}

int ms_broadcast_shapes(const char *op, const int64_t *a, int na, const int64_t *b, int nb,
                        int64_t *out, int *nout) {
  int n = na > nb ? na : nb;
  if (n > MS_MAX_DIMS) return ms_fail(MS_ERR_INVALID, "%s: too many dims", op);
  for (int i = 0; i < n; i++) {
    int64_t da = i < n - na ? 1 : a[i - (n - na)];
    int64_t db = i < n - nb ? 1 : b[i - (n - nb)];
    if (da != db && da != 1 && db != 1)
      return ms_fail(MS_ERR_INVALID,
                     "%s: shapes %s and %s are not broadcastable (dim %d: %lld vs %lld)", op,
                     ms_shape_str(a, na), ms_shape_str(b, nb), i, (long long)da, (long long)db);
    out[i] = da == 1 ? db : da;
  }
  *nout = n;
  return MS_OK;
}

void ms_wrap_host(ms_storage *st, ms_tensor *t, void *data, const int64_t *shape, int ndim,
                  ms_dtype dtype) {
  memset(st, 0, sizeof *st);
  memset(t, 0, sizeof *t);
  st->refcount = 1;
  st->data = data;
  st->device = MS_CPU;
  t->storage = st;
  t->ndim = ndim;
  if (ndim) memcpy(t->shape, shape, sizeof(int64_t) * ndim);
  ms_contiguous_strides(shape, ndim, t->strides);
  t->dtype = dtype;
}
