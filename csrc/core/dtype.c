/* dtype.c: dtype sizes, names and PyTorch-style type promotion. */
#include "internal.h"

int64_t ms_dtype_size(ms_dtype d) {
  switch (d) {
  case MS_F64:
  case MS_I64: return 8;
  case MS_F32:
  case MS_I32: return 4;
  case MS_F16:
  case MS_BF16: return 2;
  case MS_U8:
  case MS_BOOL: return 1;
  }
  return 0;
}

const char *ms_dtype_name(ms_dtype d) {
  static const char *names[] = {"f64", "f32", "f16", "bf16", "i64", "i32", "u8", "bool"};
  return ms_dtype_valid(d) ? names[d] : "invalid-dtype";
}

int ms_dtype_valid(int d) { return d >= MS_F64 && d <= MS_BOOL; }
int ms_dtype_is_float(ms_dtype d) { return d <= MS_BF16; }
int ms_dtype_is_int(ms_dtype d) { return d >= MS_I64; }

/* Rank in the promotion lattice; f16 and bf16 meet at f32. */
static int rank(ms_dtype d) {
  static const int r[] = {7, 6, 5, 5, 3, 2, 1, 0};
  return r[d];
}

ms_dtype ms_promote(ms_dtype a, ms_dtype b) {
  if (a == b) return a;
  if ((a == MS_F16 && b == MS_BF16) || (a == MS_BF16 && b == MS_F16)) return MS_F32;
  return rank(a) >= rank(b) ? a : b;
}

static int category(ms_dtype d) { return d == MS_BOOL ? 0 : ms_dtype_is_float(d) ? 2 : 1; }

/* PyTorch's rule: a 0-dim operand does not widen a dimensioned one of the same
 * or a higher category; of a higher category it gives that category's default. */
ms_dtype ms_promote_tensors(const ms_tensor *a, const ms_tensor *b) {
  int a0 = a->ndim == 0, b0 = b->ndim == 0;
  if (a0 == b0) return ms_promote(a->dtype, b->dtype);
  const ms_tensor *dim = a0 ? b : a, *zero = a0 ? a : b;
  int cd = category(dim->dtype), cz = category(zero->dtype);
  if (cz <= cd) return dim->dtype;
  return cz == 2 ? MS_F32 : MS_I64;
}
