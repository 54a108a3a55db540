/* unary.c: CPU kernels for unary elementwise ops and their backward. */
/* FP exceptions are never inspected: without trapping math GCC if-converts the selects (GELU's
 * two tails, the clamps) and vectorises those loops. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include <tgmath.h>

#include "../core/dtype.h"
#include "basic_kernels.h"
#include "bf16_ew.h"
#include "ew_kernels.h"
#include "gelu_fast.h"
#include "half_loop.h"

typedef struct {
  ms_unop op;
  ms_dtype ct, dx, dout;
  double p0, p1;
} un_arg;

#define RUN2(T, EXPR)                                                                              \
  {                                                                                                \
    T *o = (T *)d[0];                                                                              \
    const T *xp = (const T *)d[1];                                                                 \
    if (s[0] == sizeof(T) && s[1] == sizeof(T)) {                                                  \
      for (int64_t k = 0; k < n; k++) {                                                            \
        const T x = xp[k];                                                                         \
        o[k] = (EXPR);                                                                             \
      }                                                                                            \
    } else {                                                                                       \
      for (int64_t k = 0; k < n; k++) {                                                            \
        const T x = *(const T *)((const char *)xp + k * s[1]);                                     \
        *(T *)((char *)o + k * s[0]) = (EXPR);                                                     \
      }                                                                                            \
    }                                                                                              \
  }                                                                                                \
  break

#define RET(T, EXPR) return (EXPR)

/* Every float op once, type-generic through tgmath (T is float or double). */
#define GELU_K 0.7978845608028654 /* sqrt(2/pi) */
#define UN_CASES(T, LOOP)                                                                          \
  case MS_NEG: LOOP(T, -x);                                                                        \
  case MS_ABS: LOOP(T, fabs(x));                                                                   \
  case MS_EXP: LOOP(T, exp(x));                                                                    \
  case MS_LOG: LOOP(T, log(x));                                                                    \
  case MS_SQRT: LOOP(T, sqrt(x));                                                                  \
  case MS_RSQRT: LOOP(T, (T)1 / sqrt(x));                                                          \
  case MS_SIGMOID: LOOP(T, (T)1 / ((T)1 + exp(-x)));                                               \
  case MS_TANH: LOOP(T, tanh(x));                                                                  \
  case MS_RELU: LOOP(T, x < 0 ? (T)0 : x);                                                         \
  case MS_LEAKY_RELU: LOOP(T, x > 0 ? x : x * p0);                                                 \
  case MS_GELU:                                                                                    \
    if (p0 == 0) {                                                                                 \
      LOOP(T, gelu_erf(x));                                                                        \
    } else {                                                                                       \
      LOOP(T, (T)0.5 * x * ((T)1 + tanh((T)GELU_K * (x + (T)0.044715 * x * x * x))));              \
    }                                                                                              \
  case MS_HARDSWISH: LOOP(T, x *fmin(fmax(x + (T)3, (T)0), (T)6) / (T)6);                          \
  case MS_HARDSIGMOID: LOOP(T, fmin(fmax(x + (T)3, (T)0), (T)6) / (T)6);                           \
  case MS_CLAMP: LOOP(T, (x < p0 ? p0 : x) > p1 ? p1 : (x < p0 ? p0 : x));                         \
  case MS_POW_SCALAR: LOOP(T, pow(x, p0));                                                         \
  case MS_SIGN: LOOP(T, x > 0 ? (T)1 : (x < 0 ? (T)-1 : x));                                       \
  case MS_RECIPROCAL: LOOP(T, (T)1 / x);                                                           \
  case MS_SQUARE: LOOP(T, x *x);                                                                   \
  case MS_LOGICAL_NOT: LOOP(T, (T)(x == 0))

/* The exact GELU: f32 through the vectorisable erfc of gelu_fast.h, f64 through libm. */
static inline double gelu_erf_dd(double x) { return 0.5 * x * erfc(-x * 0.7071067811865476); }
static inline double gelu_erf_d_dd(double x) {
  return 0.5 * erfc(-x * 0.7071067811865476) + x * 0.3989422804014327 * exp(-0.5 * x * x);
}

#define gelu_erf ms_gelu_f32
static void un_f32(char **d, const int64_t *s, int64_t n, void *arg) {
  const un_arg *a = arg;
  const float p0 = (float)a->p0, p1 = (float)a->p1;
  switch (a->op) { UN_CASES(float, RUN2); }
}
#undef gelu_erf
#define gelu_erf gelu_erf_dd

