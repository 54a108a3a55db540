/* binary.c: CPU kernels for broadcasting binary ops, where and axpy. */
#include <math.h>

#include "../core/dtype.h"
#include "basic_kernels.h"
#include "bf16_ew.h"
#include "ew_kernels.h"
#include "half_loop.h"

typedef struct {
  ms_binop op;
  ms_dtype ct, da, db, dout;
} bin_arg;

/* One run of the innermost dim; contiguous and scalar-operand cases are
 * specialised so the compiler can vectorise them. */
#define RUN3(T, TO, EXPR)                                                                          \
  {                                                                                                \
    TO *o = (TO *)d[0];                                                                            \
    const T *x = (const T *)d[1], *y = (const T *)d[2];                                            \
    const int64_t so = s[0], sa = s[1], sb = s[2];                                                 \
    if (so == sizeof(TO) && sa == sizeof(T) && sb == sizeof(T)) {                                  \
      for (int64_t k = 0; k < n; k++) {                                                            \
        const T a = x[k], b = y[k];                                                                \
        o[k] = (TO)(EXPR);                                                                         \
      }                                                                                            \
    } else if (so == sizeof(TO) && sa == sizeof(T) && sb == 0) {                                   \
      const T b = *y;                                                                              \
      for (int64_t k = 0; k < n; k++) {                                                            \
        const T a = x[k];                                                                          \
        o[k] = (TO)(EXPR);                                                                         \
      }                                                                                            \
    } else if (so == sizeof(TO) && sa == 0 && sb == sizeof(T)) {                                   \
      const T a = *x;                                                                              \
      for (int64_t k = 0; k < n; k++) {                                                            \
        const T b = y[k];                                                                          \
        o[k] = (TO)(EXPR);                                                                         \
      }                                                                                            \
    } else {                                                                                       \
      for (int64_t k = 0; k < n; k++) {                                                            \
        const T a = *(const T *)((const char *)x + k * sa);                                        \
        const T b = *(const T *)((const char *)y + k * sb);                                        \
        *(TO *)((char *)o + k * so) = (TO)(EXPR);                                                  \
      }                                                                                            \
    }                                                                                              \
  }                                                                                                \
  break

/* Comparison and logical ops, shared by every typed loop (output bool). */
#define CMP_CASES(T)                                                                               \
  case MS_EQ: RUN3(T, uint8_t, a == b);                                                            \
  case MS_NE: RUN3(T, uint8_t, a != b);                                                            \
  case MS_LT: RUN3(T, uint8_t, a < b);                                                             \
  case MS_LE: RUN3(T, uint8_t, a <= b);                                                            \
  case MS_GT: RUN3(T, uint8_t, a > b);                                                             \
  case MS_GE: RUN3(T, uint8_t, a >= b);                                                            \
  case MS_LOGICAL_AND: RUN3(T, uint8_t, (a != 0) & (b != 0));                                      \
  case MS_LOGICAL_OR: RUN3(T, uint8_t, (a != 0) | (b != 0))

/* maximum/minimum propagate NaN as PyTorch does. */
#define FLOAT_CASES(T, POW)                                                                        \
  case MS_ADD: RUN3(T, T, a + b);                                                                  \
  case MS_SUB: RUN3(T, T, a - b);                                                                  \
  case MS_MUL: RUN3(T, T, a *b);                                                                   \
  case MS_DIV: RUN3(T, T, a / b);                                                                  \
  case MS_POW: RUN3(T, T, POW(a, b));                                                              \
  case MS_MAXIMUM: RUN3(T, T, (a != a || a > b) ? a : b);                                          \
  case MS_MINIMUM: RUN3(T, T, (a != a || a < b) ? a : b); CMP_CASES(T)

static void bin_f32(char **d, const int64_t *s, int64_t n, void *arg) {
  switch (((const bin_arg *)arg)->op) { FLOAT_CASES(float, powf); }
}

static void bin_f64(char **d, const int64_t *s, int64_t n, void *arg) {
  switch (((const bin_arg *)arg)->op) { FLOAT_CASES(double, pow); }
}

static void bin_i64(char **d, const int64_t *s, int64_t n, void *arg) {
  switch (((const bin_arg *)arg)->op) {
  case MS_ADD: RUN3(int64_t, int64_t, (int64_t)((uint64_t)a + (uint64_t)b));
  case MS_SUB: RUN3(int64_t, int64_t, (int64_t)((uint64_t)a - (uint64_t)b));
  case MS_MUL: RUN3(int64_t, int64_t, (int64_t)((uint64_t)a * (uint64_t)b));
  case MS_MAXIMUM: RUN3(int64_t, int64_t, a > b ? a : b);
  case MS_MINIMUM: RUN3(int64_t, int64_t, a < b ? a : b); CMP_CASES(int64_t);
  default: break; /* DIV never computes in ints; POW goes the generic way */
  }
}

