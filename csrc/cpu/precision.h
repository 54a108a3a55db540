/* precision.h: the CPU backend's precision policy: the dtype each op computes in. */
#ifndef MS_CPU_PRECISION_H
#define MS_CPU_PRECISION_H
#include "../core/internal.h"

/* The dtype op computes in on the CPU for operands of dtype d: natively (the same dtype) or
 * converted (f32 for f16/bf16, f32/f64 otherwise). The one place the policy lives. */
ms_dtype ms_cpu_compute_dtype(const char *op, ms_dtype d);

#endif
