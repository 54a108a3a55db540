/* ew_kernels.h: CPU kernels of the elementwise and reduction families (called from csrc/ops/). */
#ifndef MS_EW_KERNELS_H
#define MS_EW_KERNELS_H
#include "../core/internal.h"

/* dst = a op b, computed in dtype ct (a, b, dst broadcast to dst's shape; any dtypes). */
int ms_cpu_binary(ms_context *ctx, ms_binop op, ms_dtype ct, const ms_tensor *a, const ms_tensor *b,
                  ms_tensor *dst);
/* dst = op(x) computed in dtype ct (dst shaped like x). */
int ms_cpu_unary(ms_context *ctx, ms_unop op, ms_dtype ct, const ms_tensor *x, double p0, double p1,
                 ms_tensor *dst);
/* gin = gout * op'(x) (y = op(x) or NULL); all shaped alike, gin contiguous. */
int ms_cpu_unary_backward(ms_context *ctx, ms_unop op, const ms_tensor *gout, const ms_tensor *x,
                          const ms_tensor *y, double p0, double p1, ms_tensor *gin);
int ms_cpu_where(ms_context *ctx, const ms_tensor *cond, const ms_tensor *a, const ms_tensor *b,
                 ms_tensor *dst);
int ms_cpu_axpy(ms_context *ctx, ms_tensor *dst, double alpha, const ms_tensor *src);

/* x contiguous; red[i] != 0 marks reduced dims; out contiguous of the kept shape. */
int ms_cpu_reduce(ms_context *ctx, ms_redop op, const ms_tensor *x, const int *red, double p,
                  ms_tensor *out);
/* x contiguous viewed as [outer, n, inner]; values/indices contiguous [outer, inner]. */
int ms_cpu_reduce_arg(ms_context *ctx, ms_redop op, const ms_tensor *x, int64_t outer, int64_t n,
                      int64_t inner, ms_tensor *values, ms_tensor *indices);
#endif
