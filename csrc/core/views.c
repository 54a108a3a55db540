/* views.c: view, permute, transpose, slice, select, expand, squeeze, unsqueeze, as_strided. */
#include "internal.h"

/* Strides for viewing t as shape without copying, or 0 when impossible: each run
 * of t's dims that is contiguous within itself may be split or merged freely. */
static int view_strides(const ms_tensor *t, const int64_t *shape, int ndim, int64_t *strides) {
  if (ms_numel(t) == 0 || t->ndim == 0) {
    ms_contiguous_strides(shape, ndim, strides);
    return 1;
  }
  int vd = ndim - 1;
  int64_t base = t->strides[t->ndim - 1], tnumel = 1, vnumel = 1;
  for (int td = t->ndim - 1; td >= 0; td--) {
    tnumel *= t->shape[td];
    int chunk_ends = td == 0 || (t->shape[td - 1] != 1 && t->strides[td - 1] != tnumel * base);
    if (!chunk_ends) continue;
    while (vd >= 0 && (vnumel < tnumel || shape[vd] == 1)) {
      strides[vd] = vnumel * base;
      vnumel *= shape[vd];
      vd--;
    }
    if (vnumel != tnumel) return 0;
    if (td > 0) {
      base = t->strides[td - 1];
      tnumel = vnumel = 1;
    }
  }
  return vd == -1;
}

int ms_view(const ms_tensor *t, const int64_t *shape, int ndim, ms_tensor **out) {
  if (!t) return ms_fail(MS_ERR_INVALID, "view: tensor is NULL");
  if (ndim < 0 || ndim > MS_MAX_DIMS)
    return ms_fail(MS_ERR_INVALID, "view: %d dims, at most %d supported", ndim, MS_MAX_DIMS);
  for (int i = 0; i < ndim; i++)
    if (shape[i] < 0)
      return ms_fail(MS_ERR_INVALID, "view: negative size in %s", ms_shape_str(shape, ndim));
  if (ms_numel_of(shape, ndim) != ms_numel(t))
    return ms_fail(MS_ERR_INVALID, "view: shape %s is invalid for %s (%lld elements)",
                   ms_shape_str(shape, ndim), ms_desc(t), (long long)ms_numel(t));
  int64_t strides[MS_MAX_DIMS];
  if (!view_strides(t, shape, ndim, strides))
    return ms_fail(MS_ERR_INVALID,
                   "view: %s with strides %s cannot be viewed as %s without a copy (use reshape)",
                   ms_desc(t), ms_shape_str(t->strides, t->ndim), ms_shape_str(shape, ndim));
  return ms_tensor_make_view(t, shape, strides, ndim, t->offset, out);
}

int ms_permute(const ms_tensor *t, const int *dims, int ndim, ms_tensor **out) {
  if (!t) return ms_fail(MS_ERR_INVALID, "permute: tensor is NULL");
  if (ndim != t->ndim)
    return ms_fail(MS_ERR_INVALID, "permute: %d dims given for %s", ndim, ms_desc(t));
  int64_t shape[MS_MAX_DIMS], strides[MS_MAX_DIMS];
  int seen[MS_MAX_DIMS] = {0};
  for (int i = 0; i < ndim; i++) {
    int d;
    if (ms_wrap_dim("permute", dims[i], ndim, &d)) return MS_ERR_INVALID;
    if (seen[d]) return ms_fail(MS_ERR_INVALID, "permute: dim %d repeated", dims[i]);
    seen[d] = 1;
    shape[i] = t->shape[d];
    strides[i] = t->strides[d];
  }
  return ms_tensor_make_view(t, shape, strides, ndim, t->offset, out);
}

