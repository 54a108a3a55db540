/* join.c: validated cat (PyTorch dtype promotion, legacy [0]-shaped inputs skipped). */
#include <stdlib.h>

#include "../core/backend.h"

static int is_legacy_empty(const ms_tensor *t) { return t->ndim == 1 && t->shape[0] == 0; }

int ms_cat(ms_context *ctx, ms_tensor *const *xs, int n, int dim, ms_tensor **out) {
  if (!xs || n <= 0) return ms_fail(MS_ERR_INVALID, "cat: needs at least one tensor, got %d", n);
  if (!out) return ms_fail(MS_ERR_INVALID, "cat: out is NULL");
  const ms_tensor *ref = NULL;
  int ref_i = -1;
  for (int i = 0; i < n; i++) {
    if (!xs[i]) return ms_fail(MS_ERR_INVALID, "cat: tensor %d is NULL", i);
    if (ms_check_same_device("cat", xs[0], xs[i])) return MS_ERR_DEVICE;
    if (!ref && !is_legacy_empty(xs[i])) ref = xs[i], ref_i = i;
  }
  ms_dtype dt = xs[0]->dtype;
  for (int i = 1; i < n; i++)
    dt = ms_promote(dt, xs[i]->dtype);
  const ms_backend *be = ms_backend_get(MS_OP_CAT, NULL, xs[0], dt, NULL);
  if (!be) return MS_ERR_UNSUPPORTED;
  if (!ref) { /* every input is [0]: so is the result */
    int64_t zero = 0;
    return ms_tensor_new_on(xs[0], &zero, 1, dt, out);
  }
  if (ref->ndim == 0)
    return ms_fail(MS_ERR_INVALID, "cat: tensor %d is 0-d %s; 0-d tensors cannot be joined", ref_i,
                   ms_desc(ref));
  int d;
  if (ms_wrap_dim("cat", dim, ref->ndim, &d)) return MS_ERR_INVALID;
  int64_t shape[MS_MAX_DIMS];
  memcpy(shape, ref->shape, sizeof(int64_t) * ref->ndim);
  shape[d] = 0;
  for (int i = 0; i < n; i++) {
    const ms_tensor *t = xs[i];
    if (is_legacy_empty(t)) continue;
    int ok = t->ndim == ref->ndim;
    for (int j = 0; ok && j < t->ndim; j++)
      ok = j == d || t->shape[j] == ref->shape[j];
    if (!ok)
      return ms_fail(MS_ERR_INVALID,
                     "cat: tensor %d is %s but tensor %d is %s; shapes must match except along "
                     "the joined dim (%d of %d, 0-based)",
                     i, ms_desc(t), ref_i, ms_desc(ref), d, ref->ndim);
    shape[d] += t->shape[d];
  }
  ms_tensor *o;
  int st = ms_tensor_new_on(ref, shape, ref->ndim, dt, &o);
  if (st) return st;
  /* Skipped inputs go to the kernel as NULL. */
  ms_tensor **list = calloc((size_t)n, sizeof *list);
  if (!list) {
    ms_tensor_free(o);
    return ms_fail(MS_ERR_OOM, "cat: out of host memory");
  }
  for (int i = 0; i < n; i++)
    list[i] = is_legacy_empty(xs[i]) ? NULL : xs[i];
  st = be->cat(ctx, list, n, d, o);
  free(list);
  if (st) {
    ms_tensor_free(o);
    return st;
  }
  *out = o;
  return MS_OK;
}
