/* test_devices.c: C tests of host devices cpu:N (outputs follow their operands' device, copies
 * between cpu:0 and cpu:1, mixed-device errors), the backend table and host events. */
#include <string.h>

#include "core/backend.h"
#include "core/internal.h"
#include "cpu/precision.h"

#include "check.h"

static ms_context *ctx;

static ms_tensor *vec(const float *v, int64_t n, int index) {
  ms_tensor *t = NULL;
  CHECK(ms_from_host(ctx, v, n * 4, &n, 1, MS_F32, MS_CPU, index, &t) == MS_OK);
  return t;
}

static int on(const ms_tensor *t, int index) {
  return t && ms_tensor_device_type(t) == MS_CPU && ms_tensor_device_index(t) == index;
}

/* The op's message names it and both devices. */
static void check_mixed(int status, const char *op) {
  CHECK(status == MS_ERR_DEVICE);
  CHECK(strstr(ms_last_error(), op) == ms_last_error());
  CHECK(strstr(ms_last_error(), "cpu:0") != NULL);
  CHECK(strstr(ms_last_error(), "cpu:1") != NULL);
}

static void test_placement(void) {
  float a[4] = {1, 2, 3, 4}, b[4] = {10, 20, 30, 40};
  ms_tensor *x = vec(a, 4, 1), *y = vec(b, 4, 1), *s = NULL, *r = NULL, *u = NULL, *c = NULL;
  CHECK(on(x, 1));
  CHECK(ms_binary(ctx, MS_ADD, x, y, &s) == MS_OK && on(s, 1));
  float got[4];
  CHECK(ms_to_host(ctx, s, got, sizeof got) == MS_OK);
  CHECK(got[0] == 11 && got[3] == 44);
  CHECK(ms_reduce(ctx, MS_RED_SUM, x, NULL, 0, 0, 0, &r) == MS_OK && on(r, 1));
  double sum = 0;
  CHECK(ms_read_f64(ctx, r, &sum, 1) == MS_OK && sum == 10);
  CHECK(ms_unary(ctx, MS_RELU, x, 0, 0, &u) == MS_OK && on(u, 1));
  CHECK(ms_cast(ctx, x, MS_F64, &c) == MS_OK && on(c, 1));
  /* ops whose outputs used to land on cpu:0 */
  int64_t shp[4] = {1, 1, 2, 2};
  ms_tensor *x4 = NULL, *w4 = NULL, *conv = NULL, *mm = NULL, *xs[2] = {x, y}, *cat = NULL;
  CHECK(ms_view(x, shp, 4, &x4) == MS_OK);
  int64_t wshape[4] = {1, 1, 1, 1};
  CHECK(ms_full(ctx, wshape, 4, MS_F32, MS_CPU, 1, 2.0, &w4) == MS_OK && on(w4, 1));
  ms_conv2d_params p = {{1, 1}, {0, 0}, {1, 1}, 1};
  CHECK(ms_conv2d(ctx, x4, w4, NULL, &p, &conv) == MS_OK && on(conv, 1));
  CHECK(ms_to_host(ctx, conv, got, sizeof got) == MS_OK && got[2] == 6);
  CHECK(ms_matmul(ctx, x, y, &mm) == MS_OK && on(mm, 1));
  CHECK(ms_cat(ctx, xs, 2, 0, &cat) == MS_OK && on(cat, 1) && ms_tensor_size(cat, 0) == 8);
  ms_tensor *ar = NULL;
  CHECK(ms_arange(ctx, 0, 3, 1, MS_F32, MS_CPU, 1, &ar) == MS_OK && on(ar, 1));
  ms_tensor *bad = NULL;
  CHECK(ms_empty(ctx, shp, 1, MS_F32, MS_CPU, MS_MAX_CPU_DEVICES, &bad) == MS_ERR_DEVICE);
  CHECK(strstr(ms_last_error(), "cpu:8") != NULL);
  ms_tensor *ts[] = {x, y, s, r, u, c, x4, w4, conv, mm, cat, ar};
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
    ms_tensor_free(ts[i]);
}

