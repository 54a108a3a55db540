/* dtype.h: inline conversions between storage dtypes and float/double. */
#ifndef MS_DTYPE_H
#define MS_DTYPE_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "moonseg.h"

static inline float ms_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else { /* subnormal: renormalise */
      int e = -1;
      do {
        e++;
        man <<= 1;
      } while ((man & 0x400) == 0);
      bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000 | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

/* Round to nearest even, overflow to inf, NaN kept quiet. */
static inline uint16_t ms_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000;
  uint32_t absx = x & 0x7fffffff;
  if (absx >= 0x7f800000) return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000 ? 0x200 : 0));
  if (absx >= 0x477ff000) return (uint16_t)(sign | 0x7c00); /* rounds past 65504 */
  if (absx < 0x38800000) {                                  /* result subnormal or zero */
    if (absx < 0x33000000) return (uint16_t)sign;
    uint32_t e = absx >> 23;
    uint32_t m = (absx & 0x7fffff) | 0x800000;
    uint32_t shift = 126 - e; /* 14..24 */
    uint32_t r = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) r++;
    return (uint16_t)(sign | r);
  }
  uint32_t r = ((absx >> 13) - ((127 - 15) << 10));
  uint32_t rem = absx & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
  return (uint16_t)(sign | r);
}

static inline float ms_bf16_to_f32(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

static inline uint16_t ms_f32_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);
  x += 0x7fff + ((x >> 16) & 1);
  return (uint16_t)(x >> 16);
}

static inline double ms_load_f64(const char *p, ms_dtype d) {
  switch (d) {
  case MS_F64: return *(const double *)p;
  case MS_F32: return *(const float *)p;
  case MS_F16: return ms_f16_to_f32(*(const uint16_t *)p);
  case MS_BF16: return ms_bf16_to_f32(*(const uint16_t *)p);
  case MS_I64: return (double)*(const int64_t *)p;
  case MS_I32: return *(const int32_t *)p;
  case MS_U8: return *(const uint8_t *)p;
  case MS_BOOL: return *(const uint8_t *)p ? 1.0 : 0.0;
  }
  return 0;
}

/* Float to integer conversions truncate toward zero (C and PyTorch semantics). */
static inline void ms_store_f64(char *p, ms_dtype d, double v) {
  switch (d) {
  case MS_F64: *(double *)p = v; break;
  case MS_F32: *(float *)p = (float)v; break;
  case MS_F16: *(uint16_t *)p = ms_f32_to_f16((float)v); break;
  case MS_BF16: *(uint16_t *)p = ms_f32_to_bf16((float)v); break;
  case MS_I64: *(int64_t *)p = isfinite(v) ? (int64_t)v : 0; break;
  case MS_I32: *(int32_t *)p = isfinite(v) ? (int32_t)v : 0; break;
  case MS_U8: *(uint8_t *)p = isfinite(v) ? (uint8_t)(int64_t)v : 0; break;
  case MS_BOOL: *(uint8_t *)p = v != 0; break;
  }
}

/* Exact int64 load for integer dtypes (double would lose bits above 2^53). */
static inline int64_t ms_load_i64(const char *p, ms_dtype d) {
  switch (d) {
  case MS_I64: return *(const int64_t *)p;
  case MS_I32: return *(const int32_t *)p;
  case MS_U8:
  case MS_BOOL: return *(const uint8_t *)p;
  default: return (int64_t)ms_load_f64(p, d);
  }
}

#endif
