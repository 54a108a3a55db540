/* metrics.c: validated confusion matrix, label counts and k-th smallest (evaluation, OHEM). */
#include <math.h>
#include <stdlib.h>

#include "../core/backend.h"
#include "../cpu/confusion.h" /* ms_cpu_select_kth: host quickselect on a host copy */

static int is_label_dtype(ms_dtype d) { return d == MS_I64 || d == MS_I32 || d == MS_U8; }

static int check_accum(const char *op, const ms_tensor *acc, int64_t c, int matrix) {
  if (ms_check_tensor(op, "accum", acc)) return MS_ERR_INVALID;
  int ok = acc->dtype == MS_I64 && acc->ndim == (matrix ? 2 : 1) && acc->shape[0] == c &&
           (!matrix || acc->shape[1] == c) && ms_is_contiguous(acc);
  if (!ok)
    return ms_fail(MS_ERR_INVALID, "%s: accumulator must be a contiguous i64 %s, got %s", op,
                   matrix ? "[C, C]" : "[C]", ms_desc(acc));
  return MS_OK;
}

static int count_impl(ms_context *ctx, const char *op, const ms_tensor *pred,
                      const ms_tensor *label, int64_t num_classes, int64_t ignore_index,
                      ms_tensor *accum) {
  if (ms_check_tensor(op, "label", label)) return MS_ERR_INVALID;
  if (pred && ms_check_tensor(op, "pred", pred)) return MS_ERR_INVALID;
  if (num_classes < 1)
    return ms_fail(MS_ERR_INVALID, "%s: num_classes must be >= 1, got %lld", op,
                   (long long)num_classes);
  if (num_classes > 65536)
    return ms_fail(MS_ERR_INVALID, "%s: num_classes %lld is too large (at most 65536)", op,
                   (long long)num_classes);
  if (!is_label_dtype(label->dtype))
    return ms_fail(MS_ERR_DTYPE, "%s: label must hold integer class ids (i64, i32, u8), got %s", op,
                   ms_desc(label));
  if (pred) {
    if (!is_label_dtype(pred->dtype))
      return ms_fail(MS_ERR_DTYPE,
                     "%s: pred must hold integer class ids (i64, i32, u8), got %s "
                     "(take the argmax of scores first)",
                     op, ms_desc(pred));
    int same = pred->ndim == label->ndim;
    for (int i = 0; same && i < pred->ndim; i++)
      same = pred->shape[i] == label->shape[i];
    if (!same)
      return ms_fail(MS_ERR_INVALID, "%s: pred %s and label %s must have the same shape", op,
                     ms_desc(pred), ms_desc(label));
  }
  int st = check_accum(op, accum, num_classes, pred != NULL);
  if (st) return st;
  if ((st = ms_check_same_device(op, label, pred)) || (st = ms_check_same_device(op, label, accum)))
    return st;
  const ms_backend *be = ms_backend_get(MS_OP_CONFUSION, op, label, label->dtype, NULL);
  if (!be) return MS_ERR_UNSUPPORTED;
  ms_tensor *lc = NULL, *pc = NULL;
  if ((st = ms_contiguous(ctx, label, &lc))) return st;
  if (pred && (st = ms_contiguous(ctx, pred, &pc))) {
    ms_tensor_free(lc);
    return st;
  }
  ms_bad_value bad;
  st = be->confusion(ctx, pc, lc, num_classes, ignore_index, accum, &bad);
  if (st == MS_ERR_INVALID && bad.index >= 0) {
    if (bad.in_pred)
      st = ms_fail(
          MS_ERR_INVALID, "%s: prediction %lld at flat index %lld of pred %s is outside [0, %lld)",
          op, (long long)bad.value, (long long)bad.index, ms_desc(pred), (long long)num_classes);
    else
      st = ms_fail(MS_ERR_INVALID,
                   "%s: label value %lld at flat index %lld of label %s is outside [0, %lld) "
                   "and is not ignore_index %lld",
                   op, (long long)bad.value, (long long)bad.index, ms_desc(label),
                   (long long)num_classes, (long long)ignore_index);
  }
  ms_tensor_free(lc);
  ms_tensor_free(pc);
  return st;
}

int ms_confusion_matrix(ms_context *ctx, const ms_tensor *pred, const ms_tensor *label,
                        int64_t num_classes, int64_t ignore_index, ms_tensor *accum) {
  if (!pred) return ms_fail(MS_ERR_INVALID, "confusion_matrix: pred is NULL");
  return count_impl(ctx, "confusion_matrix", pred, label, num_classes, ignore_index, accum);
}

int ms_label_counts(ms_context *ctx, const ms_tensor *label, int64_t num_classes,
                    int64_t ignore_index, ms_tensor *counts) {
  return count_impl(ctx, "label_counts", NULL, label, num_classes, ignore_index, counts);
}

int ms_kth_smallest(ms_context *ctx, const ms_tensor *x, int64_t k, double *out) {
  const char *op = "kth_smallest";
  if (ms_check_tensor(op, "x", x)) return MS_ERR_INVALID;
  if (!out) return ms_fail(MS_ERR_INVALID, "%s: out is NULL", op);
  if (ms_check_float(op, "x", x)) return MS_ERR_DTYPE;
  int64_t n = ms_numel(x);
  if (k < 1 || k > n)
    return ms_fail(MS_ERR_INVALID, "%s: k = %lld outside [1, %lld] for %s", op, (long long)k,
                   (long long)n, ms_desc(x));
  double *v = malloc((size_t)n * sizeof(double));
  if (!v) return ms_fail(MS_ERR_OOM, "%s: out of memory for %s", op, ms_desc(x));
  int st = ms_read_f64(ctx, x, v, n);
  if (st) {
    free(v);
    return st;
  }
  for (int64_t i = 0; i < n; i++)
    if (isnan(v[i])) {
      free(v);
      return ms_fail(MS_ERR_INVALID, "%s: NaN at flat index %lld of %s", op, (long long)i,
                     ms_desc(x));
    }
  *out = ms_cpu_select_kth(v, n, k - 1);
  free(v);
  return MS_OK;
}
