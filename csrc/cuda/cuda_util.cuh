/* cuda_util.cuh: helpers shared by the .cu files: status checks, device state, index maths. */
#ifndef MS_CUDA_UTIL_CUH
#define MS_CUDA_UTIL_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda_backend.h"

#define MS_CUDA_MAX_DEVICES 64

/* Runs a CUDA runtime call; on failure records "<op>: <call> failed: <reason>" and returns
 * MS_ERR_INTERNAL (MS_ERR_OOM for cudaErrorMemoryAllocation) from the enclosing function. */
#define MS_CU(op, call)                                                                            \
  do {                                                                                             \
    cudaError_t ms_e_ = (call);                                                                    \
    if (ms_e_ != cudaSuccess) return ms_cuda_fail(op, #call, ms_e_);                               \
  } while (0)

/* After a kernel launch: launch errors (bad configuration, no kernel image for this GPU). */
#define MS_CU_LAUNCH(op, what) MS_CU(op, cudaGetLastError())

int ms_cuda_fail(const char *op, const char *call, cudaError_t e);

/* Per-device state of one context (ctx->cuda holds a table of these, made on first use). */
typedef struct ms_cuda_dev {
  int index;
  cudaStream_t stream; /* the device's compute stream (owned by the allocator table) */
  void *cublas;        /* cublasHandle_t, made on first use */
  void *cublaslt;      /* cublasLtHandle_t, made on first use */
  void *cudnn;         /* cudnnHandle_t, made on first use (NULL without cuDNN) */
  void *workspace;     /* device scratch for cuBLASLt / cuDNN */
  size_t workspace_size;
  void *pinned[2]; /* pinned host staging buffers for H2D / D2H copies */
  size_t pinned_size;
  cudaEvent_t pinned_done[2];
  int pinned_events;
} ms_cuda_dev;

/* The state for device index of ctx, made on first use; also makes index the calling
 * thread's current device. Fails naming op when there is no such device. */
int ms_cuda_dev_get(ms_context *ctx, int index, const char *op, ms_cuda_dev **out);
/* The compute stream of device index (allocator.cu; every op of every context runs there,
 * which is what makes the caching allocator's reuse of freed blocks safe). */
int ms_cuda_stream(int index, const char *op, cudaStream_t *out);
/* Pinned staging buffers of at least nbytes each (context.cu). */
int ms_cuda_pinned(ms_cuda_dev *dev, size_t nbytes, const char *op);
/* Scratch device memory of at least nbytes (context.cu). */
int ms_cuda_workspace(ms_cuda_dev *dev, size_t nbytes, const char *op, void **out);

/* ---- strided index calculator: up to 4 operands, byte strides, innermost dim last ---- */
#define MS_CU_MAX_OPS 4
typedef struct ms_cu_iter {
  int ndim;
  int nops;
  int64_t numel;
  int64_t shape[MS_MAX_DIMS];
  int64_t strides[MS_CU_MAX_OPS][MS_MAX_DIMS];
  char *data[MS_CU_MAX_OPS];
  int contiguous; /* every operand dense with its element size along one dim */
} ms_cu_iter;

/* Built on the host from ms_iter_build (broadcasting, size-1 dims dropped, dims merged). */
static inline void ms_cu_iter_make(ms_cu_iter *c, int nops, const ms_tensor *const *ops,
                                   const int64_t *shape, int ndim) {
  ms_iter it;
  ms_iter_build(&it, nops, ops, shape, ndim);
  memset(c, 0, sizeof *c);
  c->ndim = it.ndim;
  c->nops = nops;
  c->numel = it.numel;
  for (int d = 0; d < it.ndim; d++)
    c->shape[d] = it.shape[d];
  c->contiguous = it.ndim == 1;
  for (int k = 0; k < nops; k++) {
    c->data[k] = it.data[k];
    for (int d = 0; d < it.ndim; d++)
      c->strides[k][d] = it.strides[k][d];
    if (it.ndim == 1 && it.strides[k][0] != ms_dtype_size(ops[k]->dtype)) c->contiguous = 0;
  }
}

/* Byte offsets of linear element i for every operand. */
__device__ __forceinline__ void ms_cu_offsets(const ms_cu_iter &c, int64_t i, int64_t *off) {
  for (int k = 0; k < MS_CU_MAX_OPS; k++)
    off[k] = 0;
  for (int d = c.ndim - 1; d >= 0; d--) {
    int64_t s = c.shape[d];
    int64_t q = i / s, r = i - q * s;
    for (int k = 0; k < MS_CU_MAX_OPS; k++)
      if (k < c.nops) off[k] += r * c.strides[k][d];
    i = q;
  }
}

/* Launch geometry for n elements with a grid-stride loop. */
static inline unsigned ms_cu_blocks(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  if (b > 65536) b = 65536;
  return (unsigned)(b < 1 ? 1 : b);
}

/* ---- dtype conversions on the device (same rounding as csrc/core/dtype.h) ---- */
__device__ __forceinline__ double ms_cu_load_f64(const char *p, ms_dtype d) {
  switch (d) {
  case MS_F64: return *(const double *)p;
  case MS_F32: return *(const float *)p;
  case MS_F16: return __half2float(*(const __half *)p);
  case MS_BF16: return __bfloat162float(*(const __nv_bfloat16 *)p);
  case MS_I64: return (double)*(const int64_t *)p;
  case MS_I32: return *(const int32_t *)p;
  case MS_U8: return *(const uint8_t *)p;
  case MS_BOOL: return *(const uint8_t *)p ? 1.0 : 0.0;
  }
  return 0;
}

__device__ __forceinline__ int64_t ms_cu_load_i64(const char *p, ms_dtype d) {
  switch (d) {
  case MS_I64: return *(const int64_t *)p;
  case MS_I32: return *(const int32_t *)p;
  case MS_U8:
  case MS_BOOL: return *(const uint8_t *)p;
  default: return (int64_t)ms_cu_load_f64(p, d);
  }
}

__device__ __forceinline__ void ms_cu_store_f64(char *p, ms_dtype d, double v) {
  switch (d) {
  case MS_F64: *(double *)p = v; break;
  case MS_F32: *(float *)p = (float)v; break;
  case MS_F16: *(__half *)p = __float2half_rn((float)v); break;
  case MS_BF16: *(__nv_bfloat16 *)p = __float2bfloat16_rn((float)v); break;
  case MS_I64: *(int64_t *)p = isfinite(v) ? (int64_t)v : 0; break;
  case MS_I32: *(int32_t *)p = isfinite(v) ? (int32_t)v : 0; break;
  case MS_U8: *(uint8_t *)p = isfinite(v) ? (uint8_t)(int64_t)v : 0; break;
  case MS_BOOL: *(uint8_t *)p = v != 0; break;
  }
}

__device__ __forceinline__ void ms_cu_store_i64(char *p, ms_dtype d, int64_t v) {
  switch (d) {
  case MS_I64: *(int64_t *)p = v; break;
  case MS_I32: *(int32_t *)p = (int32_t)v; break;
  case MS_U8: *(uint8_t *)p = (uint8_t)v; break;
  case MS_BOOL: *(uint8_t *)p = v != 0; break;
  default: ms_cu_store_f64(p, d, (double)v);
  }
}

/* Typed float loads/stores for the templated fast paths (compute type float or double). */
template <class T> struct ms_cu_num;
template <> struct ms_cu_num<float> {
  typedef float acc;
  __device__ static float get(float v) { return v; }
  __device__ static float put(float v) { return v; }
};
template <> struct ms_cu_num<double> {
  typedef double acc;
  __device__ static double get(double v) { return v; }
  __device__ static double put(double v) { return v; }
};
template <> struct ms_cu_num<__half> {
  typedef float acc;
  __device__ static float get(__half v) { return __half2float(v); }
  __device__ static __half put(float v) { return __float2half_rn(v); }
};
template <> struct ms_cu_num<__nv_bfloat16> {
  typedef float acc;
  __device__ static float get(__nv_bfloat16 v) { return __bfloat162float(v); }
  __device__ static __nv_bfloat16 put(float v) { return __float2bfloat16_rn(v); }
};

#endif
