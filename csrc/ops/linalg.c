/* linalg.c: validated matmul (numpy/torch.matmul shape rules) dispatched to the backends. */
#include "../core/backend.h"
#include "../cpu/mcsl_kernels.h" /* ms_blas_layout: which layouts reach the kernel uncopied */

/* Operand expanded to out's batch dims + its matrix: broadcast dims get stride 0. */
static int expand_operand(const ms_tensor *t, const int64_t *mshape, const int64_t *mstrides,
                          const int64_t *batch, int nb, ms_tensor **out) {
  int64_t shape[MS_MAX_DIMS], strides[MS_MAX_DIMS];
  int tb = t->ndim - 2 > 0 ? t->ndim - 2 : 0; /* t's own batch dims */
  for (int i = 0; i < nb; i++) {
    int j = i - (nb - tb);
    shape[i] = batch[i];
    strides[i] = (j < 0 || t->shape[j] == 1) ? 0 : t->strides[j];
  }
  shape[nb] = mshape[0];
  shape[nb + 1] = mshape[1];
  strides[nb] = mstrides[0];
  strides[nb + 1] = mstrides[1];
  return ms_tensor_make_view(t, shape, strides, nb + 2, t->offset, out);
}

/* The matrix (rows, cols, strides) an operand contributes; 1-d a is [1, k], 1-d b is [k, 1]. */
static void matrix_of(const ms_tensor *t, int is_b, int64_t *shape, int64_t *strides) {
  int nd = t->ndim;
  if (nd == 1) {
    if (is_b) {
      shape[0] = t->shape[0], shape[1] = 1;
      strides[0] = t->strides[0], strides[1] = 1;
    } else {
      shape[0] = 1, shape[1] = t->shape[0];
      strides[0] = t->shape[0] * t->strides[0], strides[1] = t->strides[0];
    }
    return;
  }
  shape[0] = t->shape[nd - 2], shape[1] = t->shape[nd - 1];
  strides[0] = t->strides[nd - 2], strides[1] = t->strides[nd - 1];
}

int ms_matmul(ms_context *ctx, const ms_tensor *a, const ms_tensor *b, ms_tensor **out) {
  if (ms_check_tensor("matmul", "a", a) || ms_check_tensor("matmul", "b", b)) return MS_ERR_INVALID;
  if (!out) return ms_fail(MS_ERR_INVALID, "matmul: out is NULL");
  if (ms_check_same_device("matmul", a, b)) return MS_ERR_DEVICE;
  if (!ms_dtype_is_float(a->dtype) || !ms_dtype_is_float(b->dtype))
    return ms_fail(MS_ERR_DTYPE, "matmul: needs floating-point operands, got %s and %s", ms_desc(a),
                   ms_desc(b));
  if (a->dtype != b->dtype)
    return ms_fail(MS_ERR_DTYPE, "matmul: operands must have the same dtype, got %s and %s",
                   ms_desc(a), ms_desc(b));
  if (a->ndim == 0 || b->ndim == 0)
    return ms_fail(MS_ERR_INVALID, "matmul: operands need at least 1 dim, got %s and %s",
                   ms_desc(a), ms_desc(b));
  int64_t ash[2], ast[2], bsh[2], bst[2];
  matrix_of(a, 0, ash, ast);
  matrix_of(b, 1, bsh, bst);
  if (ash[1] != bsh[0])
    return ms_fail(MS_ERR_INVALID,
                   "matmul: inner dims differ: a %s has %lld columns, b %s has %lld rows",
                   ms_desc(a), (long long)ash[1], ms_desc(b), (long long)bsh[0]);
  int na = a->ndim > 2 ? a->ndim - 2 : 0, nbb = b->ndim > 2 ? b->ndim - 2 : 0;
  int64_t batch[MS_MAX_DIMS];
  int nb = 0;
  int nb_max = na > nbb ? na : nbb;
  for (int i = 0; i < nb_max; i++) {
    int ia = i - (nb_max - na), ib = i - (nb_max - nbb);
    int64_t da = ia < 0 ? 1 : a->shape[ia], db = ib < 0 ? 1 : b->shape[ib];
    if (da != db && da != 1 && db != 1)
      return ms_fail(MS_ERR_INVALID,
                     "matmul: batch dims of a %s and b %s do not broadcast (%lld vs %lld)",
                     ms_desc(a), ms_desc(b), (long long)da, (long long)db);
    batch[nb++] = da == 1 ? db : da;
  }
  if (nb + 2 > MS_MAX_DIMS)
    return ms_fail(MS_ERR_INVALID, "matmul: %s x %s needs more than %d dims", ms_desc(a),
                   ms_desc(b), MS_MAX_DIMS);
  const ms_backend *be = ms_backend_get(MS_OP_MATMUL, NULL, a, a->dtype, NULL);
  if (!be) return MS_ERR_UNSUPPORTED;

  /* Result shape: batch + [n] unless a is 1-d, + [m] unless b is 1-d. */
  int64_t rshape[MS_MAX_DIMS], fshape[MS_MAX_DIMS], fstrides[MS_MAX_DIMS];
  int rnd = 0;
  for (int i = 0; i < nb; i++)
    rshape[rnd++] = batch[i];
  if (a->ndim > 1) rshape[rnd++] = ash[0];
  if (b->ndim > 1) rshape[rnd++] = bsh[1];
  memcpy(fshape, batch, sizeof(int64_t) * nb);
  fshape[nb] = ash[0];
  fshape[nb + 1] = bsh[1];
  ms_contiguous_strides(fshape, nb + 2, fstrides);

  ms_tensor *ac = NULL, *bc = NULL, *av = NULL, *bv = NULL, *r = NULL, *rv = NULL;
  int64_t ld;
  int st = MS_OK;
  /* Transposed contiguous matrices go to BLAS as they are; other layouts are copied. */
  if (ms_blas_layout(ash[0], ash[1], ast[0], ast[1], &ld) < 0) {
    st = ms_contiguous(ctx, a, &ac);
    if (!st) matrix_of(ac, 0, ash, ast);
  }
  if (!st && ms_blas_layout(bsh[0], bsh[1], bst[0], bst[1], &ld) < 0) {
    st = ms_contiguous(ctx, b, &bc);
    if (!st) matrix_of(bc, 1, bsh, bst);
  }
  if (!st) st = expand_operand(ac ? ac : a, ash, ast, batch, nb, &av);
  if (!st) st = expand_operand(bc ? bc : b, bsh, bst, batch, nb, &bv);
  if (!st) st = ms_tensor_new_on(a, rshape, rnd, a->dtype, &r);
  if (!st) st = ms_tensor_make_view(r, fshape, fstrides, nb + 2, 0, &rv);
  if (!st) st = be->matmul(ctx, av, bv, rv);
  ms_tensor_free(ac);
  ms_tensor_free(bc);
  ms_tensor_free(av);
  ms_tensor_free(bv);
  ms_tensor_free(rv);
  if (st) {
    ms_tensor_free(r);
    return st;
  }
  *out = r;
  return MS_OK;
}