static void test_copy_between(void) {
  float a[3] = {5, 6, 7};
  ms_tensor *x0 = vec(a, 3, 0), *x1 = NULL, *back = NULL;
  CHECK(ms_to_device(ctx, x0, MS_CPU, 1, &x1) == MS_OK && on(x1, 1));
  CHECK(!ms_tensor_same_storage(x0, x1)); /* a copy, not an alias */
  CHECK(ms_fill_(ctx, x1, 1.0) == MS_OK);
  float got[3];
  CHECK(ms_to_host(ctx, x0, got, sizeof got) == MS_OK && got[0] == 5 && got[2] == 7);
  CHECK(ms_to_device(ctx, x1, MS_CPU, 0, &back) == MS_OK && on(back, 0));
  CHECK(ms_to_host(ctx, back, got, sizeof got) == MS_OK && got[1] == 1);
  CHECK(ms_copy_(ctx, x0, x1) == MS_OK); /* copy_ between host devices is allowed */
  CHECK(ms_to_host(ctx, x0, got, sizeof got) == MS_OK && got[0] == 1);
  ms_tensor_free(x0);
  ms_tensor_free(x1);
  ms_tensor_free(back);
}

static void test_mixed_errors(void) {
  float a[4] = {1, 2, 3, 4};
  ms_tensor *x0 = vec(a, 4, 0), *x1 = vec(a, 4, 1), *o = NULL;
  check_mixed(ms_binary(ctx, MS_ADD, x0, x1, &o), "add");
  CHECK(o == NULL);
  check_mixed(ms_matmul(ctx, x0, x1, &o), "matmul");
  check_mixed(ms_axpy_(ctx, x0, 1.0, x1), "axpy_");
  ms_tensor *xs[2] = {x0, x1};
  check_mixed(ms_cat(ctx, xs, 2, 0, &o), "cat");
  /* loss target on another device */
  int64_t lshape[2] = {2, 2}, tshape[1] = {2};
  int64_t tv[2] = {0, 1};
  ms_tensor *logits = NULL, *target = NULL, *lse = NULL;
  CHECK(ms_view(x0, lshape, 2, &logits) == MS_OK);
  CHECK(ms_from_host(ctx, tv, sizeof tv, tshape, 1, MS_I64, MS_CPU, 1, &target) == MS_OK);
  check_mixed(ms_cross_entropy(ctx, logits, target, NULL, -100, MS_REDUCE_MEAN, &o, &lse),
              "cross_entropy");
  /* batch norm running stats on another device */
  int64_t bshape[4] = {2, 2, 1, 1}, cshape[1] = {2};
  ms_tensor *xb = NULL, *rm = NULL, *rv = NULL, *sm = NULL, *si = NULL;
  CHECK(ms_view(x0, bshape, 4, &xb) == MS_OK);
  CHECK(ms_full(ctx, cshape, 1, MS_F32, MS_CPU, 1, 0.0, &rm) == MS_OK);
  CHECK(ms_full(ctx, cshape, 1, MS_F32, MS_CPU, 1, 1.0, &rv) == MS_OK);
  check_mixed(ms_batch_norm(ctx, xb, NULL, NULL, rm, rv, 1, 0.1, 1e-5, &o, &sm, &si), "batch_norm");
  /* where's mask on another device */
  ms_tensor *mask = NULL;
  CHECK(ms_full(ctx, tshape, 1, MS_BOOL, MS_CPU, 1, 1.0, &mask) == MS_OK);
  check_mixed(ms_where(ctx, mask, x0, x0, &o), "where");
  ms_tensor *ts[] = {x0, x1, logits, target, xb, rm, rv, mask};
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
    ms_tensor_free(ts[i]);
}

