/* bf16_ew.c: direct bf16 loops for the hottest elementwise ops of a bf16 training step (relu, its
 * backward, add), bit for bit what the chunked half loop (load to f32, the f32 loop, round back)
 * gives, in one pass without the float buffers. */
#include "bf16_ew.h"
#include "half_loop.h"

/* bf16 bits: NaN when the magnitude is above infinity's */
#define MAG(b) ((b)&0x7fffu)
#define IS_NAN(b) (MAG(b) > 0x7f80u)
/* what the round trip through f32 stores for a bf16 value v: v, NaNs made quiet */
#define SAME(b) (IS_NAN(b) ? (uint16_t)((b) | 0x40u) : (b))

/* y = x < 0 ? 0 : x */
static inline uint16_t relu1(uint16_t b) {
  int neg = (b & 0x8000u) && MAG(b) != 0 && !IS_NAN(b);
  return neg ? 0 : SAME(b);
}

/* gin = x > 0 ? g : 0 */
static inline uint16_t relu_bwd1(uint16_t g, uint16_t x) {
  int pos = !(x & 0x8000u) && MAG(x) != 0 && !IS_NAN(x);
  return pos ? SAME(g) : 0;
}

static inline float f32_of(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

void ms_bf16_relu_loop(char **d, const int64_t *s, int64_t n, void *arg) {
  (void)arg;
  if (s[0] == 2 && s[1] == 2) {
    uint16_t *o = (uint16_t *)d[0];
    const uint16_t *x = (const uint16_t *)d[1];
    for (int64_t k = 0; k < n; k++)
      o[k] = relu1(x[k]);
    return;
  }
  for (int64_t k = 0; k < n; k++)
    *(uint16_t *)(d[0] + k * s[0]) = relu1(*(const uint16_t *)(d[1] + k * s[1]));
}

/* operands: gin, gout, x, y (x used) */
void ms_bf16_relu_bwd_loop(char **d, const int64_t *s, int64_t n, void *arg) {
  (void)arg;
  if (s[0] == 2 && s[1] == 2 && s[2] == 2) {
    uint16_t *o = (uint16_t *)d[0];
    const uint16_t *g = (const uint16_t *)d[1], *x = (const uint16_t *)d[2];
    for (int64_t k = 0; k < n; k++)
      o[k] = relu_bwd1(g[k], x[k]);
    return;
  }
  for (int64_t k = 0; k < n; k++)
    *(uint16_t *)(d[0] + k * s[0]) =
        relu_bwd1(*(const uint16_t *)(d[1] + k * s[1]), *(const uint16_t *)(d[2] + k * s[2]));
}

void ms_bf16_add_loop(char **d, const int64_t *s, int64_t n, void *arg) {
  (void)arg;
  if (s[0] == 2 && s[1] == 2 && s[2] == 2) {
    uint16_t *o = (uint16_t *)d[0];
    const uint16_t *a = (const uint16_t *)d[1], *b = (const uint16_t *)d[2];
    for (int64_t k = 0; k < n; k++)
      o[k] = ms_bf16_of(f32_of(a[k]) + f32_of(b[k]));
    return;
  }
  for (int64_t k = 0; k < n; k++)
    *(uint16_t *)(d[0] + k * s[0]) = ms_bf16_of(f32_of(*(const uint16_t *)(d[1] + k * s[1])) +
                                                f32_of(*(const uint16_t *)(d[2] + k * s[2])));
}
