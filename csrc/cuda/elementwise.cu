/* elementwise.cu: broadcasting binary, scalar, unary (+ backward), where and axpy kernels. */
#include "../core/dtype.h"
#include "cuda_util.cuh"

#define THREADS 256
#define GRID_LOOP(i, n)                                                                            \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                        \
       i += (int64_t)gridDim.x * blockDim.x)

/* Operand addresses of element i: dense index or the strided calculator. */
template <bool Contig>
__device__ __forceinline__ void operand_ptrs(const ms_cu_iter &it, int64_t i, const int *es,
                                             char **p) {
  if (Contig) {
    for (int k = 0; k < MS_CU_MAX_OPS; k++)
      if (k < it.nops) p[k] = it.data[k] + i * es[k];
  } else {
    int64_t off[MS_CU_MAX_OPS];
    ms_cu_offsets(it, i, off);
    for (int k = 0; k < MS_CU_MAX_OPS; k++)
      if (k < it.nops) p[k] = it.data[k] + off[k];
  }
}

typedef struct {
  int es[MS_CU_MAX_OPS]; /* element sizes (dense addressing) */
} elem_sizes;

static elem_sizes sizes_of(int n, const ms_tensor *const *ops) {
  elem_sizes s;
  for (int k = 0; k < MS_CU_MAX_OPS; k++)
    s.es[k] = k < n ? (int)ms_dtype_size(ops[k]->dtype) : 0;
  return s;
}

/* ================================ binary ================================ */
/* Scalar operand modes: 0 both tensors (operands 1, 2), 1 a op s, 2 s op a (operand 1). */

template <class C> __device__ __forceinline__ C bin_float(int op, C a, C b) {
  switch (op) {
  case MS_ADD: return a + b;
  case MS_SUB: return a - b;
  case MS_MUL: return a * b;
  case MS_DIV: return a / b;
  case MS_POW: return pow(a, b);
  case MS_MAXIMUM: return (a != a || a > b) ? a : b; /* NaN propagates */
  case MS_MINIMUM: return (a != a || a < b) ? a : b;
  }
  return 0;
}

template <class C> __device__ __forceinline__ bool bin_cmp(int op, C a, C b) {
  switch (op) {
  case MS_EQ: return a == b;
  case MS_NE: return a != b;
  case MS_LT: return a < b;
  case MS_LE: return a <= b;
  case MS_GT: return a > b;
  case MS_GE: return a >= b;
  case MS_LOGICAL_AND: return (a != 0) && (b != 0);
  case MS_LOGICAL_OR: return (a != 0) || (b != 0);
  }
  return false;
}

__device__ __forceinline__ int64_t ipow(int64_t a, int64_t b) {
  if (b < 0) return a == 1 ? 1 : a == -1 ? ((b & 1) ? -1 : 1) : 0;
  uint64_t r = 1, base = (uint64_t)a;
  while (b) {
    if (b & 1) r *= base;
    base *= base;
    b >>= 1;
  }
  return (int64_t)r;
}

__device__ __forceinline__ int64_t bin_int(int op, int64_t a, int64_t b) {
  switch (op) {
  case MS_ADD: return (int64_t)((uint64_t)a + (uint64_t)b);
  case MS_SUB: return (int64_t)((uint64_t)a - (uint64_t)b);
  case MS_MUL: return (int64_t)((uint64_t)a * (uint64_t)b);
  case MS_DIV: return b ? a / b : 0; /* not reached: integers divide in f32 */
  case MS_POW: return ipow(a, b);
  case MS_MAXIMUM: return a > b ? a : b;
  case MS_MINIMUM: return a < b ? a : b;
  default: return bin_cmp<int64_t>(op, a, b);
  }
}

/* All operands of dtype T (output T, or bool for comparisons); compute in float or double. */
template <class T, bool Contig, bool BoolOut>
__global__ void bin_typed(ms_cu_iter it, elem_sizes es, int op, int mode, double sv) {
  typedef ms_cu_num<T> N;
  typedef typename N::acc C;
  const C s = (C)sv;
  GRID_LOOP(i, it.numel) {
    char *p[MS_CU_MAX_OPS];
    operand_ptrs<Contig>(it, i, es.es, p);
    C a, b;
    if (mode == 0) {
      a = N::get(*(const T *)p[1]);
      b = N::get(*(const T *)p[2]);
    } else if (mode == 1) {
      a = N::get(*(const T *)p[1]);
      b = s;
    } else {
      a = s;
      b = N::get(*(const T *)p[1]);
    }
    if (BoolOut)
      *(uint8_t *)p[0] = bin_cmp<C>(op, a, b);
    else
      *(T *)p[0] = N::put(bin_float<C>(op, a, b));
  }
}

