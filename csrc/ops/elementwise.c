/* elementwise.c: validated entry points for binary/unary elementwise ops, where and axpy. */
#include <math.h>
#include <stdio.h>

#include "../core/backend.h"

static const char *bin_name(ms_binop op) {
  static const char *n[] = {"add", "sub", "mul", "div", "pow", "maximum",     "minimum",   "eq",
                            "ne",  "lt",  "le",  "gt",  "ge",  "logical_and", "logical_or"};
  return (int)op >= 0 && op <= MS_LOGICAL_OR ? n[op] : "binary";
}

static const char *un_name(ms_unop op) {
  static const char *n[] = {"neg",        "abs",       "exp",         "log",        "sqrt",
                            "rsqrt",      "sigmoid",   "tanh",        "relu",       "leaky_relu",
                            "gelu",       "hardswish", "clamp",       "pow",        "sign",
                            "reciprocal", "square",    "logical_not", "hardsigmoid"};
  return (int)op >= 0 && op <= MS_HARDSIGMOID ? n[op] : "unary";
}

/* PyTorch's can_cast: no float -> integer, no non-bool -> bool. */
static int can_cast(ms_dtype from, ms_dtype to) {
  if (ms_dtype_is_float(from) && !ms_dtype_is_float(to)) return 0;
  if (from != MS_BOOL && to == MS_BOOL) return 0;
  return 1;
}

static int same_shape(const int64_t *a, int na, const ms_tensor *t) {
  return na == t->ndim && (na == 0 || !memcmp(a, t->shape, sizeof(int64_t) * (size_t)na));
}

/* ---- binary ---------------------------------------------------------------- */

/* Compute dtype of a op b (ct) and result dtype (rt); fails for undefined combinations. */
static int binary_types(ms_binop op, ms_dtype promoted, const ms_tensor *a, const char *bdesc,
                        ms_dtype *ct, ms_dtype *rt) {
  ms_dtype c = promoted;
  if (op == MS_DIV && !ms_dtype_is_float(c)) c = MS_F32;
  if (op == MS_SUB && c == MS_BOOL)
    return ms_fail(MS_ERR_DTYPE, "sub: not defined for bool operands (%s and %s); use logical ops",
                   ms_desc(a), bdesc);
  *ct = c;
  *rt = op >= MS_EQ ? MS_BOOL : c;
  return MS_OK;
}

static int check_binary(const char *name, const ms_tensor *a, const ms_tensor *b) {
  if (ms_check_tensor(name, "a", a) || ms_check_tensor(name, "b", b)) return MS_ERR_INVALID;
  return ms_check_same_device(name, a, b);
}

static int run_binary_into(ms_context *ctx, ms_binop op, const ms_tensor *a, const ms_tensor *b,
                           ms_dtype ct, ms_tensor *dst) {
  const ms_backend *be = ms_backend_get(MS_OP_BINARY, bin_name(op), dst, ct, NULL);
  return be ? be->binary(ctx, op, ct, a, b, dst) : MS_ERR_UNSUPPORTED;
}

int ms_binary(ms_context *ctx, ms_binop op, const ms_tensor *a, const ms_tensor *b,
              ms_tensor **out) {
  const char *name = bin_name(op);
  if ((int)op < 0 || op > MS_LOGICAL_OR) return ms_fail(MS_ERR_INVALID, "binary: bad op %d", op);
  int st = check_binary(name, a, b);
  if (st) return st;
  if (!out) return ms_fail(MS_ERR_INVALID, "%s: out is NULL", name);
  int64_t shape[MS_MAX_DIMS];
  int nd;
  if ((st = ms_broadcast_shapes(name, a->shape, a->ndim, b->shape, b->ndim, shape, &nd))) return st;
  ms_dtype ct = MS_F32, rt = MS_F32;
  if ((st = binary_types(op, ms_promote_tensors(a, b), a, ms_desc(b), &ct, &rt))) return st;
  ms_tensor *o;
  if ((st = ms_tensor_new(shape, nd, rt, a->storage->device, a->storage->device_index, &o)))
    return st;
  if ((st = run_binary_into(ctx, op, a, b, ct, o))) {
    ms_tensor_free(o);
    return st;
  }
  *out = o;
  return MS_OK;
}

