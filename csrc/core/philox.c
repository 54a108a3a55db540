/* philox.c: the Philox4x32-10 counter-based generator (Salmon et al., SC'11). */
#include "philox.h"
#include "internal.h"

void ms_philox4x32(uint64_t seed, uint64_t ctr_lo, uint64_t ctr_hi, uint32_t out[4]) {
  ms_philox_block(seed, ctr_lo, ctr_hi, out);
}
