/* internal.h: tensor/storage/context layouts and helpers shared by the core and backends. */
#ifndef MS_INTERNAL_H
#define MS_INTERNAL_H

#include "moonseg.h"

#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#define MS_MAX_DIMS 8

typedef struct ms_storage {
  int64_t refcount; /* touched with __atomic builtins */
  void *data;
  int64_t nbytes;
  int64_t serial; /* creation order, from 1; 0 for ms_wrap_host's stack storages */
  ms_device_type device;
  int device_index;
} ms_storage;

struct ms_tensor {
  ms_storage *storage;
  int ndim;
  int64_t shape[MS_MAX_DIMS];
  int64_t strides[MS_MAX_DIMS]; /* in elements */
  int64_t offset;               /* in elements */
  ms_dtype dtype;
};

/* ---- streams and events (owned by the context; calls in core/backend.h) ---- */
typedef struct ms_stream {
  ms_device_type device;
  int index;
  void *handle; /* the backend's stream (cudaStream_t); NULL on the host */
} ms_stream;

typedef struct ms_event {
  ms_device_type device;
  int index;
  int recorded;  /* set by record */
  int completed; /* host: set by record (host work is synchronous) */
  void *handle;  /* the backend's event (cudaEvent_t); NULL on the host */
} ms_event;

#define MS_CTX_MAX_STREAMS 8

struct ms_context {
  int num_threads;
  int batch_invariant; /* ms_context_set_batch_invariant */
  void *dnnl; /* oneDNN engine, stream and primitive cache (cpu/dnnl_ctx.c) */
  void *cuda; /* CUDA device state when built with CUDA */
  ms_stream streams[2][MS_CTX_MAX_STREAMS]; /* current stream per device type and index */
};

/* ---- errors (core/error.c) ---- */
/* Records a formatted message for ms_last_error() and returns status. */
int ms_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "[2, 3, 4] f32" style description; thread-local ring of buffers, valid until
 * a few more calls on the same thread. */
const char *ms_desc(const ms_tensor *t);
const char *ms_shape_str(const int64_t *shape, int ndim);

/* ---- dtypes (core/dtype.c, dtype.h for inline conversions) ---- */
int ms_dtype_valid(int dtype);
int ms_dtype_is_float(ms_dtype d);
static inline int ms_is_half(ms_dtype d) { return d == MS_F16 || d == MS_BF16; }
int ms_dtype_is_int(ms_dtype d); /* integral incl. u8 and bool */
ms_dtype ms_promote(ms_dtype a, ms_dtype b);
/* Promotion where one operand is a 0-dim tensor of the same kind: the other wins. */
ms_dtype ms_promote_tensors(const ms_tensor *a, const ms_tensor *b);

/* ---- storage and tensors (core/alloc.c, core/tensor.c) ---- */
int ms_storage_new(int64_t nbytes, ms_device_type device, int device_index, ms_storage **out);
void ms_storage_retain(ms_storage *s);
void ms_storage_release(ms_storage *s);
/* A new contiguous tensor; device memory through the backend's allocator. */
int ms_tensor_new(const int64_t *shape, int ndim, ms_dtype dtype, ms_device_type device,
                  int device_index, ms_tensor **out);
/* A new contiguous tensor shaped and placed like t (dtype given). */
int ms_tensor_new_like(const ms_tensor *t, ms_dtype dtype, ms_tensor **out);
/* A new contiguous tensor of the given shape on the device (type and index) of `on`. */
int ms_tensor_new_on(const ms_tensor *on, const int64_t *shape, int ndim, ms_dtype dtype,
                     ms_tensor **out);
/* Host devices cpu:0 .. cpu:(MS_MAX_CPU_DEVICES - 1): same kernels, separate identities. */
#define MS_MAX_CPU_DEVICES 8
/* "cpu:1" / "cuda:0"; thread-local ring of buffers like ms_desc. */
const char *ms_device_str(ms_device_type device, int index);
static inline int ms_same_device(const ms_tensor *a, const ms_tensor *b) {
  return a->storage->device == b->storage->device &&
         a->storage->device_index == b->storage->device_index;
}
/* A handle sharing t's storage with new geometry (refcount + 1). */
int ms_tensor_make_view(const ms_tensor *t, const int64_t *shape, const int64_t *strides, int ndim,
                        int64_t offset, ms_tensor **out);
static inline int64_t ms_numel_of(const int64_t *shape, int ndim) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  return n;
}
static inline int64_t ms_numel(const ms_tensor *t) { return ms_numel_of(t->shape, t->ndim); }
static inline char *ms_data(const ms_tensor *t) {
  return (char *)t->storage->data + t->offset * ms_dtype_size(t->dtype);
}
int ms_is_contiguous(const ms_tensor *t);
void ms_contiguous_strides(const int64_t *shape, int ndim, int64_t *strides);
/* Normalises a possibly negative dim against ndim; fails naming op. */
int ms_wrap_dim(const char *op, int dim, int ndim, int *out);
/* Standard checks: non-NULL tensor; same device for all given (NULL skipped). */
int ms_check_tensor(const char *op, const char *name, const ms_tensor *t);
int ms_check_same_device(const char *op, const ms_tensor *a, const ms_tensor *b);
int ms_check_float(const char *op, const char *name, const ms_tensor *t);
/* Broadcast shape of a and b (numpy rules), or an error naming op. */
int ms_broadcast_shapes(const char *op, const int64_t *a, int na, const int64_t *b, int nb,
                        int64_t *out, int *nout);
/* Wraps host memory as a temporary tensor (storage and tensor on the stack). */
void ms_wrap_host(ms_storage *st, ms_tensor *t, void *data, const int64_t *shape, int ndim,
                  ms_dtype dtype);

/* ---- converting to and from a backend's compute dtype (ops/creation.c; the dtype comes from
 * the backend's `supports`, core/backend.h) ---- */
/* A contiguous tensor of dtype wd holding t's values (an alias when t already is one). */
int ms_to_work(ms_context *ctx, const ms_tensor *t, ms_dtype wd, ms_tensor **out);
/* Replaces *t (of the work dtype) by a copy in dtype d when they differ. */
int ms_from_work(ms_context *ctx, ms_tensor **t, ms_dtype d);

/* ---- elementwise iteration (core/iter.c) ---- */
#define MS_ITER_MAX_OPS 4
typedef struct ms_iter {
  int nops; /* operand 0 is the output */
  int ndim; /* after coalescing; innermost last */
  int64_t shape[MS_MAX_DIMS];
  int64_t strides[MS_ITER_MAX_OPS][MS_MAX_DIMS]; /* bytes */
  char *data[MS_ITER_MAX_OPS];
  int64_t numel;
} ms_iter;
/* Builds an iterator of ops[i] broadcast to shape (ops[0] must have that shape). */
int ms_iter_build(ms_iter *it, int nops, const ms_tensor *const *ops, const int64_t *shape,
                  int ndim);
/* fn is called on runs of the innermost dim: data[i] points at operand i's first
 * element, strides[i] is its byte step, n the run length. */
typedef void (*ms_loop_fn)(char **data, const int64_t *strides, int64_t n, void *arg);
/* Runs fn over the whole iterator, split over ctx's threads when numel >= grain. */
void ms_iter_run(ms_context *ctx, const ms_iter *it, ms_loop_fn fn, void *arg, int64_t grain);

/* ---- threads ---- */
int ms_threads(const ms_context *ctx);
#define MS_GRAIN 32768

#endif
