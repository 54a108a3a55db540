/* alloc.c: storage allocation, reference counting and per-device memory statistics. */
#include <stdlib.h>

#include "internal.h"

#ifdef MS_WITH_CUDA
#include "../cuda/cuda_backend.h"
#endif

/* Host statistics; per process because host memory is (the CUDA allocator keeps its own). */
static int64_t host_allocated, host_peak, host_storages;

static void host_account(int64_t delta) {
  int64_t now = __atomic_add_fetch(&host_allocated, delta, __ATOMIC_RELAXED);
  __atomic_add_fetch(&host_storages, delta > 0 ? 1 : -1, __ATOMIC_RELAXED);
  int64_t peak = __atomic_load_n(&host_peak, __ATOMIC_RELAXED);
  while (now > peak &&
         !__atomic_compare_exchange_n(&host_peak, &peak, now, 1, __ATOMIC_RELAXED,
                                      __ATOMIC_RELAXED)) {
  }
}

int ms_storage_new(int64_t nbytes, ms_device_type device, int device_index, ms_storage **out) {
  if (nbytes < 0) return ms_fail(MS_ERR_INVALID, "storage: negative size %lld", (long long)nbytes);
  ms_storage *s = calloc(1, sizeof *s);
  if (!s) return ms_fail(MS_ERR_OOM, "storage: out of host memory for the storage header");
  s->refcount = 1;
  s->nbytes = nbytes;
  s->device = device;
  s->device_index = device_index;
  if (device == MS_CPU) {
    /* 64-byte alignment for vector loads; rounded size because aligned_alloc asks it. */
    size_t cap = ((size_t)(nbytes ? nbytes : 1) + 63) & ~(size_t)63;
    s->data = aligned_alloc(64, cap);
    if (!s->data) {
      free(s);
      return ms_fail(MS_ERR_OOM, "out of host memory: asked %lld bytes, %lld allocated",
                     (long long)nbytes, (long long)host_allocated);
    }
    host_account(nbytes);
  } else {
#ifdef MS_WITH_CUDA
    int st = ms_cuda_storage_alloc(s);
    if (st) {
      free(s);
      return st;
    }
#else
    free(s);
    return ms_fail(MS_ERR_UNSUPPORTED, "cuda:%d requested but moonseg was built without CUDA",
                   device_index);
#endif
  }
  *out = s;
  return MS_OK;
}

void ms_storage_retain(ms_storage *s) { __atomic_add_fetch(&s->refcount, 1, __ATOMIC_RELAXED); }

void ms_storage_release(ms_storage *s) {
  if (!s || __atomic_sub_fetch(&s->refcount, 1, __ATOMIC_ACQ_REL) != 0) return;
  if (s->device == MS_CPU) {
    free(s->data);
    host_account(-s->nbytes);
  } else {
#ifdef MS_WITH_CUDA
    ms_cuda_storage_free(s);
#endif
  }
  free(s);
}

int ms_memory_stats_get(ms_device_type device, int index, ms_memory_stats *out) {
  if (!out) return ms_fail(MS_ERR_INVALID, "memory_stats: out is NULL");
  if (device == MS_CPU) {
    out->allocated = __atomic_load_n(&host_allocated, __ATOMIC_RELAXED);
    out->reserved = out->allocated;
    out->peak = __atomic_load_n(&host_peak, __ATOMIC_RELAXED);
    out->storages = __atomic_load_n(&host_storages, __ATOMIC_RELAXED);
    return MS_OK;
  }
#ifdef MS_WITH_CUDA
  return ms_cuda_memory_stats(index, out);
#else
  (void)index;
  return ms_fail(MS_ERR_UNSUPPORTED, "memory_stats: built without CUDA");
#endif
}

int ms_memory_stats_reset_peak(ms_device_type device, int index) {
  if (device == MS_CPU) {
    __atomic_store_n(&host_peak, __atomic_load_n(&host_allocated, __ATOMIC_RELAXED),
                     __ATOMIC_RELAXED);
    return MS_OK;
  }
#ifdef MS_WITH_CUDA
  return ms_cuda_memory_reset_peak(index);
#else
  (void)index;
  return ms_fail(MS_ERR_UNSUPPORTED, "memory_stats: built without CUDA");
#endif
}
