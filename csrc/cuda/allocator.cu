/* allocator.cu: the CUDA caching allocator (size-class bins, stream-tagged reuse, stats). */
#include <pthread.h>
#include <stdlib.h>

#include "cuda_util.cuh"

/* Blocks are rounded up to a size class: 512 bytes below 64 KiB, then 4 classes per power of
 * two (at most 25% slack). A freed block goes to its class's free list tagged with the
 * stream it was allocated on and is only handed out again for that stream, where stream
 * order makes the reuse safe without a synchronisation. All ops of a device run on the
 * device's one compute stream (ms_cuda_stream), so in practice every block is reused.
 * empty_cache() returns the free blocks to the driver; an allocation that fails empties the
 * cache and retries once before it reports out of memory. */

#define MS_CU_SMALL 65536
#define MS_CU_CLASSES 256
#define MS_CU_HASH 4096

typedef struct cu_block {
  void *ptr;
  int64_t size; /* class size, what the driver gave */
  cudaStream_t stream;
  struct cu_block *next;
} cu_block;

typedef struct cu_device {
  int ready;
  pthread_mutex_t lock;
  cudaStream_t stream;
  cu_block *free_bins[MS_CU_CLASSES];
  cu_block *live[MS_CU_HASH];
  int64_t allocated, reserved, peak, storages;
} cu_device;

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static cu_device devices[MS_CUDA_MAX_DEVICES];

static int size_class(int64_t n, int64_t *cap) {
  if (n <= MS_CU_SMALL) {
    *cap = (n + 511) & ~(int64_t)511;
    if (*cap == 0) *cap = 512;
    return (int)(*cap / 512) - 1; /* 0..127 */
  }
  int k = 63 - __builtin_clzll((unsigned long long)n);
  int64_t base = (int64_t)1 << k, step = base >> 2;
  int sub = (int)((n - base + step - 1) / step);
  if (sub == 4) k++, sub = 0, base <<= 1, step <<= 1;
  *cap = base + sub * step;
  int c = 128 + (k - 16) * 4 + sub;
  return c < MS_CU_CLASSES ? c : -1; /* -1: huge, not binned (exact-size reuse list) */
}

static unsigned hash_ptr(const void *p) {
  uintptr_t x = (uintptr_t)p >> 9;
  x ^= x >> 13;
  return (unsigned)(x * 2654435761u) % MS_CU_HASH;
}

int ms_cuda_fail(const char *op, const char *call, cudaError_t e) {
  return ms_fail(e == cudaErrorMemoryAllocation ? MS_ERR_OOM : MS_ERR_INTERNAL,
                 "%s: %s failed: %s (%s)", op, call, cudaGetErrorString(e), cudaGetErrorName(e));
}

extern "C" int ms_cuda_device_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError(); /* no driver or no device: clear the sticky-free error and say 0 */
    return 0;
  }
  return n;
}

/* The device's table entry, initialised on first use; device becomes current. */
static int device_get(int index, const char *op, cu_device **out) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return ms_fail(MS_ERR_DEVICE, "%s: cuda:%d requested but no CUDA device is usable (%s: %s)", op,
                   index, cudaGetErrorName(e), cudaGetErrorString(e));
  }
  if (index < 0 || index >= n || index >= MS_CUDA_MAX_DEVICES)
    return ms_fail(MS_ERR_DEVICE, "%s: cuda:%d requested but %d CUDA device%s visible", op, index,
                   n, n == 1 ? " is" : "s are");
  MS_CU(op, cudaSetDevice(index));
  cu_device *d = &devices[index];
  if (!__atomic_load_n(&d->ready, __ATOMIC_ACQUIRE)) {
    pthread_mutex_lock(&init_lock);
    if (!d->ready) {
      cudaStream_t s;
      e = cudaStreamCreate(&s); /* blocking: also ordered with the legacy default stream */
      if (e != cudaSuccess) {
        pthread_mutex_unlock(&init_lock);
        return ms_cuda_fail(op, "cudaStreamCreate(&s)", e);
      }
      pthread_mutex_init(&d->lock, NULL);
      d->stream = s;
      __atomic_store_n(&d->ready, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&init_lock);
  }
  *out = d;
  return MS_OK;
}

int ms_cuda_stream(int index, const char *op, cudaStream_t *out) {
  cu_device *d;
  int st = device_get(index, op, &d);
  if (st) return st;
  *out = d->stream;
  return MS_OK;
}

/* Frees d's cached blocks; caller holds d->lock. */
static int release_free(cu_device *d, const char *op) {
  int st = MS_OK;
  for (int c = 0; c < MS_CU_CLASSES; c++) {
    while (d->free_bins[c]) {
      cu_block *b = d->free_bins[c];
      d->free_bins[c] = b->next;
      cudaError_t e = cudaFree(b->ptr);
      if (e != cudaSuccess && !st) st = ms_cuda_fail(op, "cudaFree(block)", e);
      d->reserved -= b->size;
      free(b);
    }
  }
  return st;
}

