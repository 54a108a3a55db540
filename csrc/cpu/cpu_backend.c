/* cpu_backend.c: the CPU backend table (every host device cpu:N) and its precision policy. */
#include "../core/backend.h"
#include "../core/dtype.h"
#include "basic_kernels.h"
#include "confusion.h"
#include "conv_cpu.h"
#include "ew_kernels.h"
#include "mcsl_kernels.h"
#include "multi_tensor.h"
#include "npr_kernels.h"
#include "precision.h"

/* The precision policy of the CPU, in one place (with precision.c, which says per op family
 * whether a half dtype runs natively): the families listed with an f32 compute dtype have f32 and
 * f64 kernels only, so f16 and bf16 compute in f32 (csrc/ops converts in and out); every other
 * family runs each dtype it accepts natively (elementwise ops load f16/bf16 in chunks to float,
 * matmul and softmax convert half types inside their kernels). */
static int cpu_supports(ms_op_id op, ms_dtype dtype, ms_dtype *compute) {
  switch (op) {
  case MS_OP_CONV2D:
  case MS_OP_CONV2D_BACKWARD:
    /* bf16 natively through oneDNN where the CPU has AVX512-BF16 (precision.c) */
    if (!ms_dtype_is_float(dtype)) return 0;
    *compute = ms_cpu_compute_dtype("conv2d", dtype);
    return 1;
  case MS_OP_CONV2D_F32_DW:
    /* f32 weight gradients from bf16 operands: oneDNN's bf16 backward-weights (precision.c) */
    *compute = ms_cpu_compute_dtype("conv2d_f32_dw", dtype);
    return *compute == dtype;
  case MS_OP_BATCH_NORM:
  case MS_OP_BATCH_NORM_BACKWARD:
    /* f16/bf16 natively: loaded and stored as they are, f32 math, f32 statistics */
    if (!ms_dtype_is_float(dtype)) return 0;
    *compute = ms_cpu_compute_dtype("batch_norm", dtype);
    return 1;
  case MS_OP_MAX_POOL2D:
  case MS_OP_MAX_POOL2D_BACKWARD:
  case MS_OP_AVG_POOL2D:
  case MS_OP_AVG_POOL2D_BACKWARD:
  case MS_OP_ADAPTIVE_AVG_POOL2D:
  case MS_OP_ADAPTIVE_AVG_POOL2D_BACKWARD:
    /* f16/bf16 planes converted inside the kernel (f32 math) */
    if (!ms_dtype_is_float(dtype)) return 0;
    *compute = ms_cpu_compute_dtype("pool2d", dtype);
    return 1;
  case MS_OP_INTERPOLATE:
  case MS_OP_INTERPOLATE_BACKWARD:
    /* f16/bf16 rows converted inside the kernel (f32 math, f32 accumulation in backward) */
    if (!ms_dtype_is_float(dtype)) return 0;
    *compute = ms_cpu_compute_dtype("interpolate", dtype);
    return 1;
  case MS_OP_SYNC_BN_MOMENTS:
  case MS_OP_SYNC_BN_GRAD_SUMS:
  case MS_OP_SYNC_BN_BACKWARD:
  case MS_OP_SYNC_BN_PACKET:
  case MS_OP_LAYER_NORM:
  case MS_OP_LAYER_NORM_BACKWARD:
  case MS_OP_CROSS_ENTROPY:
  case MS_OP_CROSS_ENTROPY_BACKWARD:
    if (!ms_dtype_is_float(dtype)) return 0;
    *compute = dtype == MS_F64 ? MS_F64 : MS_F32;
    return 1;
  default: *compute = dtype; return 1;
  }
}

/* a op s: the scalar becomes a 0-d host tensor of dtype sdt, then the binary kernel runs. */
static int cpu_binary_scalar(ms_context *ctx, ms_binop op, ms_dtype ct, const ms_tensor *a,
                             double s, ms_dtype sdt, int reverse, ms_tensor *dst) {
  char buf[8];
  ms_storage ss;
  ms_tensor st;
  if (sdt == MS_I64)
    *(int64_t *)buf = (int64_t)s;
  else
    ms_store_f64(buf, sdt, s);
  int64_t noshape[1] = {1};
  ms_wrap_host(&ss, &st, buf, noshape, 0, sdt);
  ss.device_index = a->storage->device_index;
  return reverse ? ms_cpu_binary(ctx, op, ct, &st, a, dst)
                 : ms_cpu_binary(ctx, op, ct, a, &st, dst);
}