static void un_f64(char **d, const int64_t *s, int64_t n, void *arg) {
  const un_arg *a = arg;
  const double p0 = a->p0, p1 = a->p1;
  switch (a->op) { UN_CASES(double, RUN2); }
}

static double un_d(ms_unop op, double x, double p0, double p1) {
  switch (op) { UN_CASES(double, RET); }
  return 0;
}

static int64_t un_i(ms_unop op, int64_t x, double p0, double p1) {
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
  case MS_POW_SCALAR: {
    uint64_t r = 1, base = (uint64_t)x;
    for (int64_t e = (int64_t)p0; e > 0; e >>= 1) {
      if (e & 1) r *= base;
      base *= base;
    }
    return (int64_t)r;
  }
  case MS_LOGICAL_NOT: return x == 0;
  default: return 0; /* other ops never compute in ints (validated in ops/) */
  }
}

static void un_generic(char **d, const int64_t *s, int64_t n, void *arg) {
  const un_arg *a = arg;
  if (ms_dtype_is_float(a->ct)) {
    for (int64_t k = 0; k < n; k++)
      ms_store_f64(d[0] + k * s[0], a->dout,
                   un_d(a->op, ms_load_f64(d[1] + k * s[1], a->dx), a->p0, a->p1));
  } else {
    for (int64_t k = 0; k < n; k++) {
      int64_t r = un_i(a->op, ms_load_i64(d[1] + k * s[1], a->dx), a->p0, a->p1);
      char *p = d[0] + k * s[0];
      switch (a->dout) {
      case MS_I64: *(int64_t *)p = r; break;
      case MS_I32: *(int32_t *)p = (int32_t)r; break;
      case MS_U8: *(uint8_t *)p = (uint8_t)r; break;
      case MS_BOOL: *(uint8_t *)p = r != 0; break;
      default: ms_store_f64(p, a->dout, (double)r);
      }
    }
  }
}

static int unary_run(ms_context *ctx, ms_unop op, ms_dtype ct, const ms_tensor *x, double p0,
                     double p1, ms_tensor *dst);

int ms_cpu_unary(ms_context *ctx, ms_unop op, ms_dtype ct, const ms_tensor *x, double p0, double p1,
                 ms_tensor *dst) {
  ms_tensor *xs = ms_is_contiguous(dst) ? ms_cpu_stage_transposed(ctx, x) : NULL;
  int st = unary_run(ctx, op, ct, xs ? xs : x, p0, p1, dst);
  ms_tensor_free(xs);
  return st;
}

static int unary_run(ms_context *ctx, ms_unop op, ms_dtype ct, const ms_tensor *x, double p0,
                     double p1, ms_tensor *dst) {
  const ms_tensor *ops[2] = {dst, x};
  ms_iter it;
  ms_iter_build(&it, 2, ops, dst->shape, dst->ndim);
  un_arg arg = {op, ct, x->dtype, dst->dtype, p0, p1};
  ms_loop_fn fn = un_generic;
  ms_dtype io[2] = {dst->dtype, x->dtype};
  if (op == MS_RELU && (ct == MS_F32 || ct == MS_BF16) && io[0] == MS_BF16 && io[1] == MS_BF16) {
    ms_iter_run(ctx, &it, ms_bf16_relu_loop, NULL, MS_GRAIN / 4); /* the same bits, one pass */
    return MS_OK;
  }
  if ((ct == MS_F32 || ms_is_half(ct)) && op != MS_LOGICAL_NOT && ms_half_loop_fits(io, 2)) {
    /* f16/bf16: loaded in chunks to float, the f32 loop, stored back */
    un_arg farg = {op, MS_F32, MS_F32, MS_F32, p0, p1};
    ms_half_arg h = {un_f32, &farg, 2, {dst->dtype, x->dtype}};
    ms_iter_run(ctx, &it, ms_half_loop, &h, MS_GRAIN / 4);
    return MS_OK;
  }
  if (x->dtype == ct && dst->dtype == ct && op != MS_LOGICAL_NOT) {
    if (ct == MS_F32)
      fn = un_f32;
    else if (ct == MS_F64)
      fn = un_f64;
  }
  ms_iter_run(ctx, &it, fn, &arg, MS_GRAIN / 4);
  return MS_OK;
}