/* Any dtypes: float ct computes in double (rounded to float for f32/f16/bf16 arithmetic, as
 * the CPU does), integer ct in int64. */
__global__ void bin_generic(ms_cu_iter it, int op, ms_dtype ct, ms_dtype da, ms_dtype db,
                            ms_dtype dout, int mode, double sv, int64_t si) {
  const int isf = ct == MS_F64 || ct == MS_F32 || ct == MS_F16 || ct == MS_BF16;
  const int half = ct != MS_F64 && op <= MS_MINIMUM;
  GRID_LOOP(i, it.numel) {
    int64_t off[MS_CU_MAX_OPS];
    ms_cu_offsets(it, i, off);
    const char *pa = it.data[1] + off[1];
    const char *pb = mode == 0 ? it.data[2] + off[2] : pa;
    char *po = it.data[0] + off[0];
    if (isf) {
      double a = mode == 2 ? sv : ms_cu_load_f64(pa, da);
      double b = mode == 0 ? ms_cu_load_f64(pb, db) : mode == 1 ? sv : ms_cu_load_f64(pb, da);
      double r = op <= MS_MINIMUM ? bin_float<double>(op, a, b) : (double)bin_cmp<double>(op, a, b);
      if (half) r = (float)r;
      ms_cu_store_f64(po, dout, r);
    } else {
      int64_t a = mode == 2 ? si : ms_cu_load_i64(pa, da);
      int64_t b = mode == 0 ? ms_cu_load_i64(pb, db) : mode == 1 ? si : ms_cu_load_i64(pb, da);
      ms_cu_store_i64(po, dout, bin_int(op, a, b));
    }
  }
}

template <class T>
static void launch_bin_typed(const ms_cu_iter &it, elem_sizes es, int op, int mode, double sv,
                             cudaStream_t s) {
  unsigned nb = ms_cu_blocks(it.numel, THREADS);
  bool cmp = op >= MS_EQ;
  if (it.contiguous) {
    if (cmp)
      bin_typed<T, true, true><<<nb, THREADS, 0, s>>>(it, es, op, mode, sv);
    else
      bin_typed<T, true, false><<<nb, THREADS, 0, s>>>(it, es, op, mode, sv);
  } else {
    if (cmp)
      bin_typed<T, false, true><<<nb, THREADS, 0, s>>>(it, es, op, mode, sv);
    else
      bin_typed<T, false, false><<<nb, THREADS, 0, s>>>(it, es, op, mode, sv);
  }
}

/* Shared by the tensor-tensor and tensor-scalar entry points. sdt: the dtype the scalar
 * is held in (its value is rounded through it, as the CPU does). */
static int run_binary(ms_context *ctx, ms_binop op, ms_dtype ct, const ms_tensor *a,
                      const ms_tensor *b, int mode, double s, ms_dtype sdt, ms_tensor *dst) {
  const char *opn = "binary (cuda)";
  ms_cuda_dev *dev;
  int st = ms_cuda_dev_get(ctx, dst->storage->device_index, opn, &dev);
  if (st) return st;
  if (ms_numel(dst) == 0) return MS_OK;
  const ms_tensor *ops[3] = {dst, a, b};
  int nops = mode == 0 ? 3 : 2;
  ms_cu_iter it;
  ms_cu_iter_make(&it, nops, ops, dst->shape, dst->ndim);
  elem_sizes es = sizes_of(nops, ops);
  double sv = 0;
  int64_t si = 0;
  if (mode) { /* the scalar as the CPU holds it */
    char buf[8];
    if (sdt == MS_I64) {
      si = (int64_t)s;
      sv = (double)si;
    } else {
      ms_store_f64(buf, sdt, s);
      sv = ms_load_f64(buf, sdt);
      si = (int64_t)sv;
    }
  }
  int cmp = op >= MS_EQ;
  int typed = ms_dtype_is_float(ct) && a->dtype == ct && (mode || b->dtype == ct) &&
              dst->dtype == (cmp ? MS_BOOL : ct);
  if (typed) {
    switch (ct) {
    case MS_F32: launch_bin_typed<float>(it, es, op, mode, sv, dev->stream); break;
    case MS_F64: launch_bin_typed<double>(it, es, op, mode, sv, dev->stream); break;
    case MS_F16: launch_bin_typed<__half>(it, es, op, mode, sv, dev->stream); break;
    default: launch_bin_typed<__nv_bfloat16>(it, es, op, mode, sv, dev->stream); break;
    }
  } else {
    bin_generic<<<ms_cu_blocks(it.numel, THREADS), THREADS, 0, dev->stream>>>(
        it, op, ct, a->dtype, mode == 0 ? b->dtype : a->dtype, dst->dtype, mode, sv, si);
  }
  MS_CU_LAUNCH(opn, "binary kernel");
  return MS_OK;
}