/* Host work is synchronous: an event is complete once recorded, waits have nothing to wait for. */
static int cpu_event_record(ms_context *ctx, ms_event *e, const ms_stream *s) {
  (void)ctx, (void)s;
  e->recorded = 1;
  __atomic_store_n(&e->completed, 1, __ATOMIC_RELEASE);
  return MS_OK;
}
static int cpu_event_wait(ms_context *ctx, const ms_event *e, const ms_stream *s) {
  (void)ctx, (void)e, (void)s;
  return MS_OK;
}
static int cpu_event_synchronize(ms_context *ctx, ms_event *e) {
  (void)ctx, (void)e;
  return MS_OK;
}
static int cpu_event_query(const ms_event *e) {
  return __atomic_load_n(&e->completed, __ATOMIC_ACQUIRE);
}
static void cpu_event_release(ms_event *e) { (void)e; }
static int cpu_stream_synchronize(ms_context *ctx, const ms_stream *s) {
  (void)ctx, (void)s;
  return MS_OK;
}

const ms_backend ms_cpu_backend = {
    .name = "cpu",
    .supports = cpu_supports,
    .fill = ms_cpu_fill,
    .arange = ms_cpu_arange,
    .copy = ms_cpu_copy,
    .copy_between = ms_cpu_copy, /* host devices share host memory */
    .uniform = ms_cpu_uniform,
    .normal = ms_cpu_normal,
    .randint = ms_cpu_randint,
    .dropout = ms_cpu_dropout,
    .binary = ms_cpu_binary,
    .binary_scalar = cpu_binary_scalar,
    .unary = ms_cpu_unary,
    .unary_backward = ms_cpu_unary_backward,
    .where = ms_cpu_where,
    .axpy = ms_cpu_axpy,
    .reduce = ms_cpu_reduce,
    .reduce_arg = ms_cpu_reduce_arg,
    .matmul = ms_cpu_matmul,
    .conv2d = ms_cpu_conv2d,
    .conv2d_backward = ms_cpu_conv2d_backward,
    .batch_norm = ms_cpu_batch_norm,
    .batch_norm_backward = ms_cpu_batch_norm_backward,
    .sync_bn_moments = ms_cpu_sync_bn_moments,
    .sync_bn_grad_sums = ms_cpu_sync_bn_grad_sums,
    .sync_bn_backward = ms_cpu_sync_bn_backward,
    .sync_bn_packet = ms_cpu_sync_bn_packet,
    .sync_bn_merge = ms_cpu_sync_bn_merge,
    .sync_bn_param_grads = ms_cpu_sync_bn_param_grads,
    .layer_norm = ms_cpu_layer_norm,
    .layer_norm_backward = ms_cpu_layer_norm_backward,
    .max_pool2d = ms_cpu_max_pool2d,
    .max_pool2d_backward = ms_cpu_max_pool2d_backward,
    .avg_pool2d = ms_cpu_avg_pool2d,
    .avg_pool2d_backward = ms_cpu_avg_pool2d_backward,
    .adaptive_avg_pool2d = ms_cpu_adaptive_avg_pool2d,
    .adaptive_avg_pool2d_backward = ms_cpu_adaptive_avg_pool2d_backward,
    .interpolate = ms_cpu_interpolate,
    .interpolate_backward = ms_cpu_interpolate_backward,
    .softmax = ms_cpu_softmax,
    .softmax_backward = ms_cpu_softmax_backward,
    .cross_entropy = ms_cpu_cross_entropy,
    .cross_entropy_backward = ms_cpu_cross_entropy_backward,
    .cat = ms_cpu_cat,
    .confusion = ms_cpu_confusion_tensors,
    .mt_unscale = ms_cpu_mt_unscale,
    .mt_scale_update = ms_cpu_mt_scale_update,
    .mt_sgd = ms_cpu_mt_sgd,
    .mt_adamw = ms_cpu_mt_adamw,
    .mt_norm = ms_cpu_mt_norm,
    .mt_clip = ms_cpu_mt_clip,
    .event_record = cpu_event_record,
    .event_wait = cpu_event_wait,
    .event_synchronize = cpu_event_synchronize,
    .event_query = cpu_event_query,
    .event_release = cpu_event_release,
    .stream_synchronize = cpu_stream_synchronize,
};
