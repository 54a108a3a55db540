/* half_loop.h: f16/bf16 operands of the CPU's f32 kernels: load to float in chunks, compute, store.
 */
#ifndef MS_HALF_LOOP_H
#define MS_HALF_LOOP_H
#include "../core/internal.h"

/* Elements per chunk: small enough that a chunk of every operand stays in L1. */
#define MS_HALF_CHUNK 512

/* bf16 round to nearest even, NaN kept quiet: branch-free so the loops vectorise. */
static inline uint16_t ms_bf16_of(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t r = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
  uint32_t q = (x >> 16) | 0x40u;
  return (uint16_t)((x & 0x7fffffffu) > 0x7f800000u ? q : r);
}

/* dst[k] = src[k * stride] as float, src of dtype d (f32, f16 or bf16; stride in bytes). */
void ms_load_f32s(float *dst, const char *src, int64_t stride, ms_dtype d, int64_t n);
/* dst[k * stride] = src[k] rounded to dtype d (f32, f16 or bf16; nearest even). */
void ms_store_f32s(char *dst, int64_t stride, ms_dtype d, const float *src, int64_t n);

/* An inner loop written for f32 operands (fn, arg) run on operands some of which are f16/bf16
 * (dts[i]; operand 0 the output). */
typedef struct ms_half_arg {
  ms_loop_fn fn;
  void *arg;
  int nops;
  ms_dtype dts[MS_ITER_MAX_OPS];
} ms_half_arg;

/* An ms_loop_fn taking an ms_half_arg: chunks of the half operands are converted to contiguous
 * float buffers, the f32 loop runs on those, the output chunk is stored back. Operands of any
 * other dtype pass through as they are. */
void ms_half_loop(char **data, const int64_t *strides, int64_t n, void *half_arg);

/* 1 when every dtype in dts is f32, f16 or bf16 and at least one is a half type. */
int ms_half_loop_fits(const ms_dtype *dts, int nops);

#endif
