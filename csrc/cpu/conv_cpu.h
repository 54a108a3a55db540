/* conv_cpu.h: conv2d geometry and the CPU kernels behind ms_conv2d / ms_conv2d_backward. */
#ifndef MS_CONV_CPU_H
#define MS_CONV_CPU_H
#include "../core/internal.h"

typedef struct ms_conv_geom {
  int64_t n, c, h, w; /* input */
  int64_t o, kh, kw;  /* weights [o, c/g, kh, kw] */
  int64_t oh, ow;     /* output */
  int64_t sh, sw, ph, pw, dh, dw, g;
} ms_conv_geom;

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
/* db[o] = sum over n, h, w of gy[n, o, h, w]. */
void ms_cpu_conv2d_bias_grad(ms_context *ctx, const ms_conv_geom *g, const ms_tensor *gy,
                             ms_tensor *db);

#endif
