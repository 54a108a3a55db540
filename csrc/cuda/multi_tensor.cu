/* multi_tensor.cu: CUDA multi-tensor steps: unscale with a found-inf flag, one-thread scale
 * update, fused SGD / AdamW (optional f32 masters), global norm and clipping. Work is cut
 * into 64K-element chunks over all tensors; each launch carries a table of up to MAX_T tensors
 * and MAX_B chunks in its parameters, so no host sync and no metadata copy per step. */
#include "../core/dtype.h"
#include "cuda_multi_tensor.h"
#include "cuda_util.cuh"

#define CHUNK 65536
#define THREADS 512
#define MAX_T 5  /* tensor lists per launch (params, grads, m, v, master) */
#define MAX_N 24 /* tensors per list per launch */
#define MAX_B 256

/* One launch's work: up to MAX_N tensors of up to MAX_T lists; block b does chunk chunk[b] of
 * tensor tens[b]. */
struct mt_table {
  void *ptr[MAX_T][MAX_N];
  int dtype[MAX_T][MAX_N];
  int64_t numel[MAX_N];
  unsigned char tens[MAX_B];
  int chunk[MAX_B];
};

__device__ __forceinline__ float ld(const void *p, int dt, int64_t i) {
  switch (dt) {
  case MS_F32: return ((const float *)p)[i];
  case MS_F16: return __half2float(((const __half *)p)[i]);
  case MS_BF16: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
  case MS_F64: return (float)((const double *)p)[i];
  }
  return 0;
}

__device__ __forceinline__ void st(void *p, int dt, int64_t i, float v) {
  switch (dt) {
  case MS_F32: ((float *)p)[i] = v; break;
  case MS_F16: ((__half *)p)[i] = __float2half_rn(v); break;
  case MS_BF16: ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v); break;
  case MS_F64: ((double *)p)[i] = v; break;
  }
}

/* Calls launch(table, blocks, first_chunk) for every batch of chunks over the nl lists. */
template <typename F> static int mt_apply(int nl, ms_tensor *const *const *lists, int n, F launch) {
  mt_table t;
  int nt = 0, nb = 0, first = 0, gchunk = 0;
  for (int i = 0; i < n; i++) {
    int64_t ne = ms_numel(lists[0][i]);
    if (ne == 0) continue;
    for (int l = 0; l < nl; l++) {
      t.ptr[l][nt] = lists[l] ? ms_data(lists[l][i]) : NULL;
      t.dtype[l][nt] = lists[l] ? (int)lists[l][i]->dtype : 0;
    }
    t.numel[nt] = ne;
    int64_t nc = (ne + CHUNK - 1) / CHUNK;
    for (int64_t c = 0; c < nc; c++) {
      t.tens[nb] = (unsigned char)nt;
      t.chunk[nb] = (int)c;
      nb++, gchunk++;
      int last = c == nc - 1;
      if (nb == MAX_B || (last && nt == MAX_N - 1)) {
        int st = launch(t, nb, first);
        if (st) return st;
        first = gchunk;
        nb = 0;
        if (!last) { /* the same tensor continues in the next launch, in slot 0 */
          for (int l = 0; l < nl; l++) {
            t.ptr[l][0] = t.ptr[l][nt];
            t.dtype[l][0] = t.dtype[l][nt];
          }
          t.numel[0] = t.numel[nt];
          nt = 0;
        } else {
          nt = -1;
        }
      }
    }
    nt++;
  }
  if (nb) return launch(t, nb, first);
  return MS_OK;
}

#define CHUNK_RANGE(t)                                                                             \
  const int k = t.tens[blockIdx.x];                                                                \
  const int64_t lo = (int64_t)t.chunk[blockIdx.x] * CHUNK;                                         \
  const int64_t hi = lo + CHUNK < t.numel[k] ? lo + CHUNK : t.numel[k];

/* Every thread that meets a non-finite value writes 1: all writers agree, so no atomics. */
__global__ void unscale_kernel(mt_table t, const float *scale, float *found_inf) {
  CHUNK_RANGE(t);
  const float inv = (float)(1.0 / (double)*scale);
  bool bad = false;
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    float v = ld(t.ptr[0][k], t.dtype[0][k], i);
    bad |= !isfinite(v);
    st(t.ptr[0][k], t.dtype[0][k], i, v * inv);
  }
  if (bad) *found_inf = 1.0f;
}

__global__ void scale_update_kernel(float *scale, int64_t *c, const float *found_inf,
                                    ms_scaler_params p) {
  double v = *scale;
  if (*found_inf != 0) {
    c[0] = 0;
    c[1]++;
    if (p.dynamic) v *= p.backoff_factor;
  } else if (++c[0] >= p.growth_interval && p.dynamic) {
    c[0] = 0;
    double g = v * p.growth_factor;
    if (g <= p.max_scale) v = g;
  }
  if (p.dynamic && !(v >= p.min_scale)) v = p.min_scale;
  *scale = (float)v;
}

