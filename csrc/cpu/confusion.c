/* confusion.c: CPU confusion-matrix / label-count kernel (per-thread histograms) and quickselect.
 */
#include "confusion.h"

#include <omp.h>
#include <stdlib.h>

static inline int64_t load_int(const void *p, ms_dtype dt, int64_t i) {
  switch (dt) {
  case MS_I64: return ((const int64_t *)p)[i];
  case MS_I32: return ((const int32_t *)p)[i];
  default: return ((const uint8_t *)p)[i];
  }
}

int ms_cpu_confusion(ms_context *ctx, const void *pred, ms_dtype pred_dt, const void *label,
                     ms_dtype label_dt, int64_t n, int64_t num_classes, int64_t ignore_index,
                     int64_t *accum, ms_bad_value *bad) {
  const int64_t C = num_classes;
  const int64_t bins = pred ? C * C : C;
  int nt = ms_threads(ctx);
  if (n < MS_GRAIN) nt = 1;
  if (nt > 64) nt = 64;
  int64_t *hist = calloc((size_t)nt * (size_t)bins, sizeof(int64_t));
  if (!hist)
    return ms_fail(MS_ERR_OOM, "confusion_matrix: out of memory for %d x %lld bins", nt,
                   (long long)bins);
  int64_t first_bad[64];
  for (int t = 0; t < nt; t++)
    first_bad[t] = -1;
#pragma omp parallel num_threads(nt)
  {
    int t = omp_get_thread_num();
    int64_t *h = hist + (size_t)t * (size_t)bins;
    int64_t lo = n * t / nt, hi = n * (t + 1) / nt;
    for (int64_t i = lo; i < hi; i++) {
      int64_t l = load_int(label, label_dt, i);
      if (l == ignore_index) continue;
      if (l < 0 || l >= C) {
        first_bad[t] = i;
        break;
      }
      if (!pred) {
        h[l]++;
        continue;
      }
      int64_t p = load_int(pred, pred_dt, i);
      if (p < 0 || p >= C) {
        first_bad[t] = i;
        break;
      }
      h[l * C + p]++;
    }
  }
  for (int t = 0; t < nt; t++) {
    if (first_bad[t] < 0) continue;
    int64_t i = first_bad[t];
    int64_t l = load_int(label, label_dt, i);
    bad->index = i;
    bad->in_pred = !(l < 0 || l >= C);
    bad->value = bad->in_pred ? load_int(pred, pred_dt, i) : l;
    free(hist);
    return MS_ERR_INVALID;
  }
  for (int t = 0; t < nt; t++) {
    const int64_t *h = hist + (size_t)t * (size_t)bins;
    for (int64_t b = 0; b < bins; b++)
      accum[b] += h[b];
  }
  free(hist);
  bad->index = -1;
  return MS_OK;
}

static inline void swap_d(double *a, double *b) {
  double t = *a;
  *a = *b;
  *b = t;
}

double ms_cpu_select_kth(double *v, int64_t n, int64_t k) {
  int64_t lo = 0, hi = n - 1;
  while (hi > lo) {
    /* median of three as pivot, then a three-way (Dutch flag) partition */
    int64_t mid = lo + (hi - lo) / 2;
    if (v[mid] < v[lo]) swap_d(&v[mid], &v[lo]);
    if (v[hi] < v[lo]) swap_d(&v[hi], &v[lo]);
    if (v[hi] < v[mid]) swap_d(&v[hi], &v[mid]);
    double pivot = v[mid];
    int64_t lt = lo, i = lo, gt = hi;
    while (i <= gt) {
      if (v[i] < pivot)
        swap_d(&v[lt++], &v[i++]);
      else if (v[i] > pivot)
        swap_d(&v[i], &v[gt--]);
      else
        i++;
    }
    if (k < lt)
      hi = lt - 1;
    else if (k > gt)
      lo = gt + 1;
    else
      return v[k];
  }
  return v[k];
}

int ms_cpu_confusion_tensors(ms_context *ctx, const ms_tensor *pred, const ms_tensor *label,
                             int64_t num_classes, int64_t ignore_index, ms_tensor *accum,
                             ms_bad_value *bad) {
  return ms_cpu_confusion(ctx, pred ? ms_data(pred) : NULL, pred ? pred->dtype : MS_I64,
                          ms_data(label), label->dtype, ms_numel(label), num_classes, ignore_index,
                          (int64_t *)ms_data(accum), bad);
}