extern "C" int ms_cuda_binary(ms_context *ctx, ms_binop op, ms_dtype ct, const ms_tensor *a,
                              const ms_tensor *b, ms_tensor *dst) {
  return run_binary(ctx, op, ct, a, b, 0, 0, MS_F64, dst);
}

extern "C" int ms_cuda_binary_scalar(ms_context *ctx, ms_binop op, ms_dtype ct, const ms_tensor *a,
                                     double s, ms_dtype sdt, int reverse, ms_tensor *dst) {
  return run_binary(ctx, op, ct, a, NULL, reverse ? 2 : 1, s, sdt, dst);
}

/* ================================ unary ================================ */
#define GELU_K 0.7978845608028654

template <class C> __device__ __forceinline__ C un_float(int op, C x, C p0, C p1) {
  switch (op) {
  case MS_NEG: return -x;
  case MS_ABS: return fabs(x);
  case MS_EXP: return exp(x);
  case MS_LOG: return log(x);
  case MS_SQRT: return sqrt(x);
  case MS_RSQRT: return (C)1 / sqrt(x);
  case MS_SIGMOID: return (C)1 / ((C)1 + exp(-x));
  case MS_TANH: return tanh(x);
  case MS_RELU: return x < 0 ? (C)0 : x;
  case MS_LEAKY_RELU: return x > 0 ? x : x * p0;
  case MS_GELU:
    if (p0 == 0) return (C)0.5 * x * ((C)1 + erf(x * (C)0.7071067811865476));
    return (C)0.5 * x * ((C)1 + tanh((C)GELU_K * (x + (C)0.044715 * x * x * x)));
  case MS_HARDSWISH: return x * fmin(fmax(x + (C)3, (C)0), (C)6) / (C)6;
  case MS_HARDSIGMOID: return fmin(fmax(x + (C)3, (C)0), (C)6) / (C)6;
  case MS_CLAMP: {
    C v = x < p0 ? p0 : x;
    return v > p1 ? p1 : v;
  }
  case MS_POW_SCALAR: return pow(x, p0);
  case MS_SIGN: return x > 0 ? (C)1 : (x < 0 ? (C)-1 : x);
  case MS_RECIPROCAL: return (C)1 / x;
  case MS_SQUARE: return x * x;
  case MS_LOGICAL_NOT: return (C)(x == 0);
  }
  return 0;
}

__device__ __forceinline__ int64_t un_int(int op, int64_t x, double p0, double p1) {
  switch (op) {
  case MS_NEG: return (int64_t)(0 - (uint64_t)x);
  case MS_ABS: return x < 0 ? (int64_t)(0 - (uint64_t)x) : x;
  case MS_RELU: return x < 0 ? 0 : x;
  case MS_CLAMP: {
    int64_t v = x < p0 ? (int64_t)ceil(p0) : x;
    return v > p1 ? (int64_t)floor(p1) : v;
  }
  case MS_SIGN: return (x > 0) - (x < 0);
  case MS_SQUARE: return (int64_t)((uint64_t)x * (uint64_t)x);
  case MS_POW_SCALAR: return ipow(x, (int64_t)p0);
  case MS_LOGICAL_NOT: return x == 0;
  }
  return 0; /* other ops never compute in integers (validated in csrc/ops) */
}