/* Lists: 0 params, 1 grads, 2 momentum, 3 master. */
__global__ void sgd_kernel(mt_table t, ms_sgd_params p, int has_master, const float *found_inf) {
  if (found_inf && *found_inf != 0) return;
  CHUNK_RANGE(t);
  const float lr = (float)p.lr, mu = (float)p.momentum, wd = (float)p.weight_decay;
  const int w = has_master ? 3 : 0;
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    float wi = ld(t.ptr[w][k], t.dtype[w][k], i), gi = ld(t.ptr[1][k], t.dtype[1][k], i);
    if (p.weight_decay != 0) gi = gi + wi * wd;
    if (p.momentum != 0) {
      gi = ld(t.ptr[2][k], t.dtype[2][k], i) * mu + gi;
      st(t.ptr[2][k], t.dtype[2][k], i, gi);
    }
    wi = wi + -lr * gi;
    st(t.ptr[w][k], t.dtype[w][k], i, wi);
    if (has_master) st(t.ptr[0][k], t.dtype[0][k], i, wi);
  }
}

/* Lists: 0 params, 1 grads, 2 exp_avg, 3 exp_avg_sq, 4 master. step is read, not written. */
__global__ void adamw_kernel(mt_table t, ms_adamw_params p, int has_master, const int64_t *step,
                             const float *found_inf) {
  if (found_inf && *found_inf != 0) return;
  CHUNK_RANGE(t);
  const double s = (double)(*step + 1);
  const float decay = (float)(1 - p.lr * p.weight_decay), b1 = (float)p.beta1, b2 = (float)p.beta2,
              a1 = (float)(1 - p.beta1), a2 = (float)(1 - p.beta2),
              ibc2 = (float)(1 / (1 - pow(p.beta2, s))), eps = (float)p.eps,
              step_size = (float)(-p.lr / (1 - pow(p.beta1, s)));
  const int w = has_master ? 4 : 0;
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    float gi = ld(t.ptr[1][k], t.dtype[1][k], i), wi = ld(t.ptr[w][k], t.dtype[w][k], i) * decay;
    float mi = ld(t.ptr[2][k], t.dtype[2][k], i) * b1 + a1 * gi;
    float vi = ld(t.ptr[3][k], t.dtype[3][k], i) * b2 + a2 * (gi * gi);
    st(t.ptr[2][k], t.dtype[2][k], i, mi);
    st(t.ptr[3][k], t.dtype[3][k], i, vi);
    wi = wi + step_size * (mi / (sqrtf(vi * ibc2) + eps));
    st(t.ptr[w][k], t.dtype[w][k], i, wi);
    if (has_master) st(t.ptr[0][k], t.dtype[0][k], i, wi);
  }
}

__global__ void step_count_kernel(int64_t *step, const float *found_inf) {
  if (!(found_inf && *found_inf != 0)) *step += 1;
}

/* Block b writes the sum of squares of its chunk to part[first + b]. */
__global__ void sumsq_kernel(mt_table t, double *part, int first) {
  CHUNK_RANGE(t);
  __shared__ double red[THREADS];
  double acc = 0;
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
    double v = ld(t.ptr[0][k], t.dtype[0][k], i);
    acc += v * v;
  }
  red[threadIdx.x] = acc;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) part[first + blockIdx.x] = red[0];
}

/* One thread sums the partials in chunk order: the same norm on every run. */
__global__ void norm_finish_kernel(const double *part, int n, float *out) {
  double s = 0;
  for (int i = 0; i < n; i++)
    s += part[i];
  *out = (float)sqrt(s);
}

__global__ void clip_kernel(mt_table t, const float *norm, double max_norm) {
  const double total = *norm;
  if (!(total > max_norm)) return;
  CHUNK_RANGE(t);
  const float f = (float)(max_norm / (total + 1e-6));
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x)
    st(t.ptr[0][k], t.dtype[0][k], i, ld(t.ptr[0][k], t.dtype[0][k], i) * f);
}

static int stream_of(ms_context *ctx, const ms_tensor *t, const char *op, cudaStream_t *s) {
  ms_cuda_dev *dev;
  int st = ms_cuda_dev_get(ctx, t->storage->device_index, op, &dev);
  if (!st) *s = dev->stream;
  return st;
}

extern "C" int ms_cuda_mt_unscale(ms_context *ctx, ms_tensor *const *grads, int n,
                                  const ms_tensor *scale, ms_tensor *found_inf) {
  const char *op = "mt_unscale_ (cuda)";
  cudaStream_t s;
  int st = stream_of(ctx, found_inf, op, &s);
  if (st) return st;
  ms_tensor *const *lists[1] = {grads};
  const float *sc = (const float *)ms_data(scale);
  float *fi = (float *)ms_data(found_inf);
  return mt_apply(1, lists, n, [&](const mt_table &t, int nb, int) {
    unscale_kernel<<<nb, THREADS, 0, s>>>(t, sc, fi);
    MS_CU_LAUNCH(op, "unscale kernel");
    return (int)MS_OK;
  });
}

