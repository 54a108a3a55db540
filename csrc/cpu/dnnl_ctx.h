/* dnnl_ctx.h: per-context oneDNN engine/stream, an LRU cache of plans keyed by op + shapes, and
 * reusable workspace buffers (so repeated calls neither re-create primitives nor re-fault pages).
 */
#ifndef MS_DNNL_CTX_H
#define MS_DNNL_CTX_H
#include <dnnl.h>

#include "../core/internal.h"

#define MS_DNNL_CACHE 256
#define MS_DNNL_KEY_LEN 32
#define MS_DNNL_SLOTS 6

/* A cached value (e.g. a set of primitives for one conv shape) and how to free it. */
typedef void (*ms_dnnl_free_fn)(void *value);

typedef struct ms_dnnl_entry {
  int64_t key[MS_DNNL_KEY_LEN]; /* key[0] is the op kind (0 = unused); zero padded */
  void *value;
  ms_dnnl_free_fn free_fn;
  uint64_t last_use;
} ms_dnnl_entry;

typedef struct ms_dnnl {
  dnnl_engine_t engine;
  dnnl_stream_t stream;
  ms_dnnl_entry cache[MS_DNNL_CACHE];
  uint64_t clock;
  void *slot[MS_DNNL_SLOTS]; /* 64-byte aligned, grown on demand, kept */
  size_t slot_bytes[MS_DNNL_SLOTS];
} ms_dnnl;

/* The context's oneDNN state, created on first use. */
int ms_dnnl_get(ms_context *ctx, ms_dnnl **out);
/* The cached value for key (MS_DNNL_KEY_LEN int64s, key[0] != 0), or NULL. */
void *ms_dnnl_cache_find(ms_dnnl *d, const int64_t *key);
/* Stores value under key, evicting (freeing) the least recently used entry when full. */
void ms_dnnl_cache_put(ms_dnnl *d, const int64_t *key, void *value, ms_dnnl_free_fn free_fn);
/* Workspace slot i with at least nbytes (contents not kept across growth), or NULL on OOM. */
void *ms_dnnl_slot(ms_dnnl *d, int i, size_t nbytes);
/* Maps a oneDNN status to a message naming op and the call. */
int ms_dnnl_fail(dnnl_status_t s, const char *op, const char *call);

#endif
