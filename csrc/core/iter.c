/* iter.c: broadcasting elementwise iteration with dim coalescing, split over threads. */
#include <omp.h>

#include "internal.h"

int ms_iter_build(ms_iter *it, int nops, const ms_tensor *const *ops, const int64_t *shape,
                  int ndim) {
  memset(it, 0, sizeof *it);
  it->nops = nops;
  it->numel = ms_numel_of(shape, ndim);
  int64_t sh[MS_MAX_DIMS], st[MS_ITER_MAX_OPS][MS_MAX_DIMS];
  for (int k = 0; k < nops; k++) {
    const ms_tensor *t = ops[k];
    int lead = ndim - t->ndim;
    int64_t esize = ms_dtype_size(t->dtype);
    for (int i = 0; i < ndim; i++) {
      int j = i - lead;
      st[k][i] = (j < 0 || t->shape[j] == 1) ? 0 : t->strides[j] * esize;
    }
    it->data[k] = ms_data(t);
  }
  /* Drop size-1 dims, then merge neighbours that are contiguous for every operand. */
  int n = 0;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] == 1) continue;
    sh[n] = shape[i];
    for (int k = 0; k < nops; k++)
      st[k][n] = st[k][i];
    n++;
  }
  int m = 0;
  for (int i = 0; i < n; i++) {
    if (m > 0) {
      int merge = 1;
      for (int k = 0; k < nops && merge; k++)
        merge = st[k][m - 1] == st[k][i] * sh[i];
      if (merge) {
        sh[m - 1] *= sh[i];
        for (int k = 0; k < nops; k++)
          st[k][m - 1] = st[k][i];
        continue;
      }
    }
    sh[m] = sh[i];
    for (int k = 0; k < nops; k++)
      st[k][m] = st[k][i];
    m++;
  }
  if (m == 0) { /* a single element */
    sh[0] = it->numel;
    for (int k = 0; k < nops; k++)
      st[k][0] = 0;
    m = 1;
  }
  it->ndim = m;
  memcpy(it->shape, sh, sizeof(int64_t) * m);
  for (int k = 0; k < nops; k++)
    memcpy(it->strides[k], st[k], sizeof(int64_t) * m);
  return MS_OK;
}

/* Runs inner rows [row_begin, row_end) of the iterator (a row = the innermost dim),
 * restricted to columns [col_begin, col_end) of each row. */
static void run_rows(const ms_iter *it, ms_loop_fn fn, void *arg, int64_t row_begin,
                     int64_t row_end, int64_t col_begin, int64_t col_end) {
  int nd = it->ndim, nops = it->nops;
  int64_t idx[MS_MAX_DIMS] = {0};
  int64_t r = row_begin;
  for (int d = nd - 2; d >= 0; d--) {
    idx[d] = r % it->shape[d];
    r /= it->shape[d];
  }
  int64_t inner[MS_ITER_MAX_OPS];
  for (int k = 0; k < nops; k++)
    inner[k] = it->strides[k][nd - 1];
  char *ptr[MS_ITER_MAX_OPS];
  for (int64_t row = row_begin; row < row_end; row++) {
    for (int k = 0; k < nops; k++) {
      char *p = it->data[k] + col_begin * inner[k];
      for (int d = 0; d < nd - 1; d++)
        p += idx[d] * it->strides[k][d];
      ptr[k] = p;
    }
    fn(ptr, inner, col_end - col_begin, arg);
    for (int d = nd - 2; d >= 0; d--) {
      if (++idx[d] < it->shape[d]) break;
      idx[d] = 0;
    }
  }
}

void ms_iter_run(ms_context *ctx, const ms_iter *it, ms_loop_fn fn, void *arg, int64_t grain) {
  if (it->numel == 0) return;
  int64_t cols = it->shape[it->ndim - 1], rows = it->numel / cols;
  int nt = ms_threads(ctx);
  if (it->numel < grain || nt <= 1) {
    run_rows(it, fn, arg, 0, rows, 0, cols);
    return;
  }
  if (rows >= nt) {
#pragma omp parallel num_threads(nt)
    {
      int t = omp_get_thread_num(), T = omp_get_num_threads();
      int64_t b = rows * t / T, e = rows * (t + 1) / T;
      if (b < e) run_rows(it, fn, arg, b, e, 0, cols);
    }
  } else { /* few long rows: split each row across threads */
#pragma omp parallel num_threads(nt)
    {
      int t = omp_get_thread_num(), T = omp_get_num_threads();
      int64_t b = cols * t / T, e = cols * (t + 1) / T;
      if (b < e) run_rows(it, fn, arg, 0, rows, b, e);
    }
  }
}