int ms_binary_into(ms_context *ctx, ms_binop op, const ms_tensor *a, const ms_tensor *b,
                   ms_tensor *dst) {
  const char *name = bin_name(op);
  if ((int)op < 0 || op > MS_LOGICAL_OR) return ms_fail(MS_ERR_INVALID, "binary: bad op %d", op);
  int st = check_binary(name, a, b);
  if (st) return st;
  if (ms_check_tensor(name, "dst", dst) || ms_check_same_device(name, a, dst))
    return ms_last_status();
  int64_t shape[MS_MAX_DIMS];
  int nd;
  if ((st = ms_broadcast_shapes(name, a->shape, a->ndim, b->shape, b->ndim, shape, &nd))) return st;
  if (!same_shape(shape, nd, dst))
    return ms_fail(MS_ERR_INVALID, "%s: result of %s and %s has shape %s, destination is %s", name,
                   ms_desc(a), ms_desc(b), ms_shape_str(shape, nd), ms_desc(dst));
  ms_dtype ct = MS_F32, rt = MS_F32;
  if ((st = binary_types(op, ms_promote_tensors(a, b), a, ms_desc(b), &ct, &rt))) return st;
  if (!can_cast(rt, dst->dtype))
    return ms_fail(MS_ERR_DTYPE, "%s: result type %s of %s and %s cannot be stored in %s", name,
                   ms_dtype_name(rt), ms_desc(a), ms_desc(b), ms_desc(dst));
  return run_binary_into(ctx, op, a, b, ct, dst);
}

static int is_integral(double s) { return isfinite(s) && s == floor(s); }

/* Types of a op scalar: a float tensor keeps its dtype; an integer one keeps its
 * dtype for integral scalars (bool becomes i64) and becomes f32 otherwise. */
static int scalar_types(ms_binop op, const ms_tensor *a, double s, int reverse, ms_dtype *ct,
                        ms_dtype *rt, ms_dtype *sdt) {
  ms_dtype c = a->dtype;
  if (!ms_dtype_is_float(c)) {
    if (!is_integral(s))
      c = MS_F32;
    else if (c == MS_BOOL && op <= MS_MINIMUM)
      c = MS_I64;
  }
  if (op == MS_DIV && !ms_dtype_is_float(c)) c = MS_F32;
  if (op == MS_POW && !reverse && !ms_dtype_is_float(c) && s < 0)
    return ms_fail(MS_ERR_INVALID, "pow: integer tensor %s to the negative integer power %g",
                   ms_desc(a), s);
  *ct = c;
  *rt = op >= MS_EQ ? MS_BOOL : c;
  *sdt = (c == MS_F32 || c == MS_F64 || c == MS_I64) ? c : ms_dtype_is_float(c) ? MS_F64 : MS_I64;
  return MS_OK;
}

static int scalar_into(ms_context *ctx, ms_binop op, const ms_tensor *a, double s, int reverse,
                       ms_dtype ct, ms_dtype sdt, ms_tensor *dst) {
  const ms_backend *be = ms_backend_get(MS_OP_BINARY_SCALAR, bin_name(op), dst, ct, NULL);
  return be ? be->binary_scalar(ctx, op, ct, a, s, sdt, reverse, dst) : MS_ERR_UNSUPPORTED;
}

int ms_binary_scalar(ms_context *ctx, ms_binop op, const ms_tensor *a, double s, int reverse,
                     ms_tensor **out) {
  const char *name = bin_name(op);
  if ((int)op < 0 || op > MS_LOGICAL_OR) return ms_fail(MS_ERR_INVALID, "binary: bad op %d", op);
  if (ms_check_tensor(name, "a", a)) return MS_ERR_INVALID;
  if (!out) return ms_fail(MS_ERR_INVALID, "%s: out is NULL", name);
  ms_dtype ct = MS_F32, rt = MS_F32, sdt = MS_F32;
  int st;
  if ((st = scalar_types(op, a, s, reverse, &ct, &rt, &sdt))) return st;
  ms_tensor *o;
  if ((st = ms_tensor_new_like(a, rt, &o))) return st;
  if ((st = scalar_into(ctx, op, a, s, reverse, ct, sdt, o))) {
    ms_tensor_free(o);
    return st;
  }
  *out = o;
  return MS_OK;
}

int ms_binary_scalar_into(ms_context *ctx, ms_binop op, const ms_tensor *a, double s, int reverse,
                          ms_tensor *dst) {
  const char *name = bin_name(op);
  if ((int)op < 0 || op > MS_LOGICAL_OR) return ms_fail(MS_ERR_INVALID, "binary: bad op %d", op);
  if (ms_check_tensor(name, "a", a) || ms_check_tensor(name, "dst", dst)) return MS_ERR_INVALID;
  int st;
  if ((st = ms_check_same_device(name, a, dst))) return st;
  if (!same_shape(a->shape, a->ndim, dst))
    return ms_fail(MS_ERR_INVALID, "%s: result has shape %s, destination is %s", name,
                   ms_shape_str(a->shape, a->ndim), ms_desc(dst));
  ms_dtype ct = MS_F32, rt = MS_F32, sdt = MS_F32;
  if ((st = scalar_types(op, a, s, reverse, &ct, &rt, &sdt))) return st;
  if (!can_cast(rt, dst->dtype))
    return ms_fail(MS_ERR_DTYPE,
                   "%s: result type %s of %s and the scalar %g cannot be stored in %s", name,
                   ms_dtype_name(rt), ms_desc(a), s, ms_desc(dst));
  return scalar_into(ctx, op, a, s, reverse, ct, sdt, dst);
}

