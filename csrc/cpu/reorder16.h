/* reorder16.h: oneDNN's 16-blocked layouts: bf16 activations, f32 weight gradients. */
#ifndef MS_CPU_REORDER16_H
#define MS_CPU_REORDER16_H
#include <stdint.h>

/* dst [n, ceil(c/16), hw, 16] from src [n, c, hw]; the padded channels of the last block get
 * zeros (oneDNN's kernels read them). */
void ms_nchw_to_nc16(int nthreads, uint16_t *dst, const uint16_t *src, int64_t n, int64_t c,
                     int64_t hw);
/* dst [n, c, hw] from src [n, ceil(c/16), hw, 16]. */
void ms_nc16_to_nchw(int nthreads, uint16_t *dst, const uint16_t *src, int64_t n, int64_t c,
                     int64_t hw);
/* dst [o, i, khw] (f32) from src [ceil(o/16), ceil(i/16), khw, 16 (i), 16 (o)] (ABcd16b16a, the
 * layout of oneDNN's bf16 backward-weights' f32 gradient). */
void ms_oi16i16o_to_oihw(int nthreads, float *dst, const float *src, int64_t o, int64_t i,
                         int64_t khw);

#endif