int ms_transpose(const ms_tensor *t, int dim0, int dim1, ms_tensor **out) {
  if (!t) return ms_fail(MS_ERR_INVALID, "transpose: tensor is NULL");
  int a, b;
  if (ms_wrap_dim("transpose", dim0, t->ndim, &a) || ms_wrap_dim("transpose", dim1, t->ndim, &b))
    return MS_ERR_INVALID;
  int64_t shape[MS_MAX_DIMS], strides[MS_MAX_DIMS];
  memcpy(shape, t->shape, sizeof shape);
  memcpy(strides, t->strides, sizeof strides);
  if (t->ndim) {
    shape[a] = t->shape[b], shape[b] = t->shape[a];
    strides[a] = t->strides[b], strides[b] = t->strides[a];
  }
  return ms_tensor_make_view(t, shape, strides, t->ndim, t->offset, out);
}

int ms_slice(const ms_tensor *t, int dim, int64_t start, int64_t stop, int64_t step,
             ms_tensor **out) {
  if (!t) return ms_fail(MS_ERR_INVALID, "slice: tensor is NULL");
  if (t->ndim == 0) return ms_fail(MS_ERR_INVALID, "slice: cannot slice a 0-d tensor");
  int d;
  if (ms_wrap_dim("slice", dim, t->ndim, &d)) return MS_ERR_INVALID;
  if (step < 1)
    return ms_fail(MS_ERR_INVALID, "slice: step must be >= 1, got %lld", (long long)step);
  int64_t n = t->shape[d];
  if (start < 0) start += n;
  if (stop < 0) stop += n;
  if (start < 0) start = 0;
  if (stop > n) stop = n;
  if (start > n) start = n;
  int64_t len = stop > start ? (stop - start + step - 1) / step : 0;
  int64_t shape[MS_MAX_DIMS], strides[MS_MAX_DIMS];
  memcpy(shape, t->shape, sizeof shape);
  memcpy(strides, t->strides, sizeof strides);
  shape[d] = len;
  strides[d] = t->strides[d] * step;
  return ms_tensor_make_view(t, shape, strides, t->ndim, t->offset + start * t->strides[d], out);
}

int ms_select(const ms_tensor *t, int dim, int64_t index, ms_tensor **out) {
  if (!t) return ms_fail(MS_ERR_INVALID, "select: tensor is NULL");
  if (t->ndim == 0) return ms_fail(MS_ERR_INVALID, "select: cannot index a 0-d tensor");
  int d;
  if (ms_wrap_dim("select", dim, t->ndim, &d)) return MS_ERR_INVALID;
  int64_t n = t->shape[d];
  if (index < -n || index >= n)
    return ms_fail(MS_ERR_INVALID, "select: index %lld out of range for dim %d of size %lld",
                   (long long)index, dim, (long long)n);
  if (index < 0) index += n;
  int64_t shape[MS_MAX_DIMS], strides[MS_MAX_DIMS];
  for (int i = 0, j = 0; i < t->ndim; i++) {
    if (i == d) continue;
    shape[j] = t->shape[i];
    strides[j++] = t->strides[i];
  }
  return ms_tensor_make_view(t, shape, strides, t->ndim - 1, t->offset + index * t->strides[d],
                             out);
}

int ms_expand(const ms_tensor *t, const int64_t *shape, int ndim, ms_tensor **out) {
  if (!t) return ms_fail(MS_ERR_INVALID, "expand: tensor is NULL");
  if (ndim < t->ndim || ndim > MS_MAX_DIMS)
    return ms_fail(MS_ERR_INVALID, "expand: cannot expand %s to %s", ms_desc(t),
                   ms_shape_str(shape, ndim));
  int64_t sh[MS_MAX_DIMS], st[MS_MAX_DIMS];
  int lead = ndim - t->ndim;
  for (int i = 0; i < ndim; i++) {
    int64_t want = shape[i];
    if (i < lead) {
      if (want < 0)
        return ms_fail(MS_ERR_INVALID, "expand: -1 not allowed for new leading dim %d", i);
      sh[i] = want, st[i] = 0;
      continue;
    }
    int64_t have = t->shape[i - lead];
    if (want == -1) want = have;
    if (have == want) {
      sh[i] = have, st[i] = t->strides[i - lead];
    } else if (have == 1) {
      sh[i] = want, st[i] = 0;
    } else {
      return ms_fail(MS_ERR_INVALID, "expand: cannot expand %s to %s (dim %d: %lld vs %lld)",
                     ms_desc(t), ms_shape_str(shape, ndim), i, (long long)have, (long long)want);
    }
  }
  return ms_tensor_make_view(t, sh, st, ndim, t->offset, out);
}