/* ---- backward: operands are gin, gout, x, y (y is x when not given) ---- */
#define RUN4(T, EXPR)                                                                              \
  {                                                                                                \
    T *o = (T *)d[0];                                                                              \
    const T *gp = (const T *)d[1], *xp = (const T *)d[2], *yp = (const T *)d[3];                   \
    if (s[0] == sizeof(T) && s[1] == sizeof(T) && s[2] == sizeof(T) && s[3] == sizeof(T)) {        \
      for (int64_t k = 0; k < n; k++) {                                                            \
        const T g = gp[k], x = xp[k], y = yp[k];                                                   \
        (void)g;                                                                                   \
        (void)x;                                                                                   \
        (void)y;                                                                                   \
        o[k] = (EXPR);                                                                             \
      }                                                                                            \
    } else {                                                                                       \
      for (int64_t k = 0; k < n; k++) {                                                            \
        const T g = *(const T *)((const char *)gp + k * s[1]);                                     \
        const T x = *(const T *)((const char *)xp + k * s[2]);                                     \
        const T y = *(const T *)((const char *)yp + k * s[3]);                                     \
        (void)g;                                                                                   \
        (void)x;                                                                                   \
        (void)y;                                                                                   \
        *(T *)((char *)o + k * s[0]) = (EXPR);                                                     \
      }                                                                                            \
    }                                                                                              \
  }                                                                                                \
  break

#define RET4(T, EXPR) return (EXPR)

/* x is the input, y the output (exp, sigmoid, tanh use y). */
#define BWD_CASES(T, LOOP)                                                                         \
  case MS_NEG: LOOP(T, -g);                                                                        \
  case MS_ABS: LOOP(T, x > 0 ? g : (x < 0 ? -g : (T)0));                                           \
  case MS_EXP: LOOP(T, g *y);                                                                      \
  case MS_LOG: LOOP(T, g / x);                                                                     \
  case MS_SQRT: LOOP(T, g *(T)0.5 / sqrt(x));                                                      \
  case MS_RSQRT: LOOP(T, g *(T)-0.5 / (x * sqrt(x)));                                              \
  case MS_SIGMOID: LOOP(T, g *y *((T)1 - y));                                                      \
  case MS_TANH: LOOP(T, g *((T)1 - y * y));                                                        \
  case MS_RELU: LOOP(T, x > 0 ? g : (T)0);                                                         \
  case MS_LEAKY_RELU: LOOP(T, x > 0 ? g : g * p0);                                                 \
  case MS_GELU:                                                                                    \
    if (p0 == 0) {                                                                                 \
      LOOP(T, g *gelu_erf_d(x));                                                                   \
    } else {                                                                                       \
      LOOP(T, g *gelu_tanh_d(x));                                                                  \
    }                                                                                              \
  case MS_HARDSWISH: LOOP(T, x < -3 ? (T)0 : (x <= 3 ? g * (x / (T)3 + (T)0.5) : g));              \
  case MS_HARDSIGMOID: LOOP(T, (x > -3 && x < 3) ? g / (T)6 : (T)0);                               \
  case MS_CLAMP: LOOP(T, (x >= p0 && x <= p1) ? g : (T)0);                                         \
  case MS_POW_SCALAR: LOOP(T, p0 == 0 ? (T)0 : g * p0 * pow(x, p0 - (T)1));                        \
  case MS_SIGN: LOOP(T, (T)0 * g);                                                                 \
  case MS_RECIPROCAL: LOOP(T, -g / (x * x));                                                       \
  case MS_SQUARE: LOOP(T, (T)2 * x * g);                                                           \
  case MS_LOGICAL_NOT:                                                                             \
    LOOP(T, (T)0 * g)

#define GELU_TANH_D(T, NAME)                                                                       \
  static inline T NAME(T x) {                                                                      \
    T u = (T)GELU_K * (x + (T)0.044715 * x * x * x);                                               \
    T t = tanh(u);                                                                                 \
    return (T)0.5 * ((T)1 + t) +                                                                   \
           (T)0.5 * x * ((T)1 - t * t) * (T)GELU_K * ((T)1 + (T)3 * (T)0.044715 * x * x);          \
  }

#undef gelu_erf
#define gelu_tanh_d gelu_tanh_df
#define gelu_erf_d ms_gelu_grad_f32
GELU_TANH_D(float, gelu_tanh_df)
static void bwd_f32(char **d, const int64_t *s, int64_t n, void *arg) {
  const un_arg *a = arg;
  const float p0 = (float)a->p0, p1 = (float)a->p1;
  switch (a->op) { BWD_CASES(float, RUN4); }
}
#undef gelu_tanh_d
#undef gelu_erf_d

