/* transpose_simd.h: in-register block transposes (AVX2) for layout changes: the bf16 conv
 * reorders and tiled copies. MS_HAVE_TRANSPOSE_SIMD is 0 where the build does not target AVX2
 * (the callers then take their scalar loops). */
#ifndef MS_TRANSPOSE_SIMD_H
#define MS_TRANSPOSE_SIMD_H

#include <stdint.h>

#if defined(__AVX2__)
#include <immintrin.h>

/* dst row j (16 values, stride ds) = column j of the 16 x 16 block src (rows of stride ss): eight
 * rows at a time transposed lane-wise in three unpack stages, the two halves joined per lane. */
static inline void ms_tr16x16_u16(uint16_t *dst, int64_t ds, const uint16_t *src, int64_t ss) {
  __m256i t[2][8];
  for (int h = 0; h < 2; h++) {
    __m256i r[8], a[8], b[8];
    for (int i = 0; i < 8; i++)
      r[i] = _mm256_loadu_si256((const __m256i *)(src + (h * 8 + i) * ss));
    for (int i = 0; i < 4; i++) {
      a[2 * i] = _mm256_unpacklo_epi16(r[2 * i], r[2 * i + 1]);
      a[2 * i + 1] = _mm256_unpackhi_epi16(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {
      b[4 * i + 0] = _mm256_unpacklo_epi32(a[4 * i + 0], a[4 * i + 2]);
      b[4 * i + 1] = _mm256_unpackhi_epi32(a[4 * i + 0], a[4 * i + 2]);
      b[4 * i + 2] = _mm256_unpacklo_epi32(a[4 * i + 1], a[4 * i + 3]);
      b[4 * i + 3] = _mm256_unpackhi_epi32(a[4 * i + 1], a[4 * i + 3]);
    }
    for (int j = 0; j < 4; j++) {
      t[h][2 * j] = _mm256_unpacklo_epi64(b[j], b[j + 4]);
      t[h][2 * j + 1] = _mm256_unpackhi_epi64(b[j], b[j + 4]);
    }
  }
  /* t[h][j]: lane 0 column j, lane 1 column j + 8, of rows 8h .. 8h + 7 */
  for (int j = 0; j < 8; j++) {
    _mm256_storeu_si256((__m256i *)(dst + j * ds),
                        _mm256_permute2x128_si256(t[0][j], t[1][j], 0x20));
    _mm256_storeu_si256((__m256i *)(dst + (j + 8) * ds),
                        _mm256_permute2x128_si256(t[0][j], t[1][j], 0x31));
  }
}

/* dst row j (8 values, stride ds) = column j of the 8 x 8 block src (rows of stride ss), 32-bit
 * elements moved as float bits: pairs, then quads unpacked within lanes, then lanes swapped. */
static inline void ms_tr8x8_u32(uint32_t *dst, int64_t ds, const uint32_t *src, int64_t ss) {
  __m256 r[8], t[8], u[8];
  for (int i = 0; i < 8; i++)
    r[i] = _mm256_loadu_ps((const float *)(src + i * ss));
  for (int i = 0; i < 4; i++) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int h = 0; h < 2; h++)
    for (int k = 0; k < 2; k++) {
      u[4 * h + 2 * k] = _mm256_shuffle_ps(t[4 * h + k], t[4 * h + k + 2], 0x44);
      u[4 * h + 2 * k + 1] = _mm256_shuffle_ps(t[4 * h + k], t[4 * h + k + 2], 0xEE);
    }
  for (int j = 0; j < 4; j++) {
    _mm256_storeu_ps((float *)(dst + j * ds), _mm256_permute2f128_ps(u[j], u[j + 4], 0x20));
    _mm256_storeu_ps((float *)(dst + (j + 4) * ds), _mm256_permute2f128_ps(u[j], u[j + 4], 0x31));
  }
}
#define MS_HAVE_TRANSPOSE_SIMD 1
#else
#define MS_HAVE_TRANSPOSE_SIMD 0
#endif

#endif
