/* npr_kernels.h: CPU kernels for normalization, pooling and resize (called from csrc/ops/). */
#ifndef MS_NPR_KERNELS_H
#define MS_NPR_KERNELS_H
#include "../core/internal.h"

/* All tensors handed to these kernels are contiguous CPU tensors of one dtype, f32 or f64
 * (the ops layer casts f16/bf16 through f32). Sizes were validated by the caller. */

/* ---- batch norm (cpu/batch_norm.c): x viewed as [N, C, S] ---- */
/* Per-channel mean and biased variance (double accumulation, two passes). */
int ms_cpu_bn_stats(ms_context *ctx, const ms_tensor *x, int64_t n, int64_t c, int64_t s,
                    double *mean, double *var);
/* out = a[c] * x + b[c], or out = a[c] * g + b[c] * x + k[c] when g is given. */
int ms_cpu_bn_affine(ms_context *ctx, const ms_tensor *g, const ms_tensor *x, int64_t n, int64_t c,
                     int64_t s, const double *a, const double *b, const double *k, ms_tensor *out);
/* Per channel: sum_g = sum(g), sum_gx = sum(g * (x - mean[c])). */
int ms_cpu_bn_grad_sums(ms_context *ctx, const ms_tensor *g, const ms_tensor *x, int64_t n,
                        int64_t c, int64_t s, const double *mean, double *sum_g, double *sum_gx);

/* The CPU table's entries (contracts in core/backend.h). */
int ms_cpu_sync_bn_moments(ms_context *ctx, const ms_tensor *x, ms_tensor *out);
int ms_cpu_sync_bn_grad_sums(ms_context *ctx, const ms_tensor *gy, const ms_tensor *x,
                             const ms_tensor *mean, ms_tensor *out);
int ms_cpu_sync_bn_backward(ms_context *ctx, const ms_tensor *gy, const ms_tensor *x,
                            const ms_tensor *weight, const ms_tensor *mean, const ms_tensor *invstd,
                            const ms_tensor *sums, double count, ms_tensor *dx);
int ms_cpu_sync_bn_packet(ms_context *ctx, const ms_tensor *x, ms_tensor *out);
int ms_cpu_sync_bn_merge(ms_context *ctx, const ms_tensor *all, double eps, double momentum,
                         ms_tensor *rm, ms_tensor *rv, ms_tensor *mean, ms_tensor *invstd,
                         ms_tensor *mean64, ms_tensor *var64, double *count);
int ms_cpu_sync_bn_param_grads(ms_context *ctx, const ms_tensor *sums, const ms_tensor *invstd,
                               ms_tensor *dw, ms_tensor *db);
int ms_cpu_batch_norm(ms_context *ctx, const ms_tensor *x, const ms_tensor *weight,
                      const ms_tensor *bias, ms_tensor *running_mean, ms_tensor *running_var,
                      int training, double momentum, double eps, ms_tensor *y, ms_tensor *save_mean,
                      ms_tensor *save_invstd);
int ms_cpu_batch_norm_backward(ms_context *ctx, const ms_tensor *gy, const ms_tensor *x,
                               const ms_tensor *weight, const ms_tensor *save_mean,
                               const ms_tensor *save_invstd, int training, ms_tensor *dx,
                               ms_tensor *dweight, ms_tensor *dbias);

/* ---- layer norm (cpu/layer_norm.c): x viewed as [M, K] ---- */
/* w, b: [K] of x's dtype or NULL; mean, rstd: [M] of x's dtype. */
int ms_cpu_layer_norm(ms_context *ctx, const ms_tensor *x, int64_t m, int64_t k, const ms_tensor *w,
                      const ms_tensor *b, double eps, ms_tensor *out, ms_tensor *mean,
                      ms_tensor *rstd);
/* Any of dx, dw, db may be NULL. */
int ms_cpu_layer_norm_backward(ms_context *ctx, const ms_tensor *g, const ms_tensor *x, int64_t m,
                               int64_t k, const ms_tensor *w, const ms_tensor *mean,
                               const ms_tensor *rstd, ms_tensor *dx, ms_tensor *dw, ms_tensor *db);

/* ---- pooling (cpu/pool.c): [N, C, H, W] planes ---- */
int ms_cpu_max_pool2d(ms_context *ctx, const ms_tensor *x, const ms_pool2d_params *p,
                      ms_tensor *out, ms_tensor *indices);
int ms_cpu_max_pool2d_backward(ms_context *ctx, const ms_tensor *g, const ms_tensor *indices,
                               ms_tensor *dx);
int ms_cpu_avg_pool2d(ms_context *ctx, const ms_tensor *x, const ms_pool2d_params *p,
                      ms_tensor *out);
int ms_cpu_avg_pool2d_backward(ms_context *ctx, const ms_tensor *g, const ms_pool2d_params *p,
                               ms_tensor *dx);
int ms_cpu_adaptive_avg_pool2d(ms_context *ctx, const ms_tensor *x, ms_tensor *out);
int ms_cpu_adaptive_avg_pool2d_backward(ms_context *ctx, const ms_tensor *g, ms_tensor *dx);

/* ---- resize (cpu/resize.c) ---- */
int ms_cpu_interpolate(ms_context *ctx, const ms_tensor *x, ms_resize_mode mode, int align_corners,
                       ms_tensor *out);
int ms_cpu_interpolate_backward(ms_context *ctx, const ms_tensor *g, ms_resize_mode mode,
                                int align_corners, ms_tensor *dx);

#endif