template <class T, bool Contig>
__global__ void un_typed(ms_cu_iter it, elem_sizes es, int op, double p0, double p1) {
  typedef ms_cu_num<T> N;
  typedef typename N::acc C;
  GRID_LOOP(i, it.numel) {
    char *p[MS_CU_MAX_OPS];
    operand_ptrs<Contig>(it, i, es.es, p);
    *(T *)p[0] = N::put(un_float<C>(op, N::get(*(const T *)p[1]), (C)p0, (C)p1));
  }
}

__global__ void un_generic(ms_cu_iter it, int op, int isf, ms_dtype dx, ms_dtype dout, double p0,
                           double p1) {
  GRID_LOOP(i, it.numel) {
    int64_t off[MS_CU_MAX_OPS];
    ms_cu_offsets(it, i, off);
    const char *px = it.data[1] + off[1];
    char *po = it.data[0] + off[0];
    if (isf)
      ms_cu_store_f64(po, dout, un_float<double>(op, ms_cu_load_f64(px, dx), p0, p1));
    else
      ms_cu_store_i64(po, dout, un_int(op, ms_cu_load_i64(px, dx), p0, p1));
  }
}

template <class T>
static void launch_un_typed(const ms_cu_iter &it, elem_sizes es, int op, double p0, double p1,
                            cudaStream_t s) {
  unsigned nb = ms_cu_blocks(it.numel, THREADS);
  if (it.contiguous)
    un_typed<T, true><<<nb, THREADS, 0, s>>>(it, es, op, p0, p1);
  else
    un_typed<T, false><<<nb, THREADS, 0, s>>>(it, es, op, p0, p1);
}

extern "C" int ms_cuda_unary(ms_context *ctx, ms_unop op, ms_dtype ct, const ms_tensor *x,
                             double p0, double p1, ms_tensor *dst) {
  const char *opn = "unary (cuda)";
  ms_cuda_dev *dev;
  int st = ms_cuda_dev_get(ctx, dst->storage->device_index, opn, &dev);
  if (st) return st;
  if (ms_numel(dst) == 0) return MS_OK;
  const ms_tensor *ops[2] = {dst, x};
  ms_cu_iter it;
  ms_cu_iter_make(&it, 2, ops, dst->shape, dst->ndim);
  elem_sizes es = sizes_of(2, ops);
  if (x->dtype == ct && dst->dtype == ct && op != MS_LOGICAL_NOT && ms_dtype_is_float(ct)) {
    switch (ct) {
    case MS_F32: launch_un_typed<float>(it, es, op, p0, p1, dev->stream); break;
    case MS_F64: launch_un_typed<double>(it, es, op, p0, p1, dev->stream); break;
    case MS_F16: launch_un_typed<__half>(it, es, op, p0, p1, dev->stream); break;
    default: launch_un_typed<__nv_bfloat16>(it, es, op, p0, p1, dev->stream); break;
    }
  } else {
    un_generic<<<ms_cu_blocks(it.numel, THREADS), THREADS, 0, dev->stream>>>(
        it, op, ms_dtype_is_float(ct), x->dtype, dst->dtype, p0, p1);
  }
  MS_CU_LAUNCH(opn, "unary kernel");
  return MS_OK;
}

/* ---- unary backward: operands gin, gout, x, y (y is x when not given, and x is y) ---- */
template <class C> __device__ __forceinline__ C gelu_tanh_d(C x) {
  C u = (C)GELU_K * (x + (C)0.044715 * x * x * x);
  C t = tanh(u);
  return (C)0.5 * ((C)1 + t) +
         (C)0.5 * x * ((C)1 - t * t) * (C)GELU_K * ((C)1 + (C)3 * (C)0.044715 * x * x);
}

