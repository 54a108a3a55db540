/* reduce.cu: sum, mean, prod, max and min over any set of dims (double / int64 accumulation). */
#include <math.h>
#include <stdint.h>

#include "cuda_util.cuh"
extern "C" {
#include "../core/backend.h"
}

/* x contiguous, viewed as kept dims (the output's order) times reduced dims. */
typedef struct red_plan {
  int nk, nr;
  int64_t kshape[MS_MAX_DIMS], kstride[MS_MAX_DIMS]; /* element strides in x */
  int64_t rshape[MS_MAX_DIMS], rstride[MS_MAX_DIMS];
  int64_t m, r; /* outputs, elements per output */
  const char *x;
  char *out;
  ms_dtype dx, dout;
  int op;
} red_plan;

__device__ __forceinline__ int64_t plan_offset(int64_t i, const int64_t *shape,
                                               const int64_t *stride, int n) {
  int64_t off = 0;
  for (int d = n - 1; d >= 0; d--) {
    int64_t q = i / shape[d];
    off += (i - q * shape[d]) * stride[d];
    i = q;
  }
  return off;
}

template <class A> __device__ __forceinline__ A red_init(int op);
template <> __device__ __forceinline__ double red_init<double>(int op) {
  return op == MS_RED_PROD ? 1.0 : op == MS_RED_MAX ? -INFINITY : op == MS_RED_MIN ? INFINITY : 0.0;
}
template <> __device__ __forceinline__ int64_t red_init<int64_t>(int op) {
  return op == MS_RED_PROD ? 1 : op == MS_RED_MAX ? INT64_MIN : op == MS_RED_MIN ? INT64_MAX : 0;
}

/* NaN propagates through max/min, as on the CPU. */
__device__ __forceinline__ double red_step(int op, double acc, double v) {
  switch (op) {
  case MS_RED_PROD: return acc * v;
  case MS_RED_MAX: return (v != v || v > acc) ? v : acc;
  case MS_RED_MIN: return (v != v || v < acc) ? v : acc;
  default: return acc + v;
  }
}
__device__ __forceinline__ int64_t red_step(int op, int64_t acc, int64_t v) {
  switch (op) {
  case MS_RED_PROD: return (int64_t)((uint64_t)acc * (uint64_t)v);
  case MS_RED_MAX: return v > acc ? v : acc;
  case MS_RED_MIN: return v < acc ? v : acc;
  default: return (int64_t)((uint64_t)acc + (uint64_t)v);
  }
}

__device__ __forceinline__ void red_load(const char *p, ms_dtype d, double *v) {
  *v = ms_cu_load_f64(p, d);
}
__device__ __forceinline__ void red_load(const char *p, ms_dtype d, int64_t *v) {
  *v = ms_cu_load_i64(p, d);
}

__device__ __forceinline__ void red_store(const red_plan &p, int64_t o, double acc) {
  if (p.op == MS_RED_MEAN) acc /= (double)p.r;
  ms_cu_store_f64(p.out + o * (p.dout == MS_F64 || p.dout == MS_I64    ? 8
                               : p.dout == MS_F32 || p.dout == MS_I32  ? 4
                               : p.dout == MS_F16 || p.dout == MS_BF16 ? 2
                                                                       : 1),
                  p.dout, acc);
}
__device__ __forceinline__ void red_store(const red_plan &p, int64_t o, int64_t acc) {
  ms_cu_store_i64(p.out + o * (p.dout == MS_I64 ? 8 : p.dout == MS_I32 ? 4 : 1), p.dout, acc);
}

__device__ __forceinline__ int esize(ms_dtype d) {
  return d == MS_F64 || d == MS_I64    ? 8
         : d == MS_F32 || d == MS_I32  ? 4
         : d == MS_F16 || d == MS_BF16 ? 2
                                       : 1;
}

/* One thread per output: short reductions with many outputs (e.g. over the batch dim). */
template <class A> __global__ void red_thread(red_plan p) {
  int es = esize(p.dx);
  for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < p.m;
       o += (int64_t)gridDim.x * blockDim.x) {
    int64_t base = plan_offset(o, p.kshape, p.kstride, p.nk);
    A acc = red_init<A>(p.op);
    for (int64_t i = 0; i < p.r; i++) {
      A v;
      red_load(p.x + (base + plan_offset(i, p.rshape, p.rstride, p.nr)) * es, p.dx, &v);
      acc = red_step(p.op, acc, v);
    }
    red_store(p, o, acc);
  }
}

/* One block per output: long reductions; threads stride over the reduced elements. */
template <class A, int Threads> __global__ void red_block(red_plan p) {
  __shared__ A part[Threads];
  int es = esize(p.dx);
  for (int64_t o = blockIdx.x; o < p.m; o += gridDim.x) {
    int64_t base = plan_offset(o, p.kshape, p.kstride, p.nk);
    A acc = red_init<A>(p.op);
    for (int64_t i = threadIdx.x; i < p.r; i += Threads) {
      A v;
      red_load(p.x + (base + plan_offset(i, p.rshape, p.rstride, p.nr)) * es, p.dx, &v);
      acc = red_step(p.op, acc, v);
    }
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int s = Threads / 2; s > 0; s >>= 1) {
      if ((int)threadIdx.x < s)
        part[threadIdx.x] = red_step(p.op == MS_RED_MEAN ? MS_RED_SUM : p.op, part[threadIdx.x],
                                     part[threadIdx.x + s]);
      __syncthreads();
    }
    if (threadIdx.x == 0) red_store(p, o, part[0]);
    __syncthreads(); /* part is reused by the next output */
  }
}

extern "C" int ms_cuda_reduce(ms_context *ctx, ms_redop op, const ms_tensor *x, const int *red,
                              ms_tensor *out) {
  const char *opn = "reduce (cuda)";
  if (op == MS_RED_VAR) return ms_unsupported(MS_OP_REDUCE, "var", x, x->dtype);
  ms_cuda_dev *dev;
  int st = ms_cuda_dev_get(ctx, out->storage->device_index, opn, &dev);
  if (st) return st;
  red_plan p;
  memset(&p, 0, sizeof p);
  int64_t strides[MS_MAX_DIMS];
  ms_contiguous_strides(x->shape, x->ndim, strides);
  p.m = 1;
  p.r = 1;
  for (int i = 0; i < x->ndim; i++) {
    if (red[i]) {
      p.rshape[p.nr] = x->shape[i], p.rstride[p.nr++] = strides[i];
      p.r *= x->shape[i];
    } else {
      p.kshape[p.nk] = x->shape[i], p.kstride[p.nk++] = strides[i];
      p.m *= x->shape[i];
    }
  }
  if (p.m == 0) return MS_OK;
  p.x = ms_numel(x) ? ms_data(x) : NULL;
  p.out = ms_data(out);
  p.dx = x->dtype;
  p.dout = out->dtype;
  p.op = op;
  int isf = ms_dtype_is_float(x->dtype);
  cudaStream_t s = dev->stream;
  if (p.r >= 2048 || p.m < 2048) {
    unsigned nb = (unsigned)(p.m < 65536 ? p.m : 65536);
    if (isf)
      red_block<double, 256><<<nb, 256, 0, s>>>(p);
    else
      red_block<int64_t, 256><<<nb, 256, 0, s>>>(p);
  } else {
    unsigned nb = ms_cu_blocks(p.m, 256);
    if (isf)
      red_thread<double><<<nb, 256, 0, s>>>(p);
    else
      red_thread<int64_t><<<nb, 256, 0, s>>>(p);
  }
  MS_CU_LAUNCH(opn, "reduce kernel");
  return MS_OK;
}
