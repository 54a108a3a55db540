/* basic_kernels.h: the CPU kernels of copies, fills and random fills (behind the CPU table). */
#ifndef MS_CPU_BASIC_KERNELS_H
#define MS_CPU_BASIC_KERNELS_H
#include "../core/internal.h"

/* Copies src (already broadcast-compatible) into dst with dtype conversion. */
int ms_cpu_copy(ms_context *ctx, ms_tensor *dst, const ms_tensor *src);
/* The copy in tiles when dst and src (same dtype) run contiguously along different dims; 1 when
 * it did the copy, 0 when the layouts do not fit (copy_tiled.c). */
int ms_cpu_copy_tiled(ms_context *ctx, ms_tensor *dst, const ms_tensor *src);
/* A contiguous copy of x when x is a transposed layout the tiled copy takes (an elementwise
 * kernel beside contiguous operands then runs on unit strides, vectorised, instead of reading x
 * a cache line an element); NULL when x is contiguous, small or not such a layout. */
ms_tensor *ms_cpu_stage_transposed(ms_context *ctx, const ms_tensor *x);
int ms_cpu_fill(ms_context *ctx, ms_tensor *t, double value);
int ms_cpu_arange(ms_context *ctx, ms_tensor *t, double start, double step);
int ms_cpu_uniform(ms_context *ctx, ms_generator *gen, ms_tensor *t, double low, double high);
int ms_cpu_normal(ms_context *ctx, ms_generator *gen, ms_tensor *t, double mean, double std);
int ms_cpu_randint(ms_context *ctx, ms_generator *gen, ms_tensor *t, int64_t low, int64_t high);
int ms_cpu_dropout(ms_context *ctx, ms_generator *gen, const ms_tensor *x, double p, ms_tensor *out,
                   ms_tensor *mask);

#endif
