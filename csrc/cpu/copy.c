/* copy.c: CPU copy with dtype conversion, fill and arange. */
#include "../core/dtype.h"
#include "basic_kernels.h"
#include "half_loop.h"

typedef struct {
  ms_dtype dst, src;
} cast_arg;

static void copy_same(char **d, const int64_t *s, int64_t n, void *arg) {
  int64_t es =
      ((cast_arg *)arg)->dst == ((cast_arg *)arg)->src ? ms_dtype_size(((cast_arg *)arg)->dst) : 0;
  char *o = d[0], *i = d[1];
  if (s[0] == es && s[1] == es) {
    memcpy(o, i, (size_t)(n * es));
    return;
  }
  switch (es) {
  case 8:
    for (int64_t k = 0; k < n; k++)
      *(uint64_t *)(o + k * s[0]) = *(const uint64_t *)(i + k * s[1]);
    break;
  case 4:
    for (int64_t k = 0; k < n; k++)
      *(uint32_t *)(o + k * s[0]) = *(const uint32_t *)(i + k * s[1]);
    break;
  case 2:
    for (int64_t k = 0; k < n; k++)
      *(uint16_t *)(o + k * s[0]) = *(const uint16_t *)(i + k * s[1]);
    break;
  default:
    for (int64_t k = 0; k < n; k++)
      o[k * s[0]] = i[k * s[1]];
  }
}

static void copy_cast(char **d, const int64_t *s, int64_t n, void *arg) {
  cast_arg *a = arg;
  char *o = d[0], *i = d[1];
  /* f32 <-> f16/bf16 with a contiguous float side: the vectorised row conversions */
  if (a->dst == MS_F32 && ms_is_half(a->src) && s[0] == 4) {
    ms_load_f32s((float *)o, i, s[1], a->src, n);
  } else if (ms_is_half(a->dst) && a->src == MS_F32 && s[1] == 4) {
    ms_store_f32s(o, s[0], a->dst, (const float *)i, n);
  } else if (a->dst == MS_F32 && a->src == MS_F16) {
    for (int64_t k = 0; k < n; k++)
      *(float *)(o + k * s[0]) = ms_f16_to_f32(*(const uint16_t *)(i + k * s[1]));
  } else if (a->dst == MS_F16 && a->src == MS_F32) {
    for (int64_t k = 0; k < n; k++)
      *(uint16_t *)(o + k * s[0]) = ms_f32_to_f16(*(const float *)(i + k * s[1]));
  } else if (a->dst == MS_F32 && a->src == MS_BF16) {
    for (int64_t k = 0; k < n; k++)
      *(float *)(o + k * s[0]) = ms_bf16_to_f32(*(const uint16_t *)(i + k * s[1]));
  } else if (a->dst == MS_BF16 && a->src == MS_F32) {
    for (int64_t k = 0; k < n; k++)
      *(uint16_t *)(o + k * s[0]) = ms_f32_to_bf16(*(const float *)(i + k * s[1]));
  } else if (ms_dtype_is_int(a->dst) && ms_dtype_is_int(a->src) && a->dst != MS_BOOL) {
    for (int64_t k = 0; k < n; k++) {
      int64_t v = ms_load_i64(i + k * s[1], a->src);
      char *p = o + k * s[0];
      if (a->dst == MS_I64)
        *(int64_t *)p = v;
      else if (a->dst == MS_I32)
        *(int32_t *)p = (int32_t)v;
      else
        *(uint8_t *)p = (uint8_t)v;
    }
  } else {
    for (int64_t k = 0; k < n; k++)
      ms_store_f64(o + k * s[0], a->dst, ms_load_f64(i + k * s[1], a->src));
  }
}

int ms_cpu_copy(ms_context *ctx, ms_tensor *dst, const ms_tensor *src) {
  if (ms_cpu_copy_tiled(ctx, dst, src)) return MS_OK;
  const ms_tensor *ops[2] = {dst, src};
  ms_iter it;
  ms_iter_build(&it, 2, ops, dst->shape, dst->ndim);
  cast_arg a = {dst->dtype, src->dtype};
  ms_iter_run(ctx, &it, dst->dtype == src->dtype ? copy_same : copy_cast, &a, MS_GRAIN);
  return MS_OK;
}

typedef struct {
  ms_dtype dtype;
  double value;
} fill_arg;

static void fill_loop(char **d, const int64_t *s, int64_t n, void *arg) {
  fill_arg *a = arg;
  char one[8];
  ms_store_f64(one, a->dtype, a->value);
  int64_t es = ms_dtype_size(a->dtype);
  if (a->dtype == MS_F32 && s[0] == 4) {
    float v = (float)a->value, *o = (float *)d[0];
    for (int64_t k = 0; k < n; k++)
      o[k] = v;
    return;
  }
  for (int64_t k = 0; k < n; k++)
    memcpy(d[0] + k * s[0], one, (size_t)es);
}

int ms_cpu_fill(ms_context *ctx, ms_tensor *t, double value) {
  const ms_tensor *ops[1] = {t};
  ms_iter it;
  ms_iter_build(&it, 1, ops, t->shape, t->ndim);
  fill_arg a = {t->dtype, value};
  ms_iter_run(ctx, &it, fill_loop, &a, MS_GRAIN);
  return MS_OK;
}

int ms_cpu_arange(ms_context *ctx, ms_tensor *t, double start, double step) {
  (void)ctx;
  int64_t n = ms_numel(t), es = ms_dtype_size(t->dtype);
  char *p = ms_data(t);
  for (int64_t k = 0; k < n; k++)
    ms_store_f64(p + k * es, t->dtype, start + (double)k * step);
  return MS_OK;
}