extern "C" int ms_cuda_mt_scale_update(ms_context *ctx, ms_tensor *scale, ms_tensor *counters,
                                       const ms_tensor *found_inf, const ms_scaler_params *p) {
  const char *op = "mt_scale_update (cuda)";
  cudaStream_t s;
  int st = stream_of(ctx, scale, op, &s);
  if (st) return st;
  scale_update_kernel<<<1, 1, 0, s>>>((float *)ms_data(scale), (int64_t *)ms_data(counters),
                                      (const float *)ms_data(found_inf), *p);
  MS_CU_LAUNCH(op, "scale update kernel");
  return MS_OK;
}

extern "C" int ms_cuda_mt_sgd(ms_context *ctx, ms_tensor *const *params, ms_tensor *const *grads,
                              ms_tensor *const *bufs, ms_tensor *const *master, int n,
                              const ms_sgd_params *p, const ms_tensor *found_inf) {
  const char *op = "mt_sgd_step (cuda)";
  cudaStream_t s;
  if (n == 0) return MS_OK;
  int st = stream_of(ctx, params[0], op, &s);
  if (st) return st;
  ms_tensor *const *lists[4] = {params, grads, p->momentum != 0 ? bufs : NULL, master};
  const float *fi = found_inf ? (const float *)ms_data(found_inf) : NULL;
  ms_sgd_params pp = *p;
  int hm = master != NULL;
  return mt_apply(4, lists, n, [&](const mt_table &t, int nb, int) {
    sgd_kernel<<<nb, THREADS, 0, s>>>(t, pp, hm, fi);
    MS_CU_LAUNCH(op, "sgd kernel");
    return (int)MS_OK;
  });
}

extern "C" int ms_cuda_mt_adamw(ms_context *ctx, ms_tensor *const *params, ms_tensor *const *grads,
                                ms_tensor *const *m, ms_tensor *const *v, ms_tensor *const *master,
                                int n, const ms_adamw_params *p, ms_tensor *step,
                                const ms_tensor *found_inf) {
  const char *op = "mt_adamw_step (cuda)";
  cudaStream_t s;
  int st = stream_of(ctx, step, op, &s);
  if (st) return st;
  ms_tensor *const *lists[5] = {params, grads, m, v, master};
  const float *fi = found_inf ? (const float *)ms_data(found_inf) : NULL;
  int64_t *sp = (int64_t *)ms_data(step);
  ms_adamw_params pp = *p;
  int hm = master != NULL;
  st = mt_apply(5, lists, n, [&](const mt_table &t, int nb, int) {
    adamw_kernel<<<nb, THREADS, 0, s>>>(t, pp, hm, sp, fi);
    MS_CU_LAUNCH(op, "adamw kernel");
    return (int)MS_OK;
  });
  if (st) return st;
  step_count_kernel<<<1, 1, 0, s>>>(sp, fi); /* after every chunk has read the old step */
  MS_CU_LAUNCH(op, "step count kernel");
  return MS_OK;
}

extern "C" int ms_cuda_mt_norm(ms_context *ctx, ms_tensor *const *ts, int n, ms_tensor *out) {
  const char *op = "mt_norm (cuda)";
  ms_cuda_dev *dev;
  int st = ms_cuda_dev_get(ctx, out->storage->device_index, op, &dev);
  if (st) return st;
  int64_t total = 0;
  for (int i = 0; i < n; i++)
    total += (ms_numel(ts[i]) + CHUNK - 1) / CHUNK;
  void *ws = NULL;
  if (total > 0 && (st = ms_cuda_workspace(dev, sizeof(double) * (size_t)total, op, &ws)))
    return st;
  double *part = (double *)ws;
  cudaStream_t s = dev->stream;
  ms_tensor *const *lists[1] = {ts};
  st = mt_apply(1, lists, n, [&](const mt_table &t, int nb, int first) {
    sumsq_kernel<<<nb, THREADS, 0, s>>>(t, part, first);
    MS_CU_LAUNCH(op, "sum of squares kernel");
    return (int)MS_OK;
  });
  if (st) return st;
  norm_finish_kernel<<<1, 1, 0, s>>>(part, (int)total, (float *)ms_data(out));
  MS_CU_LAUNCH(op, "norm kernel");
  return MS_OK;
}

extern "C" int ms_cuda_mt_clip(ms_context *ctx, ms_tensor *const *ts, int n, const ms_tensor *norm,
                               double max_norm) {
  const char *op = "mt_clip_ (cuda)";
  cudaStream_t s;
  int st = stream_of(ctx, norm, op, &s);
  if (st) return st;
  ms_tensor *const *lists[1] = {ts};
  const float *nm = (const float *)ms_data(norm);
  return mt_apply(1, lists, n, [&](const mt_table &t, int nb, int) {
    clip_kernel<<<nb, THREADS, 0, s>>>(t, nm, max_norm);
    MS_CU_LAUNCH(op, "clip kernel");
    return (int)MS_OK;
  });
}
