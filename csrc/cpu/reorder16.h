/* reorder16.h: 16-bit (bf16) activations between NCHW and oneDNN's nChw16c. */
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

#endif
