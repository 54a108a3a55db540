/* dnnl_ctx.c: the oneDNN engine, stream, plan cache and workspace owned by an ms_context. */
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

void *ms_dnnl_cache_find(ms_dnnl *d, const int64_t *key) {
  for (int i = 0; i < MS_DNNL_CACHE; i++) {
    ms_dnnl_entry *e = &d->cache[i];
    if (e->key[0] == key[0] && e->value && !memcmp(e->key, key, sizeof e->key)) {
      e->last_use = ++d->clock;
      return e->value;
    }
  }
  return NULL;
}

void ms_dnnl_cache_put(ms_dnnl *d, const int64_t *key, void *value, ms_dnnl_free_fn free_fn) {
  int victim = 0;
  for (int i = 0; i < MS_DNNL_CACHE; i++) {
    if (!d->cache[i].value) {
      victim = i;
      break;
    }
    if (d->cache[i].last_use < d->cache[victim].last_use) victim = i;
  }
  ms_dnnl_entry *e = &d->cache[victim];
  if (e->value && e->free_fn) e->free_fn(e->value);
  memcpy(e->key, key, sizeof e->key);
  e->value = value;
  e->free_fn = free_fn;
  e->last_use = ++d->clock;
}

void *ms_dnnl_slot(ms_dnnl *d, int i, size_t nbytes) {
  if (nbytes == 0) nbytes = 64;
  if (d->slot_bytes[i] < nbytes) {
    free(d->slot[i]);
    size_t n = (nbytes + 4095) & ~(size_t)4095;
    d->slot[i] = aligned_alloc(64, n);
    d->slot_bytes[i] = d->slot[i] ? n : 0;
  }
  return d->slot[i];
}

int ms_dnnl_fail(dnnl_status_t s, const char *op, const char *call) {
  if (s == dnnl_unimplemented)
    return ms_fail(MS_ERR_UNSUPPORTED, "%s: oneDNN has no implementation (%s)", op, call);
  if (s == dnnl_out_of_memory)
    return ms_fail(MS_ERR_OOM, "%s: oneDNN out of memory (%s)", op, call);
  return ms_fail(MS_ERR_INTERNAL, "%s: oneDNN call %s failed with status %d", op, call, (int)s);
}

void ms_dnnl_ctx_free(void *p) {
  ms_dnnl *d = p;
  if (!d) return;
  for (int i = 0; i < MS_DNNL_CACHE; i++)
    if (d->cache[i].value && d->cache[i].free_fn) d->cache[i].free_fn(d->cache[i].value);
  for (int i = 0; i < MS_DNNL_SLOTS; i++)
    free(d->slot[i]);
  dnnl_stream_destroy(d->stream);
  dnnl_engine_destroy(d->engine);
  free(d);
}
