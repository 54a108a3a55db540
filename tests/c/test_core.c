/* test_core.c: C unit tests of the tensor core: views, refcounts, memory stats, errors, Philox,
 * f16. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/dtype.h"
#include "core/internal.h"

#include "check.h"

static ms_context *ctx;

static ms_tensor *arange_f32(int64_t n) {
  ms_tensor *t = NULL;
  CHECK(ms_arange(ctx, 0, (double)n, 1, MS_F32, MS_CPU, 0, &t) == MS_OK);
  return t;
}

static float at(const ms_tensor *t, int64_t i0, int64_t i1) {
  int64_t off = t->offset + i0 * t->strides[0] + (t->ndim > 1 ? i1 * t->strides[1] : 0);
  return ((float *)t->storage->data)[off];
}

static void test_views(void) {
  ms_tensor *a = arange_f32(12), *m = NULL, *tr = NULL, *s = NULL, *flat = NULL, *e = NULL;
  int64_t shape[2] = {3, 4};
  CHECK(ms_view(a, shape, 2, &m) == MS_OK);
  CHECK(m->strides[0] == 4 && m->strides[1] == 1);
  CHECK(at(m, 2, 3) == 11.0f);
  CHECK(ms_transpose(m, 0, 1, &tr) == MS_OK);
  CHECK(tr->shape[0] == 4 && tr->shape[1] == 3 && at(tr, 3, 2) == 11.0f);
  CHECK(!ms_is_contiguous(tr));
  int64_t twelve = 12;
  /* A transposed matrix cannot be flattened without a copy. */
  CHECK(ms_view(tr, &twelve, 1, &flat) == MS_ERR_INVALID);
  CHECK(strstr(ms_last_error(), "without a copy") != NULL);
  CHECK(ms_slice(m, 1, 1, 4, 2, &s) == MS_OK); /* columns 1 and 3 */
  CHECK(s->shape[1] == 2 && at(s, 1, 0) == 5.0f && at(s, 1, 1) == 7.0f);
  ms_tensor *sel = NULL;
  CHECK(ms_select(m, 0, -1, &sel) == MS_OK);
  CHECK(sel->ndim == 1 && ((float *)sel->storage->data)[sel->offset] == 8.0f);
  CHECK(ms_select(m, 0, 3, &flat) == MS_ERR_INVALID);
  int64_t col[2] = {3, 1}, big[3] = {2, 3, 4};
  ms_tensor *c = NULL;
  CHECK(ms_full(ctx, col, 2, MS_F32, MS_CPU, 0, 1.0, &c) == MS_OK);
  CHECK(ms_expand(c, big, 3, &e) == MS_OK);
  CHECK(e->strides[0] == 0 && e->strides[2] == 0 && e->shape[2] == 4);
  ms_tensor *u = NULL, *sq = NULL;
  CHECK(ms_unsqueeze(m, 1, &u) == MS_OK && u->ndim == 3 && u->shape[1] == 1);
  CHECK(ms_squeeze_all(u, &sq) == MS_OK && sq->ndim == 2);
  int perm[2] = {1, 1};
  CHECK(ms_permute(m, perm, 2, &flat) == MS_ERR_INVALID);
  /* Views share the storage; it survives until the last one goes. */
  CHECK(m->storage == a->storage && a->storage->refcount == 7);
  ms_tensor *views[] = {m, tr, s, sel, e, u, sq};
  for (size_t i = 0; i < sizeof views / sizeof *views; i++)
    ms_tensor_free(views[i]);
  CHECK(a->storage->refcount == 1);
  ms_tensor_free(a);
  ms_tensor_free(c);
}

static void test_as_strided_bounds(void) {
  ms_tensor *a = arange_f32(6), *v = NULL;
  int64_t shape[1] = {4}, strides[1] = {2};
  CHECK(ms_as_strided(a, shape, strides, 1, 0, &v) == MS_ERR_INVALID);
  CHECK(strstr(ms_last_error(), "outside the storage") != NULL);
  shape[0] = 3;
  CHECK(ms_as_strided(a, shape, strides, 1, 0, &v) == MS_OK);
  ms_tensor_free(v);
  ms_tensor_free(a);
}

