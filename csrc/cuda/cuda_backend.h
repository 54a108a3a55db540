/* cuda_backend.h: the CUDA backend's C entry points, called by csrc/core and csrc/ops. */
#ifndef MS_CUDA_BACKEND_H
#define MS_CUDA_BACKEND_H

#ifdef __cplusplus
extern "C" {
#endif

#include "../core/internal.h"

/* ---- allocator (allocator.cu): process-wide per device, like the host allocator,
 * because storages outlive contexts. */
int ms_cuda_storage_alloc(ms_storage *s);
void ms_cuda_storage_free(ms_storage *s);
int ms_cuda_memory_stats(int device, ms_memory_stats *out);
int ms_cuda_memory_reset_peak(int device);
int ms_cuda_empty_cache(int device);

/* ---- context (context.cu) ---- */
/* Frees ctx->cuda (streams are the allocator's; handles and workspaces are the context's). */
void ms_cuda_ctx_free(void *cuda);
/* "cuda 13.0 (runtime 13000, driver 13000) cudnn 9.x cublas 13.x" or why not. */
const char *ms_cuda_build_info(void);

/* ---- copies (copy.cu) ---- */
/* dst and src on different devices (at least one CUDA); src broadcasts to dst; any dtypes. */
int ms_cuda_copy_between(ms_context *ctx, ms_tensor *dst, const ms_tensor *src);
/* Both on the same CUDA device: strided, broadcasting, converting copy. */
int ms_cuda_copy(ms_context *ctx, ms_tensor *dst, const ms_tensor *src);
int ms_cuda_fill(ms_context *ctx, ms_tensor *t, double value);

/* ---- elementwise (elementwise.cu): same contracts as the ms_cpu_* kernels ---- */
int ms_cuda_binary(ms_context *ctx, ms_binop op, ms_dtype ct, const ms_tensor *a,
                   const ms_tensor *b, ms_tensor *dst);
/* dst = a op s (reverse: s op a); the scalar is held in sdt first, as the CPU holds it. */
int ms_cuda_binary_scalar(ms_context *ctx, ms_binop op, ms_dtype ct, const ms_tensor *a, double s,
                          ms_dtype sdt, int reverse, ms_tensor *dst);
int ms_cuda_unary(ms_context *ctx, ms_unop op, ms_dtype ct, const ms_tensor *x, double p0,
                  double p1, ms_tensor *dst);
int ms_cuda_unary_backward(ms_context *ctx, ms_unop op, const ms_tensor *gout, const ms_tensor *x,
                           const ms_tensor *y, double p0, double p1, ms_tensor *gin);
int ms_cuda_where(ms_context *ctx, const ms_tensor *cond, const ms_tensor *a, const ms_tensor *b,
                  ms_tensor *dst);
int ms_cuda_axpy(ms_context *ctx, ms_tensor *dst, double alpha, const ms_tensor *src);

/* ---- reductions (reduce.cu): x contiguous, red[i] != 0 marks reduced dims, out contiguous
 * of the kept shape. sum, mean, max, min. */
int ms_cuda_reduce(ms_context *ctx, ms_redop op, const ms_tensor *x, const int *red,
                   ms_tensor *out);

/* ---- random (random.cu): the same Philox stream layout as csrc/cpu/random.c ---- */
int ms_cuda_uniform(ms_context *ctx, ms_generator *gen, ms_tensor *t, double low, double high);
int ms_cuda_normal(ms_context *ctx, ms_generator *gen, ms_tensor *t, double mean, double std);
int ms_cuda_randint(ms_context *ctx, ms_generator *gen, ms_tensor *t, int64_t low, int64_t high);
/* x contiguous; out and mask contiguous like x. */
int ms_cuda_dropout(ms_context *ctx, ms_generator *gen, const ms_tensor *x, double p,
                    ms_tensor *out, ms_tensor *mask);

/* ---- events and streams (event.cu): the contracts of the table's entries (core/backend.h) */
int ms_cuda_event_record(ms_context *ctx, ms_event *e, const ms_stream *s);
int ms_cuda_event_wait(ms_context *ctx, const ms_event *e, const ms_stream *s);
int ms_cuda_event_synchronize(ms_context *ctx, ms_event *e);
int ms_cuda_event_query(const ms_event *e);
void ms_cuda_event_release(ms_event *e);
int ms_cuda_stream_synchronize(ms_context *ctx, const ms_stream *s);

/* Installs the CUDA table (cuda_table.c); called at context init in CUDA builds. */
void ms_cuda_register_backend(void);

#ifdef __cplusplus
}
#endif
#endif
