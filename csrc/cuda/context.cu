/* context.cu: per-context CUDA state (library handles, workspace, pinned staging) and build facts.
 */
#include <stdio.h>
#include <stdlib.h>

#include <cublasLt.h>
#include <cublas_v2.h>
#ifdef MS_WITH_CUDNN
#include <cudnn.h>
#endif

#include "cuda_util.cuh"

/* ctx->cuda: one slot per device, filled on first use by that context. */
typedef struct ms_cuda_state {
  ms_cuda_dev *dev[MS_CUDA_MAX_DEVICES];
} ms_cuda_state;

int ms_cuda_dev_get(ms_context *ctx, int index, const char *op, ms_cuda_dev **out) {
  if (!ctx) return ms_fail(MS_ERR_INVALID, "%s: CUDA ops need a context (ctx is NULL)", op);
  cudaStream_t stream;
  int st = ms_cuda_stream(index, op, &stream); /* validates index, sets the device */
  if (st) return st;
  ms_cuda_state *cs = (ms_cuda_state *)ctx->cuda;
  if (!cs) {
    cs = (ms_cuda_state *)calloc(1, sizeof *cs);
    if (!cs) return ms_fail(MS_ERR_OOM, "%s: out of host memory for the CUDA context", op);
    ctx->cuda = cs;
  }
  if (!cs->dev[index]) {
    ms_cuda_dev *d = (ms_cuda_dev *)calloc(1, sizeof *d);
    if (!d) return ms_fail(MS_ERR_OOM, "%s: out of host memory for the CUDA device state", op);
    d->index = index;
    d->stream = stream;
    cs->dev[index] = d;
  }
  *out = cs->dev[index];
  return MS_OK;
}

static void dev_free(ms_cuda_dev *d) {
  cudaSetDevice(d->index);
  /* Work queued by this context may still use the workspace: finish it first. */
  cudaStreamSynchronize(d->stream);
  if (d->cublas) cublasDestroy((cublasHandle_t)d->cublas);
  if (d->cublaslt) cublasLtDestroy((cublasLtHandle_t)d->cublaslt);
#ifdef MS_WITH_CUDNN
  if (d->cudnn) cudnnDestroy((cudnnHandle_t)d->cudnn);
#endif
  if (d->workspace) cudaFree(d->workspace);
  for (int i = 0; i < 2; i++) {
    if (d->pinned[i]) cudaFreeHost(d->pinned[i]);
    if (d->pinned_events) cudaEventDestroy(d->pinned_done[i]);
  }
  cudaGetLastError();
  free(d);
}

void ms_cuda_ctx_free(void *cuda) {
  ms_cuda_state *cs = (ms_cuda_state *)cuda;
  if (!cs) return;
  for (int i = 0; i < MS_CUDA_MAX_DEVICES; i++)
    if (cs->dev[i]) dev_free(cs->dev[i]);
  free(cs);
}

int ms_cuda_pinned(ms_cuda_dev *d, size_t nbytes, const char *op) {
  if (!d->pinned_events) {
    for (int i = 0; i < 2; i++)
      MS_CU(op, cudaEventCreateWithFlags(&d->pinned_done[i], cudaEventDisableTiming));
    d->pinned_events = 1;
  }
  if (d->pinned_size >= nbytes) return MS_OK;
  MS_CU(op, cudaStreamSynchronize(d->stream)); /* old buffers may still be read by copies */
  for (int i = 0; i < 2; i++) {
    if (d->pinned[i]) cudaFreeHost(d->pinned[i]);
    d->pinned[i] = NULL;
  }
  d->pinned_size = 0;
  for (int i = 0; i < 2; i++)
    MS_CU(op, cudaHostAlloc(&d->pinned[i], nbytes, cudaHostAllocDefault));
  d->pinned_size = nbytes;
  return MS_OK;
}

int ms_cuda_workspace(ms_cuda_dev *d, size_t nbytes, const char *op, void **out) {
  if (d->workspace_size < nbytes) {
    MS_CU(op, cudaStreamSynchronize(d->stream));
    if (d->workspace) cudaFree(d->workspace);
    d->workspace = NULL;
    d->workspace_size = 0;
    MS_CU(op, cudaMalloc(&d->workspace, nbytes));
    d->workspace_size = nbytes;
  }
  *out = d->workspace;
  return MS_OK;
}