static double bin_d(ms_binop op, double a, double b) {
  switch (op) {
  case MS_ADD: return a + b;
  case MS_SUB: return a - b;
  case MS_MUL: return a * b;
  case MS_DIV: return a / b;
  case MS_POW: return pow(a, b);
  case MS_MAXIMUM: return (a != a || a > b) ? a : b;
  case MS_MINIMUM: return (a != a || a < b) ? a : b;
  case MS_EQ: return a == b;
  case MS_NE: return a != b;
  case MS_LT: return a < b;
  case MS_LE: return a <= b;
  case MS_GT: return a > b;
  case MS_GE: return a >= b;
  case MS_LOGICAL_AND: return (a != 0) && (b != 0);
  case MS_LOGICAL_OR: return (a != 0) || (b != 0);
  }
  return 0;
}

static int64_t ipow(int64_t a, int64_t b) {
  if (b < 0) return a == 1 ? 1 : a == -1 ? ((b & 1) ? -1 : 1) : 0;
  uint64_t r = 1, base = (uint64_t)a;
  while (b) {
    if (b & 1) r *= base;
    base *= base;
    b >>= 1;
  }
  return (int64_t)r;
}

static int64_t bin_i(ms_binop op, int64_t a, int64_t b) {
  switch (op) {
  case MS_ADD: return (int64_t)((uint64_t)a + (uint64_t)b);
  case MS_SUB: return (int64_t)((uint64_t)a - (uint64_t)b);
  case MS_MUL: return (int64_t)((uint64_t)a * (uint64_t)b);
  case MS_DIV: return b ? a / b : 0; /* not reached: ints divide in f32 */
  case MS_POW: return ipow(a, b);
  case MS_MAXIMUM: return a > b ? a : b;
  case MS_MINIMUM: return a < b ? a : b;
  case MS_EQ: return a == b;
  case MS_NE: return a != b;
  case MS_LT: return a < b;
  case MS_LE: return a <= b;
  case MS_GT: return a > b;
  case MS_GE: return a >= b;
  case MS_LOGICAL_AND: return (a != 0) && (b != 0);
  case MS_LOGICAL_OR: return (a != 0) || (b != 0);
  }
  return 0;
}

static void store_i64(char *p, ms_dtype d, int64_t v) {
  switch (d) {
  case MS_I64: *(int64_t *)p = v; break;
  case MS_I32: *(int32_t *)p = (int32_t)v; break;
  case MS_U8: *(uint8_t *)p = (uint8_t)v; break;
  case MS_BOOL: *(uint8_t *)p = v != 0; break;
  default: ms_store_f64(p, d, (double)v);
  }
}

/* Any mix of dtypes: load, compute in double (float ct) or int64 (integer ct), store. */
static void bin_generic(char **d, const int64_t *s, int64_t n, void *arg) {
  const bin_arg *a = arg;
  if (ms_dtype_is_float(a->ct)) {
    int half = a->ct == MS_F16 || a->ct == MS_BF16 || a->ct == MS_F32;
    for (int64_t k = 0; k < n; k++) {
      double r =
          bin_d(a->op, ms_load_f64(d[1] + k * s[1], a->da), ms_load_f64(d[2] + k * s[2], a->db));
      if (half && a->op <= MS_MINIMUM) r = (float)r;
      ms_store_f64(d[0] + k * s[0], a->dout, r);
    }
  } else {
    for (int64_t k = 0; k < n; k++)
      store_i64(
          d[0] + k * s[0], a->dout,
          bin_i(a->op, ms_load_i64(d[1] + k * s[1], a->da), ms_load_i64(d[2] + k * s[2], a->db)));
  }
}

static int binary_run(ms_context *ctx, ms_binop op, ms_dtype ct, const ms_tensor *a,
                      const ms_tensor *b, ms_tensor *dst);

/* A transposed operand beside a contiguous output is staged through the tiled copy first, so the
 * loop runs on unit strides (as unary ops do). */
int ms_cpu_binary(ms_context *ctx, ms_binop op, ms_dtype ct, const ms_tensor *a, const ms_tensor *b,
                  ms_tensor *dst) {
  ms_tensor *sa = NULL, *sb = NULL;
  if (ms_is_contiguous(dst)) {
    sa = ms_cpu_stage_transposed(ctx, a);
    sb = b == a ? NULL : ms_cpu_stage_transposed(ctx, b);
  }
  const ms_tensor *ua = sa ? sa : a;
  int st = binary_run(ctx, op, ct, ua, b == a ? ua : (sb ? sb : b), dst);
  ms_tensor_free(sa);
  ms_tensor_free(sb);
  return st;
}

