/* cuda_multi_tensor.h: the CUDA kernels behind ms_mt_* (same contracts as the CPU ones). */
#ifndef MS_CUDA_MULTI_TENSOR_H
#define MS_CUDA_MULTI_TENSOR_H

#ifdef __cplusplus
extern "C" {
#endif

#include "../core/internal.h"

int ms_cuda_mt_unscale(ms_context *ctx, ms_tensor *const *grads, int n, const ms_tensor *scale,
                       ms_tensor *found_inf);
int ms_cuda_mt_scale_update(ms_context *ctx, ms_tensor *scale, ms_tensor *counters,
                            const ms_tensor *found_inf, const ms_scaler_params *p);
int ms_cuda_mt_sgd(ms_context *ctx, ms_tensor *const *params, ms_tensor *const *grads,
                   ms_tensor *const *bufs, ms_tensor *const *master, int n, const ms_sgd_params *p,
                   const ms_tensor *found_inf);
int ms_cuda_mt_adamw(ms_context *ctx, ms_tensor *const *params, ms_tensor *const *grads,
                     ms_tensor *const *m, ms_tensor *const *v, ms_tensor *const *master, int n,
                     const ms_adamw_params *p, ms_tensor *step, const ms_tensor *found_inf);
int ms_cuda_mt_norm(ms_context *ctx, ms_tensor *const *ts, int n, ms_tensor *out);
int ms_cuda_mt_clip(ms_context *ctx, ms_tensor *const *ts, int n, const ms_tensor *norm,
                    double max_norm);

#ifdef __cplusplus
}
#endif
#endif