/* Library handles bound to the device's stream; made on first use (used by matmul/conv). */
int ms_cuda_cublas(ms_cuda_dev *d, const char *op, void **out);
int ms_cuda_cublas(ms_cuda_dev *d, const char *op, void **out) {
  if (!d->cublas) {
    cublasHandle_t h;
    cublasStatus_t s = cublasCreate(&h);
    if (s != CUBLAS_STATUS_SUCCESS)
      return ms_fail(MS_ERR_INTERNAL, "%s: cublasCreate failed: %s", op, cublasGetStatusString(s));
    if ((s = cublasSetStream(h, d->stream)) != CUBLAS_STATUS_SUCCESS) {
      cublasDestroy(h);
      return ms_fail(MS_ERR_INTERNAL, "%s: cublasSetStream failed: %s", op,
                     cublasGetStatusString(s));
    }
    d->cublas = h;
  }
  if (!d->cublaslt) {
    cublasLtHandle_t h;
    cublasStatus_t s = cublasLtCreate(&h);
    if (s != CUBLAS_STATUS_SUCCESS)
      return ms_fail(MS_ERR_INTERNAL, "%s: cublasLtCreate failed: %s", op,
                     cublasGetStatusString(s));
    d->cublaslt = h;
  }
  *out = d->cublas;
  return MS_OK;
}

int ms_cuda_cudnn(ms_cuda_dev *d, const char *op, void **out);
int ms_cuda_cudnn(ms_cuda_dev *d, const char *op, void **out) {
#ifdef MS_WITH_CUDNN
  if (!d->cudnn) {
    cudnnHandle_t h;
    cudnnStatus_t s = cudnnCreate(&h);
    if (s != CUDNN_STATUS_SUCCESS)
      return ms_fail(MS_ERR_INTERNAL, "%s: cudnnCreate failed: %s", op, cudnnGetErrorString(s));
    if ((s = cudnnSetStream(h, d->stream)) != CUDNN_STATUS_SUCCESS) {
      cudnnDestroy(h);
      return ms_fail(MS_ERR_INTERNAL, "%s: cudnnSetStream failed: %s", op, cudnnGetErrorString(s));
    }
    d->cudnn = h;
  }
  *out = d->cudnn;
  return MS_OK;
#else
  (void)d;
  *out = NULL;
  return ms_fail(MS_ERR_UNSUPPORTED, "%s: moonseg was built without cuDNN", op);
#endif
}

const char *ms_cuda_build_info(void) {
  static char buf[512];
  static int done;
  if (__atomic_load_n(&done, __ATOMIC_ACQUIRE)) return buf;
  int rt = 0, drv = 0;
  if (cudaRuntimeGetVersion(&rt) != cudaSuccess) rt = 0;
  if (cudaDriverGetVersion(&drv) != cudaSuccess) drv = 0;
  cudaGetLastError();
  int n = snprintf(buf, sizeof buf,
                   "moonseg abi %d cpu(openmp, openblas, onednn) cuda %d.%d (runtime %d, driver "
                   "%d, archs " MS_CUDA_ARCHS_STR ") cublas %d.%d.%d",
                   MS_ABI_VERSION, CUDART_VERSION / 1000, (CUDART_VERSION % 1000) / 10, rt, drv,
                   CUBLAS_VER_MAJOR, CUBLAS_VER_MINOR, CUBLAS_VER_PATCH);
#ifdef MS_WITH_CUDNN
  size_t v = cudnnGetVersion();
  if (n > 0 && n < (int)sizeof buf)
    n += snprintf(buf + n, sizeof buf - (size_t)n, " cudnn %d.%d.%d (runtime %zu)", CUDNN_MAJOR,
                  CUDNN_MINOR, CUDNN_PATCHLEVEL, v);
#else
  if (n > 0 && n < (int)sizeof buf) n += snprintf(buf + n, sizeof buf - (size_t)n, " (no cudnn)");
#endif
#ifdef MS_WITH_NCCL
  if (n > 0 && n < (int)sizeof buf) snprintf(buf + n, sizeof buf - (size_t)n, " nccl");
#endif
  __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
  return buf;
}
