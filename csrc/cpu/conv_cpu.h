/* conv_cpu.h: the CPU kernels behind ms_conv2d / ms_conv2d_backward (geometry: core/conv_geom.h).
 */
#ifndef MS_CONV_CPU_H
#define MS_CONV_CPU_H
#include "../core/conv_geom.h"
#include "../core/internal.h"

/* All tensors contiguous, one dtype (f32 or f64), shapes validated. NULL = not wanted. */
int ms_cpu_conv2d_fwd_dnnl(ms_context *ctx, const ms_conv_geom *g, const ms_tensor *x,
                           const ms_tensor *w, const ms_tensor *b, ms_tensor *y);
int ms_cpu_conv2d_bwd_dnnl(ms_context *ctx, const ms_conv_geom *g, const ms_tensor *gy,
                           const ms_tensor *x, const ms_tensor *w, ms_tensor *dx, ms_tensor *dw,
                           ms_tensor *db);
int ms_cpu_conv2d_fwd_ref(ms_context *ctx, const ms_conv_geom *g, const ms_tensor *x,
                          const ms_tensor *w, const ms_tensor *b, ms_tensor *y);
int ms_cpu_conv2d_bwd_ref(ms_context *ctx, const ms_conv_geom *g, const ms_tensor *gy,
                          const ms_tensor *x, const ms_tensor *w, ms_tensor *dx, ms_tensor *dw,
                          ms_tensor *db);
/* The CPU table's entries: oneDNN for f32 where it takes the shape, the reference path else. */
int ms_cpu_conv2d(ms_context *ctx, const ms_conv_geom *g, const ms_tensor *x, const ms_tensor *w,
                  const ms_tensor *b, ms_tensor *y);
int ms_cpu_conv2d_backward(ms_context *ctx, const ms_conv_geom *g, const ms_tensor *gy,
                           const ms_tensor *x, const ms_tensor *w, ms_tensor *dx, ms_tensor *dw,
                           ms_tensor *db);
/* db[o] = sum over n, h, w of gy[n, o, h, w]. */
void ms_cpu_conv2d_bias_grad(ms_context *ctx, const ms_conv_geom *g, const ms_tensor *gy,
                             ms_tensor *db);

#endif
