/* conv.c: the CPU table's conv2d entries: oneDNN for f32 and bf16 where it takes the shape, else
 * im2col. */
#include "conv_cpu.h"

int ms_cpu_conv2d(ms_context *ctx, const ms_conv_geom *g, const ms_tensor *x, const ms_tensor *w,
                  const ms_tensor *b, ms_tensor *y) {
  int st = x->dtype != MS_F64 ? ms_cpu_conv2d_fwd_dnnl(ctx, g, x, w, b, y) : MS_ERR_UNSUPPORTED;
  if (st != MS_ERR_UNSUPPORTED) return st;
  ms_clear_error();
  return ms_cpu_conv2d_fwd_ref(ctx, g, x, w, b, y);
}

int ms_cpu_conv2d_backward(ms_context *ctx, const ms_conv_geom *g, const ms_tensor *gy,
                           const ms_tensor *x, const ms_tensor *w, ms_tensor *dx, ms_tensor *dw,
                           ms_tensor *db) {
  int st = x->dtype != MS_F64 ? ms_cpu_conv2d_bwd_dnnl(ctx, g, gy, x, w, dx, dw, db)
                              : MS_ERR_UNSUPPORTED;
  /* f32 dw beside bf16 x is oneDNN's only: csrc/ops retries with bf16 gradients */
  if (st != MS_ERR_UNSUPPORTED || (dw && dw->dtype != x->dtype)) return st;
  ms_clear_error();
  return ms_cpu_conv2d_bwd_ref(ctx, g, gy, x, w, dx, dw, db);
}
