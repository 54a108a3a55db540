/* dnnl_ctx.c: the oneDNN engine and stream owned by an ms_context (created on first use). */
#include <dnnl.h>
#include <stdlib.h>

#include "dnnl_ctx.h"

int ms_dnnl_get(ms_context *ctx, ms_dnnl **out) {
  if (!ctx) return ms_fail(MS_ERR_INVALID, "oneDNN: context is NULL");
  if (!ctx->dnnl) {
    ms_dnnl *d = calloc(1, sizeof *d);
    if (!d) return ms_fail(MS_ERR_OOM, "oneDNN: out of host memory");
    if (dnnl_engine_create(&d->engine, dnnl_cpu, 0) != dnnl_success) {
      free(d);
      return ms_fail(MS_ERR_INTERNAL, "oneDNN: dnnl_engine_create(cpu) failed");
    }
    if (dnnl_stream_create(&d->stream, d->engine, dnnl_stream_default_flags) != dnnl_success) {
      dnnl_engine_destroy(d->engine);
      free(d);
      return ms_fail(MS_ERR_INTERNAL, "oneDNN: dnnl_stream_create failed");
    }
    ctx->dnnl = d;
  }
  *out = ctx->dnnl;
  return MS_OK;
}

void ms_dnnl_ctx_free(void *p) {
  ms_dnnl *d = p;
  if (!d) return;
  for (int i = 0; i < MS_DNNL_CACHE; i++)
    if (d->cache[i].prim) dnnl_primitive_destroy(d->cache[i].prim);
  dnnl_stream_destroy(d->stream);
  dnnl_engine_destroy(d->engine);
  free(d);
}
