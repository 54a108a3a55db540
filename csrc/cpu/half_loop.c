/* half_loop.c: vectorised f16/bf16 <-> f32 row conversions and the chunked half-operand loop. */
#include "half_loop.h"
#include "../core/dtype.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

static void bf16_to_f32_row(float *dst, const uint16_t *src, int64_t n) {
  for (int64_t k = 0; k < n; k++) {
    uint32_t b = (uint32_t)src[k] << 16;
    memcpy(&dst[k], &b, 4);
  }
}

static void f32_to_bf16_row(uint16_t *dst, const float *src, int64_t n) {
  for (int64_t k = 0; k < n; k++)
    dst[k] = ms_bf16_of(src[k]);
}

static void f16_to_f32_row(float *dst, const uint16_t *src, int64_t n) {
  int64_t k = 0;
#if defined(__F16C__)
  for (; k + 8 <= n; k += 8)
    _mm256_storeu_ps(dst + k, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + k))));
#endif
  for (; k < n; k++)
    dst[k] = ms_f16_to_f32(src[k]);
}

static void f32_to_f16_row(uint16_t *dst, const float *src, int64_t n) {
  int64_t k = 0;
#if defined(__F16C__)
  for (; k + 8 <= n; k += 8)
    _mm_storeu_si128((__m128i *)(dst + k),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + k), _MM_FROUND_TO_NEAREST_INT));
#endif
  for (; k < n; k++)
    dst[k] = ms_f32_to_f16(src[k]);
}

void ms_load_f32s(float *dst, const char *src, int64_t stride, ms_dtype d, int64_t n) {
  int64_t es = d == MS_F32 ? 4 : 2;
  if (stride == es) {
    if (d == MS_BF16)
      bf16_to_f32_row(dst, (const uint16_t *)src, n);
    else if (d == MS_F16)
      f16_to_f32_row(dst, (const uint16_t *)src, n);
    else
      memcpy(dst, src, sizeof(float) * (size_t)n);
    return;
  }
  for (int64_t k = 0; k < n; k++)
    dst[k] = (float)ms_load_f64(src + k * stride, d);
}

void ms_store_f32s(char *dst, int64_t stride, ms_dtype d, const float *src, int64_t n) {
  int64_t es = d == MS_F32 ? 4 : 2;
  if (stride == es) {
    if (d == MS_BF16)
      f32_to_bf16_row((uint16_t *)dst, src, n);
    else if (d == MS_F16)
      f32_to_f16_row((uint16_t *)dst, src, n);
    else
      memcpy(dst, src, sizeof(float) * (size_t)n);
    return;
  }
  for (int64_t k = 0; k < n; k++)
    ms_store_f64(dst + k * stride, d, src[k]);
}

int ms_half_loop_fits(const ms_dtype *dts, int nops) {
  int half = 0;
  for (int i = 0; i < nops; i++) {
    if (dts[i] != MS_F32 && !ms_is_half(dts[i])) return 0;
    half |= ms_is_half(dts[i]);
  }
  return half;
}

void ms_half_loop(char **data, const int64_t *strides, int64_t n, void *half_arg) {
  const ms_half_arg *h = half_arg;
  const int nops = h->nops;
  const ms_dtype *dts = h->dts;
  float buf[MS_ITER_MAX_OPS][MS_HALF_CHUNK];
  char *d[MS_ITER_MAX_OPS];
  int64_t s[MS_ITER_MAX_OPS];
  for (int64_t k0 = 0; k0 < n; k0 += MS_HALF_CHUNK) {
    int64_t m = n - k0 < MS_HALF_CHUNK ? n - k0 : MS_HALF_CHUNK;
    for (int i = 0; i < nops; i++) {
      char *p = data[i] + k0 * strides[i];
      if (ms_is_half(dts[i])) {
        /* a broadcast operand (stride 0) becomes one float read with stride 0 */
        int64_t cnt = strides[i] == 0 ? 1 : m;
        if (i > 0) ms_load_f32s(buf[i], p, strides[i], dts[i], cnt);
        d[i] = (char *)buf[i];
        s[i] = strides[i] == 0 ? 0 : (int64_t)sizeof(float);
      } else {
        d[i] = p;
        s[i] = strides[i];
      }
    }
    h->fn(d, s, m, h->arg);
    if (ms_is_half(dts[0])) ms_store_f32s(data[0] + k0 * strides[0], strides[0], dts[0], buf[0], m);
  }
}
