/* alloc.c: storage allocation, reference counting and per-device memory statistics. */
#include <pthread.h>
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
  while (now > peak && !__atomic_compare_exchange_n(&host_peak, &peak, now, 1, __ATOMIC_RELAXED,
                                                    __ATOMIC_RELAXED)) {
  }
}

/* Host caching allocator. Large blocks come back from free() to the OS (glibc unmaps them),
 * so every training step would pay page faults on fresh memory again; instead blocks of at
 * least MS_CACHE_MIN bytes are kept in size classes (4 per power of two, so at most 25%
 * slack) and reused. Small blocks go straight to malloc. */
#define MS_CACHE_MIN 65536
#define MS_CACHE_CLASSES 256

typedef struct cached_block {
  struct cached_block *next;
} cached_block;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static cached_block *cache_free[MS_CACHE_CLASSES];
static int64_t cache_reserved; /* bytes of cached-class blocks, live or free */
static int64_t small_live;     /* bytes of live blocks below MS_CACHE_MIN */

static int size_class(int64_t n, size_t *cap) {
  if (n < MS_CACHE_MIN) {
    *cap = ((size_t)(n ? n : 1) + 63) & ~(size_t)63;
    return -1;
  }
  int k = 63 - __builtin_clzll((unsigned long long)n); /* 2^k <= n */
  int64_t base = (int64_t)1 << k, step = base >> 2;
  int sub = (int)((n - base + step - 1) / step); /* 0..4 */
  if (sub == 4) k++, sub = 0, base <<= 1, step <<= 1;
  *cap = (size_t)(base + sub * step);
  return (k - 16) * 4 + sub;
}

static void *host_cache_take(int64_t n) {
  size_t cap;
  int c = size_class(n, &cap);
  if (c < 0 || c >= MS_CACHE_CLASSES) {
    void *p = aligned_alloc(64, cap);
    if (p) __atomic_add_fetch(&small_live, (int64_t)cap, __ATOMIC_RELAXED);
    return p;
  }
  pthread_mutex_lock(&cache_lock);
  cached_block *b = cache_free[c];
  if (b) cache_free[c] = b->next;
  pthread_mutex_unlock(&cache_lock);
  if (b) return b;
  void *p = aligned_alloc(64, cap);
  if (!p) { /* give the cache back to the system and try once more */
    ms_memory_empty_cache(MS_CPU, 0);
    p = aligned_alloc(64, cap);
  }
  if (p) __atomic_add_fetch(&cache_reserved, (int64_t)cap, __ATOMIC_RELAXED);
  return p;
}

static void host_cache_give(void *p, int64_t n) {
  size_t cap;
  int c = size_class(n, &cap);
  if (c < 0 || c >= MS_CACHE_CLASSES) {
    free(p);
    __atomic_sub_fetch(&small_live, (int64_t)cap, __ATOMIC_RELAXED);
    return;
  }
  cached_block *b = p;
  pthread_mutex_lock(&cache_lock);
  b->next = cache_free[c];
  cache_free[c] = b;
  pthread_mutex_unlock(&cache_lock);
}

int ms_memory_empty_cache(ms_device_type device, int index) {
  if (device != MS_CPU) {
#ifdef MS_WITH_CUDA
    return ms_cuda_empty_cache(index);
#else
    (void)index;
    return ms_fail(MS_ERR_UNSUPPORTED, "empty_cache: built without CUDA");
#endif
  }
  pthread_mutex_lock(&cache_lock);
  for (int c = 0; c < MS_CACHE_CLASSES; c++) {
    while (cache_free[c]) {
      cached_block *b = cache_free[c];
      cache_free[c] = b->next;
      int64_t base = (int64_t)1 << (c / 4 + 16);
      free(b);
      __atomic_sub_fetch(&cache_reserved, base + (c % 4) * (base >> 2), __ATOMIC_RELAXED);
    }
  }
  pthread_mutex_unlock(&cache_lock);
  return MS_OK;
}

int ms_storage_new(int64_t nbytes, ms_device_type device, int device_index, ms_storage **out) {
  static int64_t last_serial;
  if (nbytes < 0) return ms_fail(MS_ERR_INVALID, "storage: negative size %lld", (long long)nbytes);
  ms_storage *s = calloc(1, sizeof *s);
  if (!s) return ms_fail(MS_ERR_OOM, "storage: out of host memory for the storage header");
  s->refcount = 1;
  s->serial = __atomic_add_fetch(&last_serial, 1, __ATOMIC_RELAXED);
  s->nbytes = nbytes;
  s->device = device;
  s->device_index = device_index;
  if (device == MS_CPU) {
    s->data = host_cache_take(nbytes);
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
    host_cache_give(s->data, s->nbytes);
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
    out->reserved = __atomic_load_n(&cache_reserved, __ATOMIC_RELAXED) +
                    __atomic_load_n(&small_live, __ATOMIC_RELAXED);
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
