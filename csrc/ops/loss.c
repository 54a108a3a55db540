/* loss.c: validated softmax cross-entropy (class weights, ignore_index, reductions). */
#include <stdio.h>

#include "../core/backend.h"

typedef struct {
  int64_t n, c, s;
  ms_dtype cdt; /* compute dtype: the backend's policy (CPU: f64 for f64 logits, else f32) */
  const ms_backend *be;
} ce_shape;

static int check_inputs(const char *op, ms_op_id id, const ms_tensor *logits,
                        const ms_tensor *target, const ms_tensor *weight, ms_reduction reduction,
                        ce_shape *cs) {
  if (ms_check_tensor(op, "logits", logits) || ms_check_tensor(op, "target", target))
    return MS_ERR_INVALID;
  if (ms_check_same_device(op, logits, target) || ms_check_same_device(op, logits, weight))
    return MS_ERR_DEVICE;
  if (ms_check_float(op, "logits", logits)) return MS_ERR_DTYPE;
  if (logits->ndim < 2)
    return ms_fail(MS_ERR_INVALID, "%s: logits must be [N, C, ...], got %s", op, ms_desc(logits));
  if (target->dtype != MS_I64)
    return ms_fail(MS_ERR_DTYPE, "%s: target must hold i64 class indices, got %s", op,
                   ms_desc(target));
  int ok = target->ndim == logits->ndim - 1 && target->shape[0] == logits->shape[0];
  for (int i = 1; ok && i < target->ndim; i++)
    ok = target->shape[i] == logits->shape[i + 1];
  if (!ok)
    return ms_fail(MS_ERR_INVALID,
                   "%s: target %s does not match logits %s (want logits' shape without dim 1)", op,
                   ms_desc(target), ms_desc(logits));
  int64_t c = logits->shape[1];
  if (c == 0) return ms_fail(MS_ERR_INVALID, "%s: logits %s have no classes", op, ms_desc(logits));
  if (weight) {
    if (ms_check_float(op, "weight", weight)) return MS_ERR_DTYPE;
    if (weight->ndim != 1 || weight->shape[0] != c)
      return ms_fail(MS_ERR_INVALID, "%s: weight %s must be [%lld] for logits %s", op,
                     ms_desc(weight), (long long)c, ms_desc(logits));
  }
  if (reduction != MS_REDUCE_NONE && reduction != MS_REDUCE_MEAN && reduction != MS_REDUCE_SUM)
    return ms_fail(MS_ERR_INVALID, "%s: unknown reduction %d", op, (int)reduction);
  if (!(cs->be = ms_backend_get(id, op, logits, logits->dtype, &cs->cdt)))
    return MS_ERR_UNSUPPORTED;
  cs->n = logits->shape[0];
  cs->c = c;
  cs->s = ms_numel(target) / (cs->n ? cs->n : 1);
  if (cs->n == 0) cs->s = ms_numel_of(target->shape + 1, target->ndim - 1);
  return MS_OK;
}

/* t in dtype dt and contiguous: an alias when it already is, else a converted copy. */
static int as_compute(ms_context *ctx, const ms_tensor *t, ms_dtype dt, ms_tensor **out) {
  if (!t) {
    *out = NULL;
    return MS_OK;
  }
  if (t->dtype == dt) return ms_contiguous(ctx, t, out);
  return ms_cast(ctx, t, dt, out);
}

/* "[i, j, k]" index of flat position p in shape. */
static const char *index_str(const int64_t *shape, int ndim, int64_t p) {
  int64_t idx[MS_MAX_DIMS];
  for (int i = ndim - 1; i >= 0; i--) {
    idx[i] = shape[i] ? p % shape[i] : 0;
    p = shape[i] ? p / shape[i] : 0;
  }
  return ms_shape_str(idx, ndim);
}

static void free_all(ms_tensor **ts, int n) {
  for (int i = 0; i < n; i++)
    ms_tensor_free(ts[i]);
}

