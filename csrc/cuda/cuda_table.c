/* cuda_table.c: the CUDA backend table and its precision policy, registered at context init. */
#include "../core/backend.h"
#include "cuda_backend.h"
#include "cuda_multi_tensor.h"

/* The families ported so far; every dtype they accept runs natively. */
static int cuda_supports(ms_op_id op, ms_dtype dtype, ms_dtype *compute) {
  switch (op) {
  case MS_OP_FILL:
  case MS_OP_COPY:
  case MS_OP_COPY_BETWEEN:
  case MS_OP_UNIFORM:
  case MS_OP_NORMAL:
  case MS_OP_RANDINT:
  case MS_OP_DROPOUT:
  case MS_OP_BINARY:
  case MS_OP_BINARY_SCALAR:
  case MS_OP_UNARY:
  case MS_OP_UNARY_BACKWARD:
  case MS_OP_WHERE:
  case MS_OP_AXPY:
  case MS_OP_REDUCE:
  case MS_OP_MT_UNSCALE:
  case MS_OP_MT_SCALE_UPDATE:
  case MS_OP_MT_SGD:
  case MS_OP_MT_ADAMW:
  case MS_OP_MT_NORM:
  case MS_OP_MT_CLIP: *compute = dtype; return 1;
  default: return 0;
  }
}

/* reduce.cu takes no parameter p (var, the one reduction that uses it, reports itself missing). */
static int cuda_reduce(ms_context *ctx, ms_redop op, const ms_tensor *x, const int *red, double p,
                       ms_tensor *out) {
  (void)p;
  return ms_cuda_reduce(ctx, op, x, red, out);
}

static const ms_backend cuda_backend = {
    .name = "cuda",
    .supports = cuda_supports,
    .fill = ms_cuda_fill,
    .copy = ms_cuda_copy,
    .copy_between = ms_cuda_copy_between,
    .uniform = ms_cuda_uniform,
    .normal = ms_cuda_normal,
    .randint = ms_cuda_randint,
    .dropout = ms_cuda_dropout,
    .binary = ms_cuda_binary,
    .binary_scalar = ms_cuda_binary_scalar,
    .unary = ms_cuda_unary,
    .unary_backward = ms_cuda_unary_backward,
    .where = ms_cuda_where,
    .axpy = ms_cuda_axpy,
    .reduce = cuda_reduce,
    .mt_unscale = ms_cuda_mt_unscale,
    .mt_scale_update = ms_cuda_mt_scale_update,
    .mt_sgd = ms_cuda_mt_sgd,
    .mt_adamw = ms_cuda_mt_adamw,
    .mt_norm = ms_cuda_mt_norm,
    .mt_clip = ms_cuda_mt_clip,
    .event_record = ms_cuda_event_record,
    .event_wait = ms_cuda_event_wait,
    .event_synchronize = ms_cuda_event_synchronize,
    .event_query = ms_cuda_event_query,
    .event_release = ms_cuda_event_release,
    .stream_synchronize = ms_cuda_stream_synchronize,
};

void ms_cuda_register_backend(void) { ms_backend_register(MS_CUDA, &cuda_backend); }