template <class C> __device__ __forceinline__ C un_bwd(int op, C g, C x, C y, C p0, C p1) {
  switch (op) {
  case MS_NEG: return -g;
  case MS_ABS: return x > 0 ? g : (x < 0 ? -g : (C)0);
  case MS_EXP: return g * y;
  case MS_LOG: return g / x;
  case MS_SQRT: return g * (C)0.5 / sqrt(x);
  case MS_RSQRT: return g * (C)-0.5 / (x * sqrt(x));
  case MS_SIGMOID: return g * y * ((C)1 - y);
  case MS_TANH: return g * ((C)1 - y * y);
  case MS_RELU: return x > 0 ? g : (C)0;
  case MS_LEAKY_RELU: return x > 0 ? g : g * p0;
  case MS_GELU:
    if (p0 == 0)
      return g * ((C)0.5 * ((C)1 + erf(x * (C)0.7071067811865476)) +
                  x * (C)0.3989422804014327 * exp((C)-0.5 * x * x));
    return g * gelu_tanh_d<C>(x);
  case MS_HARDSWISH: return x < -3 ? (C)0 : (x <= 3 ? g * (x / (C)3 + (C)0.5) : g);
  case MS_HARDSIGMOID: return (x > -3 && x < 3) ? g / (C)6 : (C)0;
  case MS_CLAMP: return (x >= p0 && x <= p1) ? g : (C)0;
  case MS_POW_SCALAR: return p0 == 0 ? (C)0 : g * p0 * pow(x, p0 - (C)1);
  case MS_SIGN: return (C)0 * g;
  case MS_RECIPROCAL: return -g / (x * x);
  case MS_SQUARE: return (C)2 * x * g;
  case MS_LOGICAL_NOT: return (C)0 * g;
  }
  return 0;
}

template <class T> __global__ void bwd_typed(ms_cu_iter it, int op, double p0, double p1) {
  typedef ms_cu_num<T> N;
  typedef typename N::acc C;
  GRID_LOOP(i, it.numel) {
    int64_t off[MS_CU_MAX_OPS];
    ms_cu_offsets(it, i, off);
    C g = N::get(*(const T *)(it.data[1] + off[1]));
    C x = N::get(*(const T *)(it.data[2] + off[2]));
    C y = N::get(*(const T *)(it.data[3] + off[3]));
    *(T *)(it.data[0] + off[0]) = N::put(un_bwd<C>(op, g, x, y, (C)p0, (C)p1));
  }
}

__global__ void bwd_generic(ms_cu_iter it, int op, ms_dtype dg, ms_dtype dx, ms_dtype dy,
                            ms_dtype dout, double p0, double p1) {
  GRID_LOOP(i, it.numel) {
    int64_t off[MS_CU_MAX_OPS];
    ms_cu_offsets(it, i, off);
    double r = un_bwd<double>(op, ms_cu_load_f64(it.data[1] + off[1], dg),
                              ms_cu_load_f64(it.data[2] + off[2], dx),
                              ms_cu_load_f64(it.data[3] + off[3], dy), p0, p1);
    ms_cu_store_f64(it.data[0] + off[0], dout, r);
  }
}

extern "C" int ms_cuda_unary_backward(ms_context *ctx, ms_unop op, const ms_tensor *gout,
                                      const ms_tensor *x, const ms_tensor *y, double p0, double p1,
                                      ms_tensor *gin) {
  const char *opn = "unary_backward (cuda)";
  ms_cuda_dev *dev;
  int st = ms_cuda_dev_get(ctx, gin->storage->device_index, opn, &dev);
  if (st) return st;
  if (!x) x = y;
  if (!y) y = x;
  if (ms_numel(gin) == 0) return MS_OK;
  const ms_tensor *ops[4] = {gin, gout, x, y};
  ms_cu_iter it;
  ms_cu_iter_make(&it, 4, ops, gin->shape, gin->ndim);
  ms_dtype dt = gin->dtype;
  unsigned nb = ms_cu_blocks(it.numel, THREADS);
  if (gout->dtype == dt && x->dtype == dt && y->dtype == dt) {
    switch (dt) {
    case MS_F32: bwd_typed<float><<<nb, THREADS, 0, dev->stream>>>(it, op, p0, p1); break;
    case MS_F64: bwd_typed<double><<<nb, THREADS, 0, dev->stream>>>(it, op, p0, p1); break;
    case MS_F16: bwd_typed<__half><<<nb, THREADS, 0, dev->stream>>>(it, op, p0, p1); break;
    default: bwd_typed<__nv_bfloat16><<<nb, THREADS, 0, dev->stream>>>(it, op, p0, p1); break;
    }
  } else {
    bwd_generic<<<nb, THREADS, 0, dev->stream>>>(it, op, gout->dtype, x->dtype, y->dtype, dt, p0,
                                                 p1);
  }
  MS_CU_LAUNCH(opn, "unary backward kernel");
  return MS_OK;
}