static void test_memory_stats(void) {
  ms_memory_stats before, during, after;
  CHECK(ms_memory_stats_get(MS_CPU, 0, &before) == MS_OK);
  int64_t shape[2] = {100, 10};
  ms_tensor *t = NULL, *v = NULL;
  CHECK(ms_empty(ctx, shape, 2, MS_F64, MS_CPU, 0, &t) == MS_OK);
  CHECK(ms_tensor_alias(t, &v) == MS_OK);
  CHECK(ms_memory_stats_get(MS_CPU, 0, &during) == MS_OK);
  CHECK(during.allocated - before.allocated == 8000);
  CHECK(during.storages - before.storages == 1);
  ms_tensor_free(t);
  CHECK(ms_memory_stats_get(MS_CPU, 0, &after) == MS_OK);
  CHECK(after.allocated == during.allocated); /* the alias still holds it */
  ms_tensor_free(v);
  CHECK(ms_memory_stats_get(MS_CPU, 0, &after) == MS_OK);
  CHECK(after.allocated == before.allocated && after.peak >= during.allocated);
}

static void test_host_cache(void) {
  int64_t n[1] = {300000}; /* 1.2 MB of f32: a cached size class */
  ms_tensor *a = NULL, *b = NULL;
  CHECK(ms_empty(ctx, n, 1, MS_F32, MS_CPU, 0, &a) == MS_OK);
  void *pa = a->storage->data;
  ms_tensor_free(a);
  ms_memory_stats st;
  CHECK(ms_memory_stats_get(MS_CPU, 0, &st) == MS_OK);
  CHECK(st.reserved - st.allocated >= 1200000); /* the freed block stays cached */
  CHECK(ms_empty(ctx, n, 1, MS_F32, MS_CPU, 0, &b) == MS_OK);
  CHECK(b->storage->data == pa); /* the freed block is reused */
  CHECK(((uintptr_t)b->storage->data & 63) == 0);
  ms_tensor_free(b);
  ms_memory_stats before, after;
  CHECK(ms_memory_stats_get(MS_CPU, 0, &before) == MS_OK);
  CHECK(ms_memory_empty_cache(MS_CPU, 0) == MS_OK);
  CHECK(ms_memory_stats_get(MS_CPU, 0, &after) == MS_OK);
  CHECK(before.reserved - after.reserved >= 1200000);
  CHECK(after.allocated == before.allocated);
}

static void test_errors(void) {
  ms_tensor *t = NULL;
  int64_t neg[2] = {2, -3};
  CHECK(ms_empty(ctx, neg, 2, MS_F32, MS_CPU, 0, &t) == MS_ERR_INVALID);
  CHECK(strstr(ms_last_error(), "[2, -3]") != NULL);
  CHECK(ms_last_status() == MS_ERR_INVALID);
  int64_t ok[1] = {4};
  CHECK(ms_empty(ctx, ok, 1, (ms_dtype)42, MS_CPU, 0, &t) == MS_ERR_DTYPE);
  CHECK(ms_empty(ctx, ok, 1, MS_F32, MS_CUDA, 0, &t) == MS_ERR_UNSUPPORTED || ms_has_cuda());
  CHECK(ms_arange(ctx, 0, 1, 0, MS_F32, MS_CPU, 0, &t) == MS_ERR_INVALID);
  float data[3] = {1, 2, 3};
  CHECK(ms_from_host(ctx, data, 8, ok, 1, MS_F32, MS_CPU, 0, &t) == MS_ERR_INVALID);
  CHECK(strstr(ms_last_error(), "8 bytes") != NULL);
  CHECK(ms_view(NULL, ok, 1, &t) == MS_ERR_INVALID);
  ms_tensor *a = arange_f32(4), *b = arange_f32(3);
  CHECK(ms_copy_(ctx, a, b) == MS_ERR_INVALID);
  CHECK(strstr(ms_last_error(), "[4]") && strstr(ms_last_error(), "[3]"));
  ms_tensor_free(a);
  ms_tensor_free(b);
}

static void test_copy_cast(void) {
  ms_tensor *a = arange_f32(6), *m = NULL, *tr = NULL, *c = NULL, *h = NULL, *back = NULL;
  int64_t shape[2] = {2, 3};
  CHECK(ms_view(a, shape, 2, &m) == MS_OK);
  CHECK(ms_transpose(m, 0, 1, &tr) == MS_OK);
  CHECK(ms_contiguous(ctx, tr, &c) == MS_OK);
  float want[6] = {0, 3, 1, 4, 2, 5};
  CHECK(memcmp(c->storage->data, want, sizeof want) == 0);
  CHECK(ms_cast(ctx, tr, MS_F16, &h) == MS_OK);
  CHECK(ms_cast(ctx, h, MS_F64, &back) == MS_OK);
  double got[6];
  CHECK(ms_read_f64(ctx, back, got, 6) == MS_OK);
  for (int i = 0; i < 6; i++)
    CHECK(got[i] == want[i]);
  ms_tensor *i64 = NULL;
  ms_tensor *neg = NULL;
  CHECK(ms_full(ctx, shape, 2, MS_F32, MS_CPU, 0, -2.7, &neg) == MS_OK);
  CHECK(ms_cast(ctx, neg, MS_I64, &i64) == MS_OK);
  CHECK(((int64_t *)i64->storage->data)[0] == -2); /* truncation toward zero */
  ms_tensor *all[] = {a, m, tr, c, h, back, i64, neg};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    ms_tensor_free(all[i]);
}

