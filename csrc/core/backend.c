/* backend.c: the registry of backend tables, op names and the shared "not supported" message. */
#include "backend.h"

#include <stddef.h>

extern const ms_backend ms_cpu_backend;

static const ms_backend no_cuda = {.name = "cuda"};
static const ms_backend *tables[2] = {&ms_cpu_backend, &no_cuda};

/* Name and table slot of every op id, in ms_op_id order. */
#define E(id, name, field) [id] = {name, offsetof(ms_backend, field)}
static const struct {
  const char *name;
  size_t slot;
} ops[MS_OP_COUNT] = {
    E(MS_OP_FILL, "fill_", fill),
    E(MS_OP_ARANGE, "arange", arange),
    E(MS_OP_COPY, "copy_", copy),
    E(MS_OP_COPY_BETWEEN, "copy_ (between devices)", copy_between),
    E(MS_OP_UNIFORM, "uniform_", uniform),
    E(MS_OP_NORMAL, "normal_", normal),
    E(MS_OP_RANDINT, "randint_", randint),
    E(MS_OP_DROPOUT, "dropout", dropout),
    E(MS_OP_BINARY, "binary", binary),
    E(MS_OP_BINARY_SCALAR, "binary (scalar)", binary_scalar),
    E(MS_OP_UNARY, "unary", unary),
    E(MS_OP_UNARY_BACKWARD, "unary_backward", unary_backward),
    E(MS_OP_WHERE, "where", where),
    E(MS_OP_AXPY, "axpy_", axpy),
    E(MS_OP_REDUCE, "reduce", reduce),
    E(MS_OP_REDUCE_ARG, "reduce_arg", reduce_arg),
    E(MS_OP_MATMUL, "matmul", matmul),
    E(MS_OP_CONV2D, "conv2d", conv2d),
    E(MS_OP_CONV2D_BACKWARD, "conv2d_backward", conv2d_backward),
    E(MS_OP_CONV2D_F32_DW, "conv2d_backward (f32 dw)", conv2d_backward),
    E(MS_OP_BATCH_NORM, "batch_norm", batch_norm),
    E(MS_OP_BATCH_NORM_BACKWARD, "batch_norm_backward", batch_norm_backward),
    E(MS_OP_SYNC_BN_MOMENTS, "batch_norm_moments", sync_bn_moments),
    E(MS_OP_SYNC_BN_GRAD_SUMS, "batch_norm_grad_sums", sync_bn_grad_sums),
    E(MS_OP_SYNC_BN_BACKWARD, "batch_norm_backward_global", sync_bn_backward),
    E(MS_OP_SYNC_BN_PACKET, "batch_norm_stats_packet", sync_bn_packet),
    E(MS_OP_SYNC_BN_MERGE, "batch_norm_merge_stats", sync_bn_merge),
    E(MS_OP_SYNC_BN_PARAM_GRADS, "batch_norm_param_grads", sync_bn_param_grads),
    E(MS_OP_LAYER_NORM, "layer_norm", layer_norm),
    E(MS_OP_LAYER_NORM_BACKWARD, "layer_norm_backward", layer_norm_backward),
    E(MS_OP_MAX_POOL2D, "max_pool2d", max_pool2d),
    E(MS_OP_MAX_POOL2D_BACKWARD, "max_pool2d_backward", max_pool2d_backward),
    E(MS_OP_AVG_POOL2D, "avg_pool2d", avg_pool2d),
    E(MS_OP_AVG_POOL2D_BACKWARD, "avg_pool2d_backward", avg_pool2d_backward),
    E(MS_OP_ADAPTIVE_AVG_POOL2D, "adaptive_avg_pool2d", adaptive_avg_pool2d),
    E(MS_OP_ADAPTIVE_AVG_POOL2D_BACKWARD, "adaptive_avg_pool2d_backward",
      adaptive_avg_pool2d_backward),
    E(MS_OP_INTERPOLATE, "interpolate", interpolate),
    E(MS_OP_INTERPOLATE_BACKWARD, "interpolate_backward", interpolate_backward),
    E(MS_OP_SOFTMAX, "softmax", softmax),
    E(MS_OP_SOFTMAX_BACKWARD, "softmax_backward", softmax_backward),
    E(MS_OP_CROSS_ENTROPY, "cross_entropy", cross_entropy),
    E(MS_OP_CROSS_ENTROPY_BACKWARD, "cross_entropy_backward", cross_entropy_backward),
    E(MS_OP_CAT, "cat", cat),
    E(MS_OP_CONFUSION, "confusion_matrix", confusion),
    E(MS_OP_MT_UNSCALE, "mt_unscale_", mt_unscale),
    E(MS_OP_MT_SCALE_UPDATE, "mt_scale_update", mt_scale_update),
    E(MS_OP_MT_SGD, "mt_sgd_step", mt_sgd),
    E(MS_OP_MT_ADAMW, "mt_adamw_step", mt_adamw),
    E(MS_OP_MT_NORM, "mt_norm", mt_norm),
    E(MS_OP_MT_CLIP, "mt_clip_", mt_clip),
};
#undef E

const char *ms_op_name(ms_op_id op) {
  return (int)op >= 0 && op < MS_OP_COUNT && ops[op].name ? ops[op].name : "op";
}

/* Atomic: contexts (and so registrations) may be made on any thread while others run ops. */
const ms_backend *ms_backend_for(ms_device_type device) {
  return (int)device >= 0 && device <= MS_CUDA ? __atomic_load_n(&tables[device], __ATOMIC_ACQUIRE)
                                               : &no_cuda;
}

void ms_backend_register(ms_device_type device, const ms_backend *be) {
  if ((int)device >= 0 && device <= MS_CUDA && be)
    __atomic_store_n(&tables[device], be, __ATOMIC_RELEASE);
}

static int has_entry(const ms_backend *be, ms_op_id op) {
  if ((int)op < 0 || op >= MS_OP_COUNT) return 0;
  void (*fn)(void);
  memcpy(&fn, (const char *)be + ops[op].slot, sizeof fn);
  return fn != NULL;
}

int ms_unsupported(ms_op_id op, const char *name, const ms_tensor *t, ms_dtype dtype) {
  const ms_backend *be = ms_backend_of(t);
  return ms_fail(MS_ERR_UNSUPPORTED, "%s: not supported on %s for %s (no kernel in the %s backend)",
                 name ? name : ms_op_name(op),
                 ms_device_str(t->storage->device, t->storage->device_index), ms_dtype_name(dtype),
                 be->name);
}

const ms_backend *ms_backend_get(ms_op_id op, const char *name, const ms_tensor *t, ms_dtype dtype,
                                 ms_dtype *compute) {
  const ms_backend *be = ms_backend_of(t);
  ms_dtype c = dtype;
  if (!has_entry(be, op) || !be->supports || !be->supports(op, dtype, &c)) {
    ms_unsupported(op, name, t, dtype);
    return NULL;
  }
  if (compute) *compute = c;
  return be;
}