/* ---- unary ---------------------------------------------------------------- */

/* Result dtype of op(x); fails for undefined combinations. */
static int unary_type(ms_unop op, const ms_tensor *x, double p0, ms_dtype *rt) {
  const char *name = un_name(op);
  ms_dtype d = x->dtype;
  if ((int)op < 0 || op > MS_HARDSIGMOID) return ms_fail(MS_ERR_INVALID, "unary: bad op %d", op);
  if (op == MS_LOGICAL_NOT) {
    *rt = MS_BOOL;
    return MS_OK;
  }
  if (ms_dtype_is_float(d)) {
    *rt = d;
    return MS_OK;
  }
  switch (op) {
  case MS_EXP:
  case MS_LOG:
  case MS_SQRT:
  case MS_RSQRT:
  case MS_SIGMOID:
  case MS_TANH:
  case MS_RECIPROCAL: *rt = MS_F32; return MS_OK; /* integer input gives f32, as in PyTorch */
  case MS_LEAKY_RELU:
  case MS_GELU:
  case MS_HARDSWISH:
  case MS_HARDSIGMOID:
    return ms_fail(MS_ERR_DTYPE, "%s: needs a floating-point tensor, got %s", name, ms_desc(x));
  case MS_POW_SCALAR:
    if (d == MS_BOOL) break;
    if (!is_integral(p0)) {
      *rt = MS_F32;
      return MS_OK;
    }
    if (p0 < 0)
      return ms_fail(MS_ERR_INVALID, "pow: integer tensor %s to the negative integer power %g",
                     ms_desc(x), p0);
    *rt = d;
    return MS_OK;
  default:
    if (d == MS_BOOL) break;
    *rt = d;
    return MS_OK;
  }
  return ms_fail(MS_ERR_DTYPE, "%s: not defined for bool tensors (got %s)", name, ms_desc(x));
}

int ms_unary(ms_context *ctx, ms_unop op, const ms_tensor *x, double p0, double p1,
             ms_tensor **out) {
  const char *name = un_name(op);
  if (ms_check_tensor(name, "x", x)) return MS_ERR_INVALID;
  if (!out) return ms_fail(MS_ERR_INVALID, "%s: out is NULL", name);
  ms_dtype rt = MS_F32;
  int st = unary_type(op, x, p0, &rt);
  if (st) return st;
  ms_tensor *o;
  if ((st = ms_tensor_new_like(x, rt, &o))) return st;
  ms_dtype ct = op == MS_LOGICAL_NOT ? x->dtype : rt;
  const ms_backend *be = ms_backend_get(MS_OP_UNARY, name, x, ct, NULL);
  if (!be || (st = be->unary(ctx, op, ct, x, p0, p1, o))) {
    ms_tensor_free(o);
    return be ? st : MS_ERR_UNSUPPORTED;
  }
  *out = o;
  return MS_OK;
}

int ms_unary_into(ms_context *ctx, ms_unop op, const ms_tensor *x, double p0, double p1,
                  ms_tensor *dst) {
  const char *name = un_name(op);
  if (ms_check_tensor(name, "x", x) || ms_check_tensor(name, "dst", dst)) return MS_ERR_INVALID;
  int st;
  if ((st = ms_check_same_device(name, x, dst))) return st;
  if (!same_shape(x->shape, x->ndim, dst))
    return ms_fail(MS_ERR_INVALID, "%s: input %s and destination %s differ in shape", name,
                   ms_desc(x), ms_desc(dst));
  ms_dtype rt = MS_F32;
  if ((st = unary_type(op, x, p0, &rt))) return st;
  if (!can_cast(rt, dst->dtype))
    return ms_fail(MS_ERR_DTYPE, "%s: result type %s of %s cannot be stored in %s", name,
                   ms_dtype_name(rt), ms_desc(x), ms_desc(dst));
  ms_dtype ct = op == MS_LOGICAL_NOT ? x->dtype : rt;
  const ms_backend *be = ms_backend_get(MS_OP_UNARY, name, x, ct, NULL);
  return be ? be->unary(ctx, op, ct, x, p0, p1, dst) : MS_ERR_UNSUPPORTED;
}

