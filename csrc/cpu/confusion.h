/* confusion.h: CPU kernels behind metrics.c (confusion matrix, label counts, k-th smallest). */
#ifndef MS_CPU_CONFUSION_H
#define MS_CPU_CONFUSION_H
#include "../core/backend.h"

/* pred (may be NULL: count labels only, accum [C]) and label are contiguous integer arrays
 * of n elements; accum (C*C or C) is added to. Returns MS_OK, or MS_ERR_INVALID with *bad
 * set to the first offending position (nothing is added then). */
int ms_cpu_confusion(ms_context *ctx, const void *pred, ms_dtype pred_dt, const void *label,
                     ms_dtype label_dt, int64_t n, int64_t num_classes, int64_t ignore_index,
                     int64_t *accum, ms_bad_value *bad);

/* The CPU table's entry: the same on contiguous tensors. */
int ms_cpu_confusion_tensors(ms_context *ctx, const ms_tensor *pred, const ms_tensor *label,
                             int64_t num_classes, int64_t ignore_index, ms_tensor *accum,
                             ms_bad_value *bad);

/* Reorders v[0..n) so that v[k] is the (k+1)-th smallest (quickselect). */
double ms_cpu_select_kth(double *v, int64_t n, int64_t k);

#endif