/* ================================ where, axpy ================================ */
__global__ void where_kernel(ms_cu_iter it, ms_dtype dc, ms_dtype da, ms_dtype db, ms_dtype dout) {
  const int same = da == dout && db == dout;
  const int isf = dout == MS_F64 || dout == MS_F32 || dout == MS_F16 || dout == MS_BF16;
  const int es = dout == MS_F64 || dout == MS_I64    ? 8
                 : dout == MS_F32 || dout == MS_I32  ? 4
                 : dout == MS_F16 || dout == MS_BF16 ? 2
                                                     : 1;
  GRID_LOOP(i, it.numel) {
    int64_t off[MS_CU_MAX_OPS];
    ms_cu_offsets(it, i, off);
    int c = ms_cu_load_i64(it.data[1] + off[1], dc) != 0;
    char *po = it.data[0] + off[0];
    const char *pa = it.data[2] + off[2], *pb = it.data[3] + off[3];
    if (same) {
      const char *src = c ? pa : pb;
      for (int k = 0; k < es; k++)
        po[k] = src[k];
    } else if (isf) {
      ms_cu_store_f64(po, dout, c ? ms_cu_load_f64(pa, da) : ms_cu_load_f64(pb, db));
    } else {
      ms_cu_store_i64(po, dout, c ? ms_cu_load_i64(pa, da) : ms_cu_load_i64(pb, db));
    }
  }
}

extern "C" int ms_cuda_where(ms_context *ctx, const ms_tensor *cond, const ms_tensor *a,
                             const ms_tensor *b, ms_tensor *dst) {
  const char *opn = "where (cuda)";
  ms_cuda_dev *dev;
  int st = ms_cuda_dev_get(ctx, dst->storage->device_index, opn, &dev);
  if (st) return st;
  if (ms_numel(dst) == 0) return MS_OK;
  const ms_tensor *ops[4] = {dst, cond, a, b};
  ms_cu_iter it;
  ms_cu_iter_make(&it, 4, ops, dst->shape, dst->ndim);
  where_kernel<<<ms_cu_blocks(it.numel, THREADS), THREADS, 0, dev->stream>>>(
      it, cond->dtype, a->dtype, b->dtype, dst->dtype);
  MS_CU_LAUNCH(opn, "where kernel");
  return MS_OK;
}

template <class T> __global__ void axpy_typed(ms_cu_iter it, double alpha) {
  typedef ms_cu_num<T> N;
  typedef typename N::acc C;
  const C al = (C)alpha;
  GRID_LOOP(i, it.numel) {
    int64_t off[MS_CU_MAX_OPS];
    ms_cu_offsets(it, i, off);
    T *o = (T *)(it.data[0] + off[0]);
    *o = N::put(N::get(*o) + al * N::get(*(const T *)(it.data[1] + off[1])));
  }
}

__global__ void axpy_generic(ms_cu_iter it, double alpha, ms_dtype dd, ms_dtype ds) {
  GRID_LOOP(i, it.numel) {
    int64_t off[MS_CU_MAX_OPS];
    ms_cu_offsets(it, i, off);
    char *p = it.data[0] + off[0];
    ms_cu_store_f64(p, dd, ms_cu_load_f64(p, dd) + alpha * ms_cu_load_f64(it.data[1] + off[1], ds));
  }
}

extern "C" int ms_cuda_axpy(ms_context *ctx, ms_tensor *dst, double alpha, const ms_tensor *src) {
  const char *opn = "axpy_ (cuda)";
  ms_cuda_dev *dev;
  int st = ms_cuda_dev_get(ctx, dst->storage->device_index, opn, &dev);
  if (st) return st;
  if (ms_numel(dst) == 0) return MS_OK;
  const ms_tensor *ops[2] = {dst, src};
  ms_cu_iter it;
  ms_cu_iter_make(&it, 2, ops, dst->shape, dst->ndim);
  unsigned nb = ms_cu_blocks(it.numel, THREADS);
  if (dst->dtype == src->dtype && dst->dtype == MS_F32)
    axpy_typed<float><<<nb, THREADS, 0, dev->stream>>>(it, alpha);
  else if (dst->dtype == src->dtype && dst->dtype == MS_F64)
    axpy_typed<double><<<nb, THREADS, 0, dev->stream>>>(it, alpha);
  else
    axpy_generic<<<nb, THREADS, 0, dev->stream>>>(it, alpha, dst->dtype, src->dtype);
  MS_CU_LAUNCH(opn, "axpy kernel");
  return MS_OK;
}
