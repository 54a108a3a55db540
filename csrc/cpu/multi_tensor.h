/* multi_tensor.h: the CPU kernels behind ms_mt_* (validated by csrc/ops/multi_tensor.c). */
#ifndef MS_CPU_MULTI_TENSOR_H
#define MS_CPU_MULTI_TENSOR_H
#include "../core/internal.h"

/* Same contracts as the public ms_mt_* calls; every tensor contiguous and checked. */
int ms_cpu_mt_unscale(ms_context *ctx, ms_tensor *const *grads, int n, const ms_tensor *scale,
                      ms_tensor *found_inf);
int ms_cpu_mt_scale_update(ms_context *ctx, ms_tensor *scale, ms_tensor *counters,
                           const ms_tensor *found_inf, const ms_scaler_params *p);
int ms_cpu_mt_sgd(ms_context *ctx, ms_tensor *const *params, ms_tensor *const *grads,
                  ms_tensor *const *bufs, ms_tensor *const *master, int n, const ms_sgd_params *p,
                  const ms_tensor *found_inf);
int ms_cpu_mt_adamw(ms_context *ctx, ms_tensor *const *params, ms_tensor *const *grads,
                    ms_tensor *const *m, ms_tensor *const *v, ms_tensor *const *master, int n,
                    const ms_adamw_params *p, ms_tensor *step, const ms_tensor *found_inf);
int ms_cpu_mt_norm(ms_context *ctx, ms_tensor *const *ts, int n, ms_tensor *out);
int ms_cpu_mt_clip(ms_context *ctx, ms_tensor *const *ts, int n, const ms_tensor *norm,
                   double max_norm);

#endif