/* The CPU precision policy and the shared message of a missing entry. */
static void test_backend_table(void) {
  const ms_backend *cpu = ms_backend_for(MS_CPU);
  ms_dtype c = MS_BOOL;
  CHECK(cpu->supports(MS_OP_CONV2D, MS_F16, &c) && c == MS_F32);
  /* bf16: native where oneDNN runs avx512_core_bf16 (precision.c decides), else f32 */
  ms_dtype want_bf16 = ms_cpu_compute_dtype("conv2d", MS_BF16);
  CHECK(want_bf16 == MS_BF16 || want_bf16 == MS_F32);
  CHECK(cpu->supports(MS_OP_CONV2D, MS_BF16, &c) && c == want_bf16);
  CHECK(cpu->supports(MS_OP_CONV2D_BACKWARD, MS_BF16, &c) && c == want_bf16);
  /* batch norm and resize load and store half natively (f32 math inside); layer norm converts */
  CHECK(cpu->supports(MS_OP_BATCH_NORM, MS_BF16, &c) && c == MS_BF16);
  CHECK(cpu->supports(MS_OP_BATCH_NORM_BACKWARD, MS_F16, &c) && c == MS_F16);
  CHECK(cpu->supports(MS_OP_INTERPOLATE, MS_BF16, &c) && c == MS_BF16);
  CHECK(cpu->supports(MS_OP_INTERPOLATE_BACKWARD, MS_F16, &c) && c == MS_F16);
  CHECK(cpu->supports(MS_OP_INTERPOLATE, MS_F64, &c) && c == MS_F64);
  CHECK(!cpu->supports(MS_OP_INTERPOLATE, MS_I32, &c));
  CHECK(cpu->supports(MS_OP_LAYER_NORM, MS_BF16, &c) && c == MS_F32);
  CHECK(cpu->supports(MS_OP_CONV2D, MS_F64, &c) && c == MS_F64);
  CHECK(!cpu->supports(MS_OP_BATCH_NORM, MS_I64, &c));
  CHECK(cpu->supports(MS_OP_BINARY, MS_F16, &c) && c == MS_F16);
  CHECK(strcmp(ms_op_name(MS_OP_BATCH_NORM_BACKWARD), "batch_norm_backward") == 0);
  /* a table without conv2d and without f16 anywhere */
  ms_backend partial = *cpu;
  partial.name = "partial";
  partial.conv2d = NULL;
  ms_backend_register(MS_CPU, &partial);
  float v[4] = {1, 2, 3, 4};
  int64_t s4[4] = {1, 1, 2, 2}, w4[4] = {1, 1, 1, 1};
  ms_tensor *x = NULL, *w = NULL, *y = NULL;
  CHECK(ms_from_host(ctx, v, sizeof v, s4, 4, MS_F32, MS_CPU, 1, &x) == MS_OK);
  CHECK(ms_full(ctx, w4, 4, MS_F32, MS_CPU, 1, 1.0, &w) == MS_OK);
  ms_conv2d_params p = {{1, 1}, {0, 0}, {1, 1}, 1};
  CHECK(ms_conv2d(ctx, x, w, NULL, &p, &y) == MS_ERR_UNSUPPORTED && y == NULL);
  CHECK(strcmp(ms_last_error(),
               "conv2d: not supported on cpu:1 for f32 (no kernel in the partial backend)") == 0);
  ms_tensor *r = NULL;
  CHECK(ms_unary(ctx, MS_RELU, x, 0, 0, &r) == MS_OK); /* other entries still run */
  ms_tensor_free(r);
  ms_backend_register(MS_CPU, cpu);
  CHECK(ms_conv2d(ctx, x, w, NULL, &p, &y) == MS_OK);
  ms_tensor_free(x);
  ms_tensor_free(w);
  ms_tensor_free(y);
}

/* Host events are complete once recorded; an event never recorded is not. */
static void test_events(void) {
  const ms_stream *s = ms_context_stream(ctx, MS_CPU, 1);
  CHECK(s && s->device == MS_CPU && s->index == 1);
  ms_event e = {0};
  CHECK(ms_event_query(&e) == 0);
  CHECK(ms_event_record(ctx, &e, s) == MS_OK);
  CHECK(ms_event_query(&e) == 1 && e.index == 1);
  CHECK(ms_event_wait(ctx, &e, s) == MS_OK && ms_event_synchronize(ctx, &e) == MS_OK);
  CHECK(ms_stream_synchronize(ctx, s) == MS_OK);
  ms_event_release(&e);
}

int main(void) {
  CHECK(ms_context_new(&ctx) == MS_OK);
  test_placement();
  test_copy_between();
  test_mixed_errors();
  test_backend_table();
  test_events();
  ms_context_free(ctx);
  printf("%d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}
