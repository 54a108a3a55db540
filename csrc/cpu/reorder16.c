/* reorder16.c: oneDNN's 16-blocked layouts for bf16 convolutions: 16-bit activations between NCHW
 * and nChw16c, f32 weight gradients from ABcd16b16a to OIHW. */
#include "reorder16.h"

#include "transpose_simd.h"

/* Pixels per task: a channel block of this many pixels is 32 KiB in and out. */
#define TILE 1024

/* Between [n, c, hw] (plain) and [n, ceil(c/16), hw, 16] (blocked), one direction or the other:
 * tasks are a channel block's run of TILE pixels; whole 16 x 16 blocks go through the in-register
 * transpose, the rest (and a partial last block) element by element. */
static void reorder_nc16(int to_blocked, int nthreads, uint16_t *plain, uint16_t *blocked,
                         int64_t n, int64_t c, int64_t hw) {
  const int64_t cb = (c + 15) / 16, tiles = (hw + TILE - 1) / TILE;
#pragma omp parallel for num_threads(nthreads) schedule(static) collapse(2)
  for (int64_t nb = 0; nb < n * cb; nb++)
    for (int64_t t = 0; t < tiles; t++) {
      const int64_t b = nb % cb, nc = c - b * 16 < 16 ? c - b * 16 : 16;
      uint16_t *pl = plain + ((nb / cb) * c + b * 16) * hw, *bl = blocked + nb * hw * 16;
      int64_t p = t * TILE, pe = p + TILE < hw ? p + TILE : hw;
#if MS_HAVE_TRANSPOSE_SIMD
      if (nc == 16)
        for (; p + 16 <= pe; p += 16) {
          if (to_blocked)
            ms_tr16x16_u16(bl + p * 16, 16, pl + p, hw);
          else
            ms_tr16x16_u16(pl + p, hw, bl + p * 16, 16);
        }
#endif
      for (; p < pe; p++)
        for (int64_t k = 0; k < 16; k++) {
          if (to_blocked)
            bl[p * 16 + k] = k < nc ? pl[k * hw + p] : 0; /* padded channels hold zeros */
          else if (k < nc)
            pl[k * hw + p] = bl[p * 16 + k];
        }
    }
}

void ms_nchw_to_nc16(int nthreads, uint16_t *dst, const uint16_t *src, int64_t n, int64_t c,
                     int64_t hw) {
  reorder_nc16(1, nthreads, (uint16_t *)src, dst, n, c, hw); /* src is only read */
}

void ms_nc16_to_nchw(int nthreads, uint16_t *dst, const uint16_t *src, int64_t n, int64_t c,
                     int64_t hw) {
  reorder_nc16(0, nthreads, dst, (uint16_t *)src, n, c, hw); /* src is only read */
}

void ms_oi16i16o_to_oihw(int nthreads, float *dst, const float *src, int64_t o, int64_t i,
                         int64_t khw) {
  const int64_t ob = (o + 15) / 16, ib = (i + 15) / 16;
#pragma omp parallel for num_threads(nthreads) schedule(static) collapse(2)
  for (int64_t a = 0; a < ob; a++)
    for (int64_t b = 0; b < ib; b++) {
      /* one block: [khw][16 i][16 o], 1 KiB per pixel of the kernel; its output rows contiguous */
      const float *blk = src + (a * ib + b) * khw * 256;
      const int64_t no = o - a * 16 < 16 ? o - a * 16 : 16, ni = i - b * 16 < 16 ? i - b * 16 : 16;
      for (int64_t oo = 0; oo < no; oo++)
        for (int64_t ii = 0; ii < ni; ii++) {
          float *out = dst + ((a * 16 + oo) * i + b * 16 + ii) * khw;
          const float *in = blk + ii * 16 + oo;
          for (int64_t p = 0; p < khw; p++)
            out[p] = in[p * 256];
        }
    }
}