int ms_squeeze(const ms_tensor *t, int dim, ms_tensor **out) {
  if (!t) return ms_fail(MS_ERR_INVALID, "squeeze: tensor is NULL");
  int d;
  if (ms_wrap_dim("squeeze", dim, t->ndim, &d)) return MS_ERR_INVALID;
  if (t->ndim == 0 || t->shape[d] != 1) return ms_tensor_alias(t, out);
  int64_t shape[MS_MAX_DIMS], strides[MS_MAX_DIMS];
  for (int i = 0, j = 0; i < t->ndim; i++) {
    if (i == d) continue;
    shape[j] = t->shape[i];
    strides[j++] = t->strides[i];
  }
  return ms_tensor_make_view(t, shape, strides, t->ndim - 1, t->offset, out);
}

int ms_squeeze_all(const ms_tensor *t, ms_tensor **out) {
  if (!t) return ms_fail(MS_ERR_INVALID, "squeeze: tensor is NULL");
  int64_t shape[MS_MAX_DIMS], strides[MS_MAX_DIMS];
  int j = 0;
  for (int i = 0; i < t->ndim; i++) {
    if (t->shape[i] == 1) continue;
    shape[j] = t->shape[i];
    strides[j++] = t->strides[i];
  }
  return ms_tensor_make_view(t, shape, strides, j, t->offset, out);
}

int ms_unsqueeze(const ms_tensor *t, int dim, ms_tensor **out) {
  if (!t) return ms_fail(MS_ERR_INVALID, "unsqueeze: tensor is NULL");
  if (t->ndim >= MS_MAX_DIMS) return ms_fail(MS_ERR_INVALID, "unsqueeze: too many dims");
  int d;
  if (ms_wrap_dim("unsqueeze", dim, t->ndim + 1, &d)) return MS_ERR_INVALID;
  int64_t shape[MS_MAX_DIMS], strides[MS_MAX_DIMS];
  for (int i = 0, j = 0; i <= t->ndim; i++) {
    if (i == d) {
      shape[i] = 1;
      strides[i] = j < t->ndim ? t->strides[j] * t->shape[j] : 1;
      continue;
    }
    shape[i] = t->shape[j];
    strides[i] = t->strides[j++];
  }
  return ms_tensor_make_view(t, shape, strides, t->ndim + 1, t->offset, out);
}

int ms_as_strided(const ms_tensor *t, const int64_t *shape, const int64_t *strides, int ndim,
                  int64_t offset, ms_tensor **out) {
  if (!t) return ms_fail(MS_ERR_INVALID, "as_strided: tensor is NULL");
  if (ndim < 0 || ndim > MS_MAX_DIMS)
    return ms_fail(MS_ERR_INVALID, "as_strided: %d dims, at most %d", ndim, MS_MAX_DIMS);
  /* Every reachable element must lie inside the storage. */
  int64_t lo = offset, hi = offset, esize = ms_dtype_size(t->dtype);
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) return ms_fail(MS_ERR_INVALID, "as_strided: negative size");
    if (shape[i] == 0) {
      lo = hi = offset;
      break;
    }
    int64_t span = (shape[i] - 1) * strides[i];
    if (span < 0)
      lo += span;
    else
      hi += span;
  }
  if (lo < 0 || (ms_numel_of(shape, ndim) > 0 && (hi + 1) * esize > t->storage->nbytes))
    return ms_fail(MS_ERR_INVALID,
                   "as_strided: shape %s strides %s offset %lld reaches outside the storage of "
                   "%lld bytes",
                   ms_shape_str(shape, ndim), ms_shape_str(strides, ndim), (long long)offset,
                   (long long)t->storage->nbytes);
  return ms_tensor_make_view(t, shape, strides, ndim, offset, out);
}