static int binary_run(ms_context *ctx, ms_binop op, ms_dtype ct, const ms_tensor *a,
                      const ms_tensor *b, ms_tensor *dst) {
  const ms_tensor *ops[3] = {dst, a, b};
  ms_iter it;
  ms_iter_build(&it, 3, ops, dst->shape, dst->ndim);
  bin_arg arg = {op, ct, a->dtype, b->dtype, dst->dtype};
  int boolout = op >= MS_EQ;
  ms_dtype want = boolout ? MS_BOOL : ct;
  ms_loop_fn fn = bin_generic;
  /* f16/bf16 operands (float compute): loaded in chunks to float, the f32 loop, stored back. */
  ms_dtype io[3] = {boolout ? MS_F32 : dst->dtype, a->dtype, b->dtype};
  if (op == MS_ADD && (ct == MS_F32 || ct == MS_BF16) && io[0] == MS_BF16 && io[1] == MS_BF16 &&
      io[2] == MS_BF16) {
    ms_iter_run(ctx, &it, ms_bf16_add_loop, NULL, MS_GRAIN); /* the same bits, one pass */
    return MS_OK;
  }
  if ((ct == MS_F32 || ms_is_half(ct)) && (!boolout || dst->dtype == MS_BOOL) &&
      ms_half_loop_fits(io, 3)) {
    bin_arg farg = {op, MS_F32, MS_F32, MS_F32, want == MS_BOOL ? MS_BOOL : MS_F32};
    ms_half_arg h = {bin_f32, &farg, 3, {dst->dtype, a->dtype, b->dtype}};
    ms_iter_run(ctx, &it, ms_half_loop, &h, MS_GRAIN);
    return MS_OK;
  }
  if (a->dtype == ct && b->dtype == ct && dst->dtype == want) {
    if (ct == MS_F32)
      fn = bin_f32;
    else if (ct == MS_F64)
      fn = bin_f64;
    else if (ct == MS_I64 && op != MS_POW && op != MS_DIV)
      fn = bin_i64;
  }
  ms_iter_run(ctx, &it, fn, &arg, MS_GRAIN);
  return MS_OK;
}

/* ---- where ---- */
typedef struct {
  ms_dtype dc, da, db, dout;
} where_arg;

static void where_loop(char **d, const int64_t *s, int64_t n, void *arg) {
  const where_arg *w = arg;
  if (w->da == w->dout && w->db == w->dout) {
    int64_t es = ms_dtype_size(w->dout);
    if (es == 4 && s[0] == 4 && s[1] == 1 && s[2] == 4 && s[3] == 4) {
      const uint8_t *c = (const uint8_t *)d[1];
      const float *x = (const float *)d[2], *y = (const float *)d[3];
      float *o = (float *)d[0];
      for (int64_t k = 0; k < n; k++)
        o[k] = c[k] ? x[k] : y[k];
      return;
    }
    for (int64_t k = 0; k < n; k++) {
      int c = ms_load_i64(d[1] + k * s[1], w->dc) != 0;
      memcpy(d[0] + k * s[0], c ? d[2] + k * s[2] : d[3] + k * s[3], (size_t)es);
    }
    return;
  }
  for (int64_t k = 0; k < n; k++) {
    int c = ms_load_f64(d[1] + k * s[1], w->dc) != 0;
    if (ms_dtype_is_float(w->dout))
      ms_store_f64(d[0] + k * s[0], w->dout,
                   c ? ms_load_f64(d[2] + k * s[2], w->da) : ms_load_f64(d[3] + k * s[3], w->db));
    else
      store_i64(d[0] + k * s[0], w->dout,
                c ? ms_load_i64(d[2] + k * s[2], w->da) : ms_load_i64(d[3] + k * s[3], w->db));
  }
}

int ms_cpu_where(ms_context *ctx, const ms_tensor *cond, const ms_tensor *a, const ms_tensor *b,
                 ms_tensor *dst) {
  const ms_tensor *ops[4] = {dst, cond, a, b};
  ms_iter it;
  ms_iter_build(&it, 4, ops, dst->shape, dst->ndim);
  where_arg w = {cond->dtype, a->dtype, b->dtype, dst->dtype};
  ms_iter_run(ctx, &it, where_loop, &w, MS_GRAIN);
  return MS_OK;
}

/* ---- axpy ---- */
typedef struct {
  double alpha;
  ms_dtype dd, ds;
} axpy_arg;

static void axpy_loop(char **d, const int64_t *s, int64_t n, void *arg) {
  const axpy_arg *a = arg;
  if (a->dd == MS_F32 && a->ds == MS_F32 && s[0] == 4 && s[1] == 4) {
    float *o = (float *)d[0];
    const float *x = (const float *)d[1];
    const float al = (float)a->alpha;
    for (int64_t k = 0; k < n; k++)
      o[k] += al * x[k];
    return;
  }
  if (a->dd == MS_F64 && a->ds == MS_F64 && s[0] == 8 && s[1] == 8) {
    double *o = (double *)d[0];
    const double *x = (const double *)d[1];
    for (int64_t k = 0; k < n; k++)
      o[k] += a->alpha * x[k];
    return;
  }
  for (int64_t k = 0; k < n; k++) {
    char *p = d[0] + k * s[0];
    ms_store_f64(p, a->dd, ms_load_f64(p, a->dd) + a->alpha * ms_load_f64(d[1] + k * s[1], a->ds));
  }
}

int ms_cpu_axpy(ms_context *ctx, ms_tensor *dst, double alpha, const ms_tensor *src) {
  const ms_tensor *ops[2] = {dst, src};
  ms_iter it;
  ms_iter_build(&it, 2, ops, dst->shape, dst->ndim);
  axpy_arg a = {alpha, dst->dtype, src->dtype};
  ms_iter_run(ctx, &it, axpy_loop, &a, MS_GRAIN);
  return MS_OK;
}
