/* random.cu: uniform, normal, randint and dropout from Philox4x32-10, laid out as
 * csrc/cpu/random.c. */
#include <math.h>

#include "../core/philox.h"
#include "cuda_util.cuh"

__device__ __forceinline__ int esize(ms_dtype d) {
  return d == MS_F64 || d == MS_I64    ? 8
         : d == MS_F32 || d == MS_I32  ? 4
         : d == MS_F16 || d == MS_BF16 ? 2
                                       : 1;
}

#define GRID_LOOP(i, n)                                                                            \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                        \
       i += (int64_t)gridDim.x * blockDim.x)

enum { GEN_UNIFORM, GEN_NORMAL, GEN_RANDINT };

/* One thread per Philox block b. uniform: elements 4b..4b+3 take words 0..3; normal and
 * randint: elements 2b, 2b+1 take word pairs (0, 1) and (2, 3). Arithmetic in double, as the
 * CPU does; stores round like ms_store_f64. */
__global__ void gen_kernel(int kind, uint64_t seed, uint64_t offset, char *p, ms_dtype d, int64_t n,
                           int64_t nblocks, double a0, double a1, int64_t low, uint64_t range) {
  const int es = esize(d);
  GRID_LOOP(b, nblocks) {
    uint32_t w[4];
    ms_philox_block(seed, offset + (uint64_t)b, 0, w);
    if (kind == GEN_UNIFORM) {
      for (int j = 0; j < 4 && b * 4 + j < n; j++) {
        double u = ms_u32_to_unit(w[j]);
        ms_cu_store_f64(p + (b * 4 + j) * es, d, a0 + (a1 - a0) * u);
      }
    } else if (kind == GEN_NORMAL) {
      for (int j = 0; j < 2 && b * 2 + j < n; j++) {
        double u1 = ((double)w[2 * j] + 1.0) * (1.0 / 4294967296.0); /* (0, 1] */
        double u2 = (double)w[2 * j + 1] * (1.0 / 4294967296.0);
        double z = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
        ms_cu_store_f64(p + (b * 2 + j) * es, d, a0 + a1 * z);
      }
    } else {
      for (int j = 0; j < 2 && b * 2 + j < n; j++) {
        uint64_t r = ((uint64_t)w[2 * j + 1] << 32) | w[2 * j];
        int64_t v = low + (int64_t)(r % range);
        char *q = p + (b * 2 + j) * es;
        if (d == MS_I64)
          *(int64_t *)q = v;
        else
          ms_cu_store_f64(q, d, (double)v);
      }
    }
  }
}

/* Generates into t (or a dense temporary copied into t) and advances gen by nblocks. */
static int generate(ms_context *ctx, ms_generator *g, ms_tensor *t, int kind, double a0, double a1,
                    int64_t low, uint64_t range, uint64_t nblocks, const char *op) {
  ms_cuda_dev *dev;
  int st = ms_cuda_dev_get(ctx, t->storage->device_index, op, &dev);
  if (st) return st;
  int64_t n = ms_numel(t);
  if (n > 0) {
    ms_tensor *tmp = t;
    if (!ms_is_contiguous(t) && (st = ms_tensor_new_like(t, t->dtype, &tmp))) return st;
    gen_kernel<<<ms_cu_blocks((int64_t)nblocks, 256), 256, 0, dev->stream>>>(
        kind, g->seed, g->offset, ms_data(tmp), tmp->dtype, n, (int64_t)nblocks, a0, a1, low,
        range);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) st = ms_cuda_fail(op, "gen_kernel launch", e);
    if (!st && tmp != t) st = ms_cuda_copy(ctx, t, tmp);
    if (tmp != t) ms_tensor_free(tmp);
    if (st) return st;
  }
  g->offset += nblocks;
  return MS_OK;
}

extern "C" int ms_cuda_uniform(ms_context *ctx, ms_generator *g, ms_tensor *t, double low,
                               double high) {
  return generate(ctx, g, t, GEN_UNIFORM, low, high, 0, 1, (uint64_t)(ms_numel(t) + 3) / 4,
                  "uniform_ (cuda)");
}

extern "C" int ms_cuda_normal(ms_context *ctx, ms_generator *g, ms_tensor *t, double mean,
                              double std) {
  return generate(ctx, g, t, GEN_NORMAL, mean, std, 0, 1, (uint64_t)(ms_numel(t) + 1) / 2,
                  "normal_ (cuda)");
}

extern "C" int ms_cuda_randint(ms_context *ctx, ms_generator *g, ms_tensor *t, int64_t low,
                               int64_t high) {
  return generate(ctx, g, t, GEN_RANDINT, 0, 0, low, (uint64_t)(high - low),
                  (uint64_t)(ms_numel(t) + 1) / 2, "randint_ (cuda)");
}

/* Element i keeps with word i % 4 of block offset + i / 4 (the CPU's word_at). */
__global__ void dropout_kernel(uint64_t seed, uint64_t offset, const char *x, char *out, char *mask,
                               ms_dtype dx, ms_dtype dout, ms_dtype dm, int64_t n, double p,
                               double keep) {
  const int ex = esize(dx), eo = esize(dout), em = esize(dm);
  GRID_LOOP(i, n) {
    uint32_t w[4];
    ms_philox_block(seed, offset + (uint64_t)(i >> 2), 0, w);
    double mv = (double)ms_u32_to_unit(w[i & 3]) >= p ? keep : 0.0;
    ms_cu_store_f64(mask + i * em, dm, mv);
    ms_cu_store_f64(out + i * eo, dout, ms_cu_load_f64(x + i * ex, dx) * mv);
  }
}

extern "C" int ms_cuda_dropout(ms_context *ctx, ms_generator *g, const ms_tensor *x, double p,
                               ms_tensor *out, ms_tensor *mask) {
  const char *op = "dropout (cuda)";
  ms_cuda_dev *dev;
  int st = ms_cuda_dev_get(ctx, x->storage->device_index, op, &dev);
  if (st) return st;
  int64_t n = ms_numel(mask);
  if (n > 0) {
    dropout_kernel<<<ms_cu_blocks(n, 256), 256, 0, dev->stream>>>(
        g->seed, g->offset, ms_data(x), ms_data(out), ms_data(mask), x->dtype, out->dtype,
        mask->dtype, n, p, 1.0 / (1.0 - p));
    MS_CU_LAUNCH(op, "dropout kernel");
  }
  g->offset += (uint64_t)(n + 3) / 4;
  return MS_OK;
}