int ms_cuda_storage_alloc(ms_storage *s) {
  const char *op = "cuda allocator";
  cu_device *d;
  int st = device_get(s->device_index, op, &d);
  if (st) return st;
  if (s->nbytes == 0) { /* nothing to hold; kernels never touch an empty tensor's data */
    s->data = NULL;
    pthread_mutex_lock(&d->lock);
    d->storages++;
    pthread_mutex_unlock(&d->lock);
    return MS_OK;
  }
  int64_t cap;
  int c = size_class(s->nbytes, &cap);
  if (c < 0) c = MS_CU_CLASSES - 1, cap = (s->nbytes + 2097151) & ~(int64_t)2097151;
  pthread_mutex_lock(&d->lock);
  cu_block *b = NULL, **pp = &d->free_bins[c];
  for (; *pp; pp = &(*pp)->next) {
    if ((*pp)->stream == d->stream && (*pp)->size == cap) {
      b = *pp;
      *pp = b->next;
      break;
    }
  }
  if (!b) {
    b = (cu_block *)calloc(1, sizeof *b);
    if (!b) {
      pthread_mutex_unlock(&d->lock);
      return ms_fail(MS_ERR_OOM, "%s: out of host memory for a block header", op);
    }
    cudaError_t e = cudaMalloc(&b->ptr, (size_t)cap);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      release_free(d, op);
      e = cudaMalloc(&b->ptr, (size_t)cap);
    }
    if (e != cudaSuccess) {
      int64_t alloc = d->allocated, res = d->reserved;
      pthread_mutex_unlock(&d->lock);
      free(b);
      cudaGetLastError();
      size_t fr = 0, tot = 0;
      cudaMemGetInfo(&fr, &tot);
      cudaGetLastError();
      return ms_fail(e == cudaErrorMemoryAllocation ? MS_ERR_OOM : MS_ERR_INTERNAL,
                     "CUDA out of memory on cuda:%d: asked %lld bytes (%.1f MiB), %lld allocated, "
                     "%lld reserved by moonseg, %.1f of %.1f MiB free on the device "
                     "(cudaMalloc: %s)",
                     s->device_index, (long long)s->nbytes, s->nbytes / 1048576.0, (long long)alloc,
                     (long long)res, fr / 1048576.0, tot / 1048576.0, cudaGetErrorString(e));
    }
    b->size = cap;
    b->stream = d->stream;
    d->reserved += cap;
  }
  unsigned h = hash_ptr(b->ptr);
  b->next = d->live[h];
  d->live[h] = b;
  d->allocated += cap;
  d->storages++;
  if (d->allocated > d->peak) d->peak = d->allocated;
  pthread_mutex_unlock(&d->lock);
  s->data = b->ptr;
  return MS_OK;
}

void ms_cuda_storage_free(ms_storage *s) {
  int i = s->device_index;
  if (i < 0 || i >= MS_CUDA_MAX_DEVICES || !devices[i].ready) return;
  cu_device *d = &devices[i];
  pthread_mutex_lock(&d->lock);
  d->storages--;
  if (s->data) {
    unsigned h = hash_ptr(s->data);
    for (cu_block **pp = &d->live[h]; *pp; pp = &(*pp)->next) {
      cu_block *b = *pp;
      if (b->ptr != s->data) continue;
      *pp = b->next;
      d->allocated -= b->size;
      int64_t cap;
      int c = size_class(b->size, &cap);
      if (c < 0) c = MS_CU_CLASSES - 1;
      b->next = d->free_bins[c];
      d->free_bins[c] = b;
      break;
    }
  }
  pthread_mutex_unlock(&d->lock);
}

int ms_cuda_memory_stats(int device, ms_memory_stats *out) {
  cu_device *d;
  int st = device_get(device, "memory_stats", &d);
  if (st) return st;
  pthread_mutex_lock(&d->lock);
  out->allocated = d->allocated;
  out->reserved = d->reserved;
  out->peak = d->peak;
  out->storages = d->storages;
  pthread_mutex_unlock(&d->lock);
  return MS_OK;
}

int ms_cuda_memory_reset_peak(int device) {
  cu_device *d;
  int st = device_get(device, "reset_peak_memory", &d);
  if (st) return st;
  pthread_mutex_lock(&d->lock);
  d->peak = d->allocated;
  pthread_mutex_unlock(&d->lock);
  return MS_OK;
}

int ms_cuda_empty_cache(int device) {
  cu_device *d;
  int st = device_get(device, "empty_cache", &d);
  if (st) return st;
  pthread_mutex_lock(&d->lock);
  st = release_free(d, "empty_cache");
  pthread_mutex_unlock(&d->lock);
  return st;
}
