/* event.cu: CUDA events on the device's compute stream (record / wait / synchronize / query). */
#include "cuda_util.cuh"
extern "C" {
#include "../core/backend.h"
}

extern "C" int ms_cuda_event_record(ms_context *ctx, ms_event *e, const ms_stream *s) {
  (void)ctx;
  const char *op = "event_record";
  cudaStream_t st;
  int rc = ms_cuda_stream(s->index, op, &st); /* also makes the device current */
  if (rc) return rc;
  if (!e->handle) {
    cudaEvent_t ev;
    MS_CU(op, cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    e->handle = (void *)ev;
  }
  MS_CU(op, cudaEventRecord((cudaEvent_t)e->handle, st));
  e->recorded = 1;
  return MS_OK;
}

extern "C" int ms_cuda_event_wait(ms_context *ctx, const ms_event *e, const ms_stream *s) {
  (void)ctx;
  const char *op = "event_wait";
  if (s->device != MS_CUDA) { /* the host waits for the device */
    MS_CU(op, cudaEventSynchronize((cudaEvent_t)e->handle));
    return MS_OK;
  }
  cudaStream_t st;
  int rc = ms_cuda_stream(s->index, op, &st);
  if (rc) return rc;
  MS_CU(op, cudaStreamWaitEvent(st, (cudaEvent_t)e->handle, 0));
  return MS_OK;
}

extern "C" int ms_cuda_event_synchronize(ms_context *ctx, ms_event *e) {
  (void)ctx;
  MS_CU("event_synchronize", cudaEventSynchronize((cudaEvent_t)e->handle));
  e->completed = 1;
  return MS_OK;
}

extern "C" int ms_cuda_event_query(const ms_event *e) {
  cudaError_t r = cudaEventQuery((cudaEvent_t)e->handle);
  if (r == cudaErrorNotReady) cudaGetLastError(); /* not an error: clear it */
  return r == cudaSuccess;
}

extern "C" void ms_cuda_event_release(ms_event *e) {
  if (e->handle) cudaEventDestroy((cudaEvent_t)e->handle);
  e->handle = NULL;
}

extern "C" int ms_cuda_stream_synchronize(ms_context *ctx, const ms_stream *s) {
  (void)ctx;
  const char *op = "stream_synchronize";
  cudaStream_t st;
  int rc = ms_cuda_stream(s->index, op, &st);
  if (rc) return rc;
  MS_CU(op, cudaStreamSynchronize(st));
  return MS_OK;
}