int ms_cross_entropy(ms_context *ctx, const ms_tensor *logits, const ms_tensor *target,
                     const ms_tensor *weight, int64_t ignore_index, ms_reduction reduction,
                     ms_tensor **loss, ms_tensor **lse) {
  const char *op = "cross_entropy";
  ce_shape cs;
  int st = check_inputs(op, MS_OP_CROSS_ENTROPY, logits, target, weight, reduction, &cs);
  if (st) return st;
  if (!loss) return ms_fail(MS_ERR_INVALID, "%s: loss out-pointer is NULL", op);
  /* tmp: 0 logits, 1 target, 2 weight, 3 per-position loss, 4 lse, 5 result */
  ms_tensor *tmp[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
  st = as_compute(ctx, logits, cs.cdt, &tmp[0]);
  if (!st) st = ms_contiguous(ctx, target, &tmp[1]);
  if (!st) st = as_compute(ctx, weight, cs.cdt, &tmp[2]);
  if (!st) st = ms_tensor_new_on(logits, target->shape, target->ndim, cs.cdt, &tmp[3]);
  if (!st) st = ms_tensor_new_on(logits, target->shape, target->ndim, cs.cdt, &tmp[4]);
  double lsum = 0, wsum = 0;
  int64_t bad = -1;
  if (!st) {
    st = cs.be->cross_entropy(ctx, tmp[0], tmp[1], tmp[2], ignore_index, cs.n, cs.c, cs.s, tmp[3],
                              tmp[4], &lsum, &wsum, &bad);
    if (st == MS_ERR_INVALID && bad >= 0) {
      int64_t v = 0;
      ms_tensor *at = NULL; /* the offending target value, read through a 0-d view */
      if (!ms_tensor_make_view(tmp[1], NULL, NULL, 0, tmp[1]->offset + bad, &at))
        ms_to_host(ctx, at, &v, sizeof v);
      ms_tensor_free(at);
      st = ms_fail(MS_ERR_INVALID,
                   "%s: target value %lld at %s is outside [0, %lld) and is not ignore_index "
                   "%lld (logits %s, target %s)",
                   op, (long long)v, index_str(target->shape, target->ndim, bad), (long long)cs.c,
                   (long long)ignore_index, ms_desc(logits), ms_desc(target));
    }
  }
  if (!st) {
    if (reduction == MS_REDUCE_NONE) {
      if (logits->dtype == cs.cdt) {
        tmp[5] = tmp[3];
        tmp[3] = NULL;
      } else {
        st = ms_cast(ctx, tmp[3], logits->dtype, &tmp[5]);
      }
    } else {
      /* Mean over no counted target is 0 (PyTorch gives nan): a batch that is all
       * ignore_index then adds nothing to training instead of poisoning it. */
      double v = reduction == MS_REDUCE_SUM ? lsum : (wsum != 0 ? lsum / wsum : 0.0);
      st = ms_tensor_new_on(logits, NULL, 0, logits->dtype, &tmp[5]);
      if (!st) st = ms_fill_(ctx, tmp[5], v);
    }
  }
  if (st) {
    free_all(tmp, 6);
    return st;
  }
  *loss = tmp[5];
  if (lse)
    *lse = tmp[4];
  else
    ms_tensor_free(tmp[4]);
  free_all(tmp, 4);
  return MS_OK;
}

int ms_cross_entropy_backward(ms_context *ctx, const ms_tensor *grad_loss, const ms_tensor *logits,
                              const ms_tensor *target, const ms_tensor *weight,
                              int64_t ignore_index, ms_reduction reduction, const ms_tensor *lse,
                              ms_tensor **dlogits) {
  const char *op = "cross_entropy_backward";
  ce_shape cs;
  int st = check_inputs(op, MS_OP_CROSS_ENTROPY_BACKWARD, logits, target, weight, reduction, &cs);
  if (st) return st;
  if (ms_check_tensor(op, "grad_loss", grad_loss) || ms_check_tensor(op, "lse", lse))
    return MS_ERR_INVALID;
  if (!dlogits) return ms_fail(MS_ERR_INVALID, "%s: dlogits is NULL", op);
  if (ms_check_same_device(op, logits, grad_loss) || ms_check_same_device(op, logits, lse))
    return MS_ERR_DEVICE;
  if (ms_check_float(op, "grad_loss", grad_loss) || ms_check_float(op, "lse", lse))
    return MS_ERR_DTYPE;
  if (lse->ndim != target->ndim ||
      memcmp(lse->shape, target->shape, sizeof(int64_t) * (size_t)target->ndim))
    return ms_fail(MS_ERR_INVALID, "%s: lse %s does not match target %s", op, ms_desc(lse),
                   ms_desc(target));
  int per_pos = reduction == MS_REDUCE_NONE;
  if (per_pos ? (grad_loss->ndim != target->ndim ||
                 memcmp(grad_loss->shape, target->shape, sizeof(int64_t) * (size_t)target->ndim))
              : ms_numel(grad_loss) != 1)
    return ms_fail(MS_ERR_INVALID, "%s: grad_loss %s does not fit the loss of target %s", op,
                   ms_desc(grad_loss), ms_desc(target));
  double gscale = 1.0;
  if (!per_pos && (st = ms_read_f64(ctx, grad_loss, &gscale, 1))) return st;
  /* tmp: 0 logits, 1 target, 2 weight, 3 lse, 4 grad_pos, 5 dlogits, 6 result */
  ms_tensor *tmp[7] = {NULL, NULL, NULL, NULL, NULL, NULL, NULL};
  st = as_compute(ctx, logits, cs.cdt, &tmp[0]);
  if (!st) st = ms_contiguous(ctx, target, &tmp[1]);
  if (!st) st = as_compute(ctx, weight, cs.cdt, &tmp[2]);
  if (!st) st = as_compute(ctx, lse, cs.cdt, &tmp[3]);
  if (!st && per_pos) st = as_compute(ctx, grad_loss, cs.cdt, &tmp[4]);
  if (!st) st = ms_tensor_new_on(logits, logits->shape, logits->ndim, cs.cdt, &tmp[5]);
  if (!st)
    st = cs.be->cross_entropy_backward(ctx, tmp[0], tmp[1], tmp[2], ignore_index, cs.n, cs.c, cs.s,
                                       tmp[3], tmp[4], gscale, reduction == MS_REDUCE_MEAN, tmp[5]);
  if (!st) {
    if (logits->dtype == cs.cdt) {
      tmp[6] = tmp[5];
      tmp[5] = NULL;
    } else {
      st = ms_cast(ctx, tmp[5], logits->dtype, &tmp[6]);
    }
  }
  if (st) {
    free_all(tmp, 7);
    return st;
  }
  *dlogits = tmp[6];
  free_all(tmp, 6);
  return MS_OK;
}
