/* precision.c: the CPU backend's precision policy (which ops run natively in bf16, which convert).
 */
#include <dnnl.h>
#include <stdlib.h>
#include <string.h>

#include "precision.h"

/* oneDNN's native bf16 convolution needs AVX512-BF16 (avx512_core_bf16); MS_CPU_BF16=convert
 * forces the f32 path (for comparisons). */
static int native_bf16(void) {
  static int v = -1;
  if (v < 0) {
    const char *e = getenv("MS_CPU_BF16");
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    v = !(e && !strcmp(e, "convert")) &&
        (isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) == (unsigned)dnnl_cpu_isa_avx512_core_bf16;
  }
  return v;
}

/* MS_CPU_BF16=bf16_dw: native bf16 convs, but bf16 weight gradients cast back to f32 (for
 * comparisons). */
static int bf16_dw(void) {
  static int v = -1;
  if (v < 0) {
    const char *e = getenv("MS_CPU_BF16");
    v = e && !strcmp(e, "bf16_dw");
  }
  return v;
}

ms_dtype ms_cpu_compute_dtype(const char *op, ms_dtype d) {
  if (d == MS_F64) return MS_F64;
  /* conv2d (forward, backward-data, backward-weights): bf16 natively through oneDNN.
   * f16: no oneDNN f16 convolution without AVX512-FP16, so converted to f32 (F16C).
   * "conv2d_f32_dw" (autocast's f32 weights beside bf16 activations) as well: the bf16
   * backward-weights accumulates in f32 and writes f32 dw / db, so they are neither rounded to
   * bf16 nor cast back. The weights themselves reach the kernels cast to bf16 (csrc/ops): oneDNN's
   * f32 -> bf16 blocked weight reorder was slower than a cast pass and its bf16 reorder
   * (PP-LiteSeg 2x256x256 bf16 step, 1 thread, min of 3: 0.162 s CPU vs 0.153). */
  if (d == MS_BF16 && !strcmp(op, "conv2d_f32_dw") && bf16_dw()) return MS_F32;
  if (d == MS_BF16 && !strncmp(op, "conv2d", 6) && native_bf16()) return MS_BF16;
  /* batch_norm (forward, backward): f16/bf16 loaded and stored as they are, f32 math and f32
   * statistics (the kernel converts rows in chunks): no f32 copies of the activations. */
  if ((d == MS_BF16 || d == MS_F16) && !strncmp(op, "batch_norm", 10)) return d;
  /* pooling (max, average, adaptive average; forward and backward): the same, plane by plane */
  if ((d == MS_BF16 || d == MS_F16) && !strcmp(op, "pool2d")) return d;
  /* resize (bilinear, nearest; forward and backward): rows converted as the kernel needs them,
   * f32 math, the backward accumulating into f32 scratch and rounding once */
  if ((d == MS_BF16 || d == MS_F16) && !strcmp(op, "interpolate")) return d;
  /* Elementwise ops load and store f16/bf16 and compute in f32 inside their kernels (their
   * families answer natively in cpu_backend.c); the rest (layer norm, losses...)
   * computes in f32 on converted copies. */
  return MS_F32;
}
