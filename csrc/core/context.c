/* context.c: the explicit context (thread count, backend handles) and build facts. */
#include <omp.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"

#define MS_STR2(x) #x
#define MS_STR(x) MS_STR2(x)

void openblas_set_num_threads(int num_threads);
void ms_dnnl_ctx_free(void *dnnl);
#ifdef MS_WITH_CUDA
#include "../cuda/cuda_backend.h"
#endif

int ms_abi_version(void) { return MS_ABI_VERSION; }

int ms_context_new(ms_context **out) {
  if (!out) return ms_fail(MS_ERR_INVALID, "context_new: out is NULL");
  ms_context *ctx = calloc(1, sizeof *ctx);
  if (!ctx) return ms_fail(MS_ERR_OOM, "context_new: out of host memory");
  ctx->num_threads = omp_get_max_threads();
  ctx->batch_invariant = 1; /* N workers x B train like 1 x N*B by default */
#ifdef MS_WITH_CUDA
  ms_cuda_register_backend(); /* idempotent: the table is static */
#endif
  /* OpenBLAS runs single-threaded: matmul.c splits its GEMMs over OpenMP's threads, as oneDNN
   * does, and OpenBLAS's own pool, spinning between calls, would compete with them. */
  openblas_set_num_threads(1);
  *out = ctx;
  return MS_OK;
}

void ms_context_free(ms_context *ctx) {
  if (!ctx) return;
  ms_dnnl_ctx_free(ctx->dnnl);
#ifdef MS_WITH_CUDA
  ms_cuda_ctx_free(ctx->cuda);
#endif
  free(ctx);
}

int ms_context_set_num_threads(ms_context *ctx, int n) {
  if (n < 1) return ms_fail(MS_ERR_INVALID, "set_num_threads: need at least 1 thread, got %d", n);
  ctx->num_threads = n;
  /* oneDNN sizes its pool from this process-wide setting (OpenBLAS stays at one thread). */
  omp_set_num_threads(n);
  return MS_OK;
}

int ms_context_num_threads(const ms_context *ctx) { return ctx->num_threads; }

int ms_context_set_batch_invariant(ms_context *ctx, int on) {
  if (!ctx) return ms_fail(MS_ERR_INVALID, "set_batch_invariant: context is NULL");
  ctx->batch_invariant = on != 0;
  return MS_OK;
}
int ms_context_batch_invariant(const ms_context *ctx) { return ctx ? ctx->batch_invariant : 0; }
int ms_threads(const ms_context *ctx) { return ctx && ctx->num_threads > 0 ? ctx->num_threads : 1; }

double ms_time_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int ms_has_cuda(void) {
#ifdef MS_WITH_CUDA
  return 1;
#else
  return 0;
#endif
}

#ifndef MS_WITH_CUDA
int ms_cuda_device_count(void) { return 0; }
#endif

const char *ms_build_info(void) {
#ifdef MS_WITH_CUDA
  return ms_cuda_build_info(); /* names the CUDA, cuBLAS and cuDNN versions */
#endif
  return "moonseg abi " MS_STR(MS_ABI_VERSION) " cpu(openmp, openblas, onednn)"
#ifdef MS_WITH_CUDA
                                               " cuda"
#endif
#ifdef MS_WITH_NCCL
                                               " nccl"
#endif
      ;
}
