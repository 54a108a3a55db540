/* test_reorder16.c: the bf16 conv reorders between NCHW and nChw16c against the layout's index
 * formula: odd channel counts (zero padding), pixel counts around the 16-wide transposes and the
 * 1024-pixel tiles, one and two threads; f32 weight gradients from ABcd16b16a. */
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "cpu/reorder16.h"

static void one(int nt, int64_t n, int64_t c, int64_t hw) {
  int64_t cb = (c + 15) / 16, plain = n * c * hw, blocked = n * cb * 16 * hw;
  uint16_t *x = malloc(sizeof *x * (size_t)plain), *b = malloc(sizeof *b * (size_t)blocked);
  uint16_t *y = malloc(sizeof *y * (size_t)plain);
  for (int64_t k = 0; k < plain; k++)
    x[k] = (uint16_t)(k * 40503u + 7u);
  for (int64_t k = 0; k < blocked; k++)
    b[k] = 0xdead; /* the padded channels must be overwritten with zeros */
  ms_nchw_to_nc16(nt, b, x, n, c, hw);
  int bad = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t ch = 0; ch < cb * 16; ch++)
      for (int64_t p = 0; p < hw; p++) {
        uint16_t want = ch < c ? x[(i * c + ch) * hw + p] : 0;
        bad += b[((i * cb + ch / 16) * hw + p) * 16 + ch % 16] != want;
      }
  CHECK(bad == 0);
  ms_nc16_to_nchw(nt, y, b, n, c, hw);
  bad = 0;
  for (int64_t k = 0; k < plain; k++)
    bad += y[k] != x[k];
  CHECK(bad == 0);
  if (bad)
    fprintf(stderr, "threads %d, n %lld c %lld hw %lld\n", nt, (long long)n, (long long)c,
            (long long)hw);
  free(x), free(b), free(y);
}

/* weight gradients: [ceil(o/16), ceil(i/16), khw, 16 i, 16 o] -> [o, i, khw] */
static void one_dw(int nt, int64_t o, int64_t i, int64_t khw) {
  int64_t ob = (o + 15) / 16, ib = (i + 15) / 16, nb = ob * ib * khw * 256;
  float *b = malloc(sizeof *b * (size_t)nb), *y = malloc(sizeof *y * (size_t)(o * i * khw));
  for (int64_t k = 0; k < nb; k++)
    b[k] = (float)k;
  ms_oi16i16o_to_oihw(nt, y, b, o, i, khw);
  int bad = 0;
  for (int64_t a = 0; a < o; a++)
    for (int64_t c = 0; c < i; c++)
      for (int64_t p = 0; p < khw; p++)
        bad += y[(a * i + c) * khw + p] !=
               b[(((a / 16) * ib + c / 16) * khw + p) * 256 + (c % 16) * 16 + a % 16];
  CHECK(bad == 0);
  free(b), free(y);
}

int main(void) {
  const int64_t os[] = {16, 19, 32, 40}, is[] = {3, 16, 24, 64}, khws[] = {1, 9, 25};
  for (int nt = 1; nt <= 2; nt++)
    for (size_t a = 0; a < 4; a++)
      for (size_t c = 0; c < 4; c++)
        for (size_t k = 0; k < 3; k++)
          one_dw(nt, os[a], is[c], khws[k]);
  const int64_t cs[] = {1, 8, 16, 19, 32, 35};
  const int64_t hws[] = {1, 15, 16, 17, 63, 1024, 1030, 2100};
  for (int nt = 1; nt <= 2; nt++)
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++)
      for (size_t j = 0; j < sizeof hws / sizeof *hws; j++)
        one(nt, 2, cs[i], hws[j]);
  printf("%d checks, %d failures\n", checks, failures);
  return failures != 0;
}
