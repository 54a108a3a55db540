/* stream.c: the context's streams and the event calls, dispatched to the backend tables. */
#include "backend.h"

const ms_stream *ms_context_stream(ms_context *ctx, ms_device_type device, int index) {
  int d = device == MS_CUDA ? 1 : 0;
  if (index < 0 || index >= MS_CTX_MAX_STREAMS) return NULL;
  ms_stream *s = &ctx->streams[d][index];
  s->device = device; /* the backend keeps its own stream per device: handle stays NULL */
  s->index = index;
  return s;
}

int ms_event_record(ms_context *ctx, ms_event *e, const ms_stream *s) {
  e->device = s->device;
  e->index = s->index;
  const ms_backend *be = ms_backend_for(s->device);
  if (!be->event_record)
    return ms_fail(MS_ERR_UNSUPPORTED,
                   "event_record: not supported on %s (no events in the %s "
                   "backend)",
                   ms_device_str(s->device, s->index), be->name);
  return be->event_record(ctx, e, s);
}

int ms_event_wait(ms_context *ctx, const ms_event *e, const ms_stream *s) {
  if (!e->recorded) return MS_OK; /* nothing recorded: nothing to wait for */
  const ms_backend *be = ms_backend_for(e->device);
  return be->event_wait ? be->event_wait(ctx, e, s) : MS_OK;
}

int ms_event_synchronize(ms_context *ctx, ms_event *e) {
  if (!e->recorded) return MS_OK;
  const ms_backend *be = ms_backend_for(e->device);
  return be->event_synchronize ? be->event_synchronize(ctx, e) : MS_OK;
}

int ms_event_query(const ms_event *e) {
  if (!e->recorded) return 0;
  const ms_backend *be = ms_backend_for(e->device);
  return be->event_query ? be->event_query(e) : 1;
}

void ms_event_release(ms_event *e) {
  if (!e) return;
  const ms_backend *be = ms_backend_for(e->device);
  if (e->handle && be->event_release) be->event_release(e);
  e->handle = NULL;
}

int ms_stream_synchronize(ms_context *ctx, const ms_stream *s) {
  const ms_backend *be = ms_backend_for(s->device);
  return be->stream_synchronize ? be->stream_synchronize(ctx, s) : MS_OK;
}
