/* cat.c: CPU cat: each input copied (with dtype conversion) into its slab of the output. */
#include "basic_kernels.h"
#include "mcsl_kernels.h"

int ms_cpu_cat(ms_context *ctx, ms_tensor *const *xs, int n, int dim, ms_tensor *out) {
  int64_t pos = 0;
  for (int i = 0; i < n; i++) {
    const ms_tensor *t = xs[i];
    if (!t) continue;
    int64_t len = t->shape[dim];
    if (len == 0 || ms_numel(t) == 0) {
      pos += len;
      continue;
    }
    ms_tensor *slab;
    int64_t shape[MS_MAX_DIMS];
    memcpy(shape, out->shape, sizeof(int64_t) * out->ndim);
    shape[dim] = len;
    int st = ms_tensor_make_view(out, shape, out->strides, out->ndim,
                                 out->offset + pos * out->strides[dim], &slab);
    if (st) return st;
    st = ms_cpu_copy(ctx, slab, t);
    ms_tensor_free(slab);
    if (st) return st;
    pos += len;
  }
  return MS_OK;
}