static void test_philox(void) {
  /* Known-answer vectors of Philox4x32-10 (Random123 kat_vectors). */
  uint32_t o[4];
  ms_philox4x32(0, 0, 0, o);
  CHECK(o[0] == 0x6627e8d5u && o[1] == 0xe169c58du && o[2] == 0xbc57ac4cu && o[3] == 0x9b00dbd8u);
  ms_philox4x32(0xffffffffffffffffull, 0xffffffffffffffffull, 0xffffffffffffffffull, o);
  CHECK(o[0] == 0x408f276du && o[1] == 0x41c83b0eu && o[2] == 0xa20bc7c6u && o[3] == 0x6d5451fdu);
  /* Generators advance by whole blocks and restart exactly from (seed, offset). */
  ms_generator g = {7, 0};
  int64_t n[1] = {10};
  ms_tensor *x = NULL, *y = NULL;
  CHECK(ms_empty(ctx, n, 1, MS_F32, MS_CPU, 0, &x) == MS_OK);
  CHECK(ms_empty(ctx, n, 1, MS_F32, MS_CPU, 0, &y) == MS_OK);
  CHECK(ms_uniform_(ctx, &g, x, 0, 1) == MS_OK);
  CHECK(g.offset == 3);
  g.offset = 0;
  CHECK(ms_uniform_(ctx, &g, y, 0, 1) == MS_OK);
  CHECK(memcmp(x->storage->data, y->storage->data, 40) == 0);
  ms_tensor_free(x);
  ms_tensor_free(y);
}

static void test_half(void) {
  const float vals[] = {0.0f,           1.0f,           -2.5f,          65504.0f,
                        6.1035156e-05f, 5.9604645e-08f, 0.333251953125f};
  for (size_t i = 0; i < sizeof vals / sizeof *vals; i++)
    CHECK(ms_f16_to_f32(ms_f32_to_f16(vals[i])) == vals[i]);
  CHECK(ms_f32_to_f16(65520.0f) == 0x7c00);           /* rounds to inf */
  CHECK(ms_f32_to_f16(1.0f + 1.0f / 4096) == 0x3c00); /* ties to even */
  CHECK(isnan(ms_f16_to_f32(ms_f32_to_f16(NAN))));
  CHECK(ms_bf16_to_f32(ms_f32_to_bf16(1.0f + 1.0f / 256)) == 1.0f); /* tie to even */
  CHECK(ms_bf16_to_f32(ms_f32_to_bf16(3.0f)) == 3.0f);
}

static void test_promotion(void) {
  CHECK(ms_promote(MS_F16, MS_BF16) == MS_F32);
  CHECK(ms_promote(MS_I64, MS_F16) == MS_F16);
  CHECK(ms_promote(MS_U8, MS_I32) == MS_I32);
  CHECK(ms_promote(MS_BOOL, MS_U8) == MS_U8);
  ms_tensor *vec = NULL, *scal = NULL;
  int64_t n[1] = {3};
  CHECK(ms_empty(ctx, n, 1, MS_F16, MS_CPU, 0, &vec) == MS_OK);
  CHECK(ms_empty(ctx, NULL, 0, MS_F64, MS_CPU, 0, &scal) == MS_OK);
  CHECK(ms_promote_tensors(vec, scal) == MS_F16); /* 0-dim of the same kind does not widen */
  ms_tensor_free(vec);
  ms_tensor_free(scal);
}

int main(void) {
  CHECK(ms_context_new(&ctx) == MS_OK);
  test_views();
  test_as_strided_bounds();
  test_memory_stats();
  test_host_cache();
  test_errors();
  test_copy_cast();
  test_philox();
  test_half();
  test_promotion();
  ms_context_free(ctx);
  printf("%d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}