int ms_unary_backward(ms_context *ctx, ms_unop op, const ms_tensor *grad_out, const ms_tensor *x,
                      const ms_tensor *y, double p0, double p1, ms_tensor **grad_in) {
  char name[48];
  snprintf(name, sizeof name, "%s_backward", un_name(op));
  if ((int)op < 0 || op > MS_HARDSIGMOID) return ms_fail(MS_ERR_INVALID, "unary: bad op %d", op);
  if (ms_check_tensor(name, "grad_out", grad_out)) return MS_ERR_INVALID;
  if (!grad_in) return ms_fail(MS_ERR_INVALID, "%s: grad_in is NULL", name);
  int uses_y = op == MS_EXP || op == MS_SIGMOID || op == MS_TANH;
  int y_ok = uses_y || op == MS_RELU;
  if (!x && !(y && y_ok))
    return ms_fail(MS_ERR_INVALID, "%s: needs the input x%s", name, y_ok ? " or the output y" : "");
  const ms_tensor *ref = x ? x : y;
  int st;
  if ((st = ms_check_same_device(name, grad_out, ref)) || (st = ms_check_same_device(name, ref, y)))
    return st;
  if (ms_check_float(name, "grad_out", grad_out) || ms_check_float(name, "input", ref))
    return MS_ERR_DTYPE;
  if (!same_shape(grad_out->shape, grad_out->ndim, ref) ||
      (y && !same_shape(y->shape, y->ndim, ref)))
    return ms_fail(MS_ERR_INVALID, "%s: grad_out %s, input %s and output %s must match", name,
                   ms_desc(grad_out), ms_desc(ref), y ? ms_desc(y) : "(none)");
  const ms_backend *be = ms_backend_get(MS_OP_UNARY_BACKWARD, name, ref, ref->dtype, NULL);
  if (!be) return MS_ERR_UNSUPPORTED;
  ms_tensor *ytmp = NULL, *gi = NULL;
  if (uses_y && !y) {
    if ((st = ms_unary(ctx, op, x, p0, p1, &ytmp))) return st;
    y = ytmp;
  }
  if (!(st = ms_tensor_new_like(ref, ref->dtype, &gi)))
    st = be->unary_backward(ctx, op, grad_out, x, y, p0, p1, gi);
  ms_tensor_free(ytmp);
  if (st) {
    ms_tensor_free(gi);
    return st;
  }
  *grad_in = gi;
  return MS_OK;
}

/* ---- where, axpy ---------------------------------------------------------------- */

int ms_where(ms_context *ctx, const ms_tensor *cond, const ms_tensor *a, const ms_tensor *b,
             ms_tensor **out) {
  if (ms_check_tensor("where", "cond", cond) || check_binary("where", a, b))
    return ms_last_status();
  int st;
  if ((st = ms_check_same_device("where", cond, a))) return st;
  if (!out) return ms_fail(MS_ERR_INVALID, "where: out is NULL");
  if (cond->dtype != MS_BOOL)
    return ms_fail(MS_ERR_DTYPE, "where: condition must be bool, got %s", ms_desc(cond));
  int64_t s1[MS_MAX_DIMS], s2[MS_MAX_DIMS];
  int n1, n2;
  if ((st = ms_broadcast_shapes("where", a->shape, a->ndim, b->shape, b->ndim, s1, &n1)) ||
      (st = ms_broadcast_shapes("where", cond->shape, cond->ndim, s1, n1, s2, &n2)))
    return st;
  ms_dtype rt = ms_promote_tensors(a, b);
  const ms_backend *be = ms_backend_get(MS_OP_WHERE, NULL, a, rt, NULL);
  if (!be) return MS_ERR_UNSUPPORTED;
  ms_tensor *o;
  if ((st = ms_tensor_new_on(a, s2, n2, rt, &o))) return st;
  if ((st = be->where(ctx, cond, a, b, o))) {
    ms_tensor_free(o);
    return st;
  }
  *out = o;
  return MS_OK;
}

int ms_axpy_(ms_context *ctx, ms_tensor *dst, double alpha, const ms_tensor *src) {
  if (ms_check_tensor("axpy_", "dst", dst) || ms_check_tensor("axpy_", "src", src))
    return MS_ERR_INVALID;
  int st;
  if ((st = ms_check_same_device("axpy_", dst, src))) return st;
  if (ms_check_float("axpy_", "dst", dst)) return MS_ERR_DTYPE;
  int64_t shape[MS_MAX_DIMS];
  int nd;
  if ((st = ms_broadcast_shapes("axpy_", dst->shape, dst->ndim, src->shape, src->ndim, shape, &nd)))
    return st;
  if (!same_shape(shape, nd, dst))
    return ms_fail(MS_ERR_INVALID, "axpy_: source %s does not broadcast to destination %s",
                   ms_desc(src), ms_desc(dst));
  const ms_backend *be = ms_backend_get(MS_OP_AXPY, NULL, dst, dst->dtype, NULL);
  return be ? be->axpy(ctx, dst, alpha, src) : MS_ERR_UNSUPPORTED;
}
