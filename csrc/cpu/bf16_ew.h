/* bf16_ew.h: direct bf16 loops (ms_loop_fn) for relu, relu backward and add, all operands bf16. */
#ifndef MS_CPU_BF16_EW_H
#define MS_CPU_BF16_EW_H
#include "../core/internal.h"

/* operands: y, x */
void ms_bf16_relu_loop(char **d, const int64_t *s, int64_t n, void *arg);
/* operands: gin, gout, x (, y unused) */
void ms_bf16_relu_bwd_loop(char **d, const int64_t *s, int64_t n, void *arg);
/* operands: out, a, b */
void ms_bf16_add_loop(char **d, const int64_t *s, int64_t n, void *arg);

#endif
