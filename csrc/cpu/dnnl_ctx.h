/* dnnl_ctx.h: oneDNN engine/stream and a small primitive cache keyed by op + shapes. */
#ifndef MS_DNNL_CTX_H
#define MS_DNNL_CTX_H
#include <dnnl.h>

#include "../core/internal.h"

#define MS_DNNL_CACHE 256
#define MS_DNNL_KEY_LEN 32

typedef struct ms_dnnl_entry {
  int64_t key[MS_DNNL_KEY_LEN]; /* op kind, shapes, params; zero padded */
  dnnl_primitive_t prim;
  dnnl_primitive_desc_t pd; /* owned by prim? no: kept for memory descs (cloned) */
  uint64_t last_use;
} ms_dnnl_entry;

typedef struct ms_dnnl {
  dnnl_engine_t engine;
  dnnl_stream_t stream;
  ms_dnnl_entry cache[MS_DNNL_CACHE];
  uint64_t clock;
} ms_dnnl;

int ms_dnnl_get(ms_context *ctx, ms_dnnl **out);

#endif