#define gelu_tanh_d gelu_tanh_dd
#define gelu_erf_d gelu_erf_d_dd
GELU_TANH_D(double, gelu_tanh_dd)
static void bwd_f64(char **d, const int64_t *s, int64_t n, void *arg) {
  const un_arg *a = arg;
  const double p0 = a->p0, p1 = a->p1;
  switch (a->op) { BWD_CASES(double, RUN4); }
}
static double bwd_d(ms_unop op, double g, double x, double y, double p0, double p1) {
  switch (op) { BWD_CASES(double, RET4); }
  return 0;
}
#undef gelu_tanh_d
#undef gelu_erf_d

typedef struct {
  ms_unop op;
  ms_dtype dg, dx, dy, dout;
  double p0, p1;
} bwd_arg;

static void bwd_generic(char **d, const int64_t *s, int64_t n, void *arg) {
  const bwd_arg *a = arg;
  for (int64_t k = 0; k < n; k++) {
    double r =
        bwd_d(a->op, ms_load_f64(d[1] + k * s[1], a->dg), ms_load_f64(d[2] + k * s[2], a->dx),
              ms_load_f64(d[3] + k * s[3], a->dy), a->p0, a->p1);
    ms_store_f64(d[0] + k * s[0], a->dout, r);
  }
}

static int unary_backward_run(ms_context *ctx, ms_unop op, const ms_tensor *gout,
                              const ms_tensor *x, const ms_tensor *y, double p0, double p1,
                              ms_tensor *gin);

int ms_cpu_unary_backward(ms_context *ctx, ms_unop op, const ms_tensor *gout, const ms_tensor *x,
                          const ms_tensor *y, double p0, double p1, ms_tensor *gin) {
  if (!x) x = y;
  if (!y) y = x;
  ms_tensor *s[3] = {NULL, NULL, NULL};
  if (ms_is_contiguous(gin)) {
    s[0] = ms_cpu_stage_transposed(ctx, gout);
    s[1] = ms_cpu_stage_transposed(ctx, x);
    s[2] = y == x ? NULL : ms_cpu_stage_transposed(ctx, y);
  }
  const ms_tensor *xs = s[1] ? s[1] : x;
  int st = unary_backward_run(ctx, op, s[0] ? s[0] : gout, xs, y == x ? xs : (s[2] ? s[2] : y), p0,
                              p1, gin);
  for (int i = 0; i < 3; i++)
    ms_tensor_free(s[i]);
  return st;
}

static int unary_backward_run(ms_context *ctx, ms_unop op, const ms_tensor *gout,
                              const ms_tensor *x, const ms_tensor *y, double p0, double p1,
                              ms_tensor *gin) {
  const ms_tensor *ops[4] = {gin, gout, x, y};
  ms_iter it;
  ms_iter_build(&it, 4, ops, gin->shape, gin->ndim);
  ms_dtype dt = gin->dtype;
  ms_dtype io[4] = {dt, gout->dtype, x->dtype, y->dtype};
  if (op == MS_RELU && dt == MS_BF16 && io[1] == MS_BF16 && io[2] == MS_BF16) {
    ms_iter_run(ctx, &it, ms_bf16_relu_bwd_loop, NULL, MS_GRAIN / 4); /* the same bits */
    return MS_OK;
  }
  if (ms_half_loop_fits(io, 4)) { /* f16/bf16 operands: the f32 loop on float chunks */
    un_arg a = {op, MS_F32, MS_F32, MS_F32, p0, p1};
    ms_half_arg h = {bwd_f32, &a, 4, {dt, gout->dtype, x->dtype, y->dtype}};
    ms_iter_run(ctx, &it, ms_half_loop, &h, MS_GRAIN / 4);
    return MS_OK;
  }
  if (gout->dtype == dt && x->dtype == dt && y->dtype == dt && (dt == MS_F32 || dt == MS_F64)) {
    un_arg a = {op, dt, dt, dt, p0, p1};
    ms_iter_run(ctx, &it, dt == MS_F32 ? bwd_f32 : bwd_f64, &a, MS_GRAIN / 4);
  } else {
    bwd_arg a = {op, gout->dtype, x->dtype, y->dtype, dt, p0, p1};
    ms_iter_run(ctx, &it, bwd_generic, &a, MS_GRAIN / 4);
  }
  return MS_OK;
}
