/* mcsl_kernels.h: CPU kernels of matmul, cat, softmax and cross-entropy (called from csrc/ops/). */
#ifndef MS_MCSL_KERNELS_H
#define MS_MCSL_KERNELS_H
#include <math.h>

#include "../core/internal.h"

/* exp(x) in float that GCC vectorises (Cephes polynomial on x - n ln2, about 2 ulp);
 * 0 below -87.3, NaN kept. Inputs above 88 are clamped (softmax never sees them). */
static inline float ms_fast_expf(float x) {
  float xc = x > 88.0f ? 88.0f : x;
  xc = xc < -87.3f ? -87.3f : xc;
  /* round to nearest by the 1.5 * 2^23 trick: plain arithmetic, so it vectorises */
  float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
  float scale;
  memcpy(&scale, &bits, 4);
  float y = p * scale;
  y = x < -87.3f ? 0.0f : y;
  return x != x ? x : y;
}

/* out [batch..., n, m] contiguous = a [.., n, k] x b [.., k, m]; a and b already
 * expanded to 3+ dims (1-d operands given as [1, k] / [k, 1]), batch dims
 * broadcast to out's (stride 0 where broadcast). Same float dtype everywhere. */
int ms_cpu_matmul(ms_context *ctx, const ms_tensor *a, const ms_tensor *b, ms_tensor *out);

/* How BLAS can read a rows x cols matrix with row stride rs and column stride cs
 * (elements): 0 = as is (*ld = row stride), 1 = as the transpose of a row-major
 * cols x rows matrix (*ld = column stride), -1 = neither (copy it first). */
static inline int ms_blas_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs, int64_t *ld) {
  /* A size-1 dim's stride is free: pick the one that suits each layout. */
  int64_t rs_n = rows == 1 ? cols : rs, cs_n = cols == 1 ? 1 : cs;
  if (cs_n == 1 && rs_n >= (cols > 1 ? cols : 1)) {
    *ld = rs_n;
    return 0;
  }
  int64_t rs_t = rows == 1 ? 1 : rs, cs_t = cols == 1 ? rows : cs;
  if (rs_t == 1 && cs_t >= (rows > 1 ? rows : 1)) {
    *ld = cs_t;
    return 1;
  }
  return -1;
}

/* out is contiguous; xs already validated (skipped entries are NULL). */
int ms_cpu_cat(ms_context *ctx, ms_tensor *const *xs, int n, int dim, ms_tensor *out);

/* x, y contiguous [outer, d, inner]; y = (log_)softmax over d. */
int ms_cpu_softmax(ms_context *ctx, const ms_tensor *x, int64_t outer, int64_t d, int64_t inner,
                   int log, ms_tensor *y);
/* g, y, dx contiguous [outer, d, inner]. */
int ms_cpu_softmax_backward(ms_context *ctx, const ms_tensor *g, const ms_tensor *y, int64_t outer,
                            int64_t d, int64_t inner, int log, ms_tensor *dx);

/* logits contiguous [N, C, S] (f32 or f64), target contiguous i64 [N, S], weight
 * contiguous [C] of logits' dtype or NULL. Writes lse [N, S] (logits' dtype) and
 * per-position weighted losses into loss_pos [N, S] (0 where ignored); *wsum gets
 * the summed weights of non-ignored targets and *lsum the summed losses. On a
 * target outside [0, C) that is not ignore_index, returns MS_ERR_INVALID with
 * *bad_pos the first such flat position (no message set: the caller names it). */
int ms_cpu_cross_entropy(ms_context *ctx, const ms_tensor *logits, const ms_tensor *target,
                         const ms_tensor *weight, int64_t ignore_index, int64_t n, int64_t c,
                         int64_t s, ms_tensor *loss_pos, ms_tensor *lse, double *lsum, double *wsum,
                         int64_t *bad_pos);
/* dlogits[n, c, s] = scale[n, s] * w[t] * (exp(x - lse) - [c == t]); scale is
 * gscale * (grad_pos ? grad_pos[n, s] : 1), divided by the summed weights of the
 * non-ignored targets when mean is set (0 when there are none). Contiguous
 * operands as above. */
int ms_cpu_cross_entropy_backward(ms_context *ctx, const ms_tensor *logits, const ms_tensor *target,
                                  const ms_tensor *weight, int64_t ignore_index, int64_t n,
                                  int64_t c, int64_t s, const ms_tensor *lse,
                                  const ms_tensor *grad_pos, double gscale, int mean,
                                  ms_tensor *dlogits);
#endif
