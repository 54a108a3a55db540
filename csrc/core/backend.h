/* backend.h: the backend table, one per device type: kernels, precision policy, streams/events.
 *
 * An op in csrc/ops validates, asks ms_backend_get(op id, name, operand, dtype, &compute) for the
 * operand's table (NULL, with the shared "not supported" message, when the entry is missing or
 * `supports` refuses the dtype), converts to the compute dtype, allocates outputs on the operand's
 * device and calls the entry.
 * - Adding an op to a backend: one kernel file (csrc/cpu/x.c, csrc/cuda/x.cu) and one line in
 *   that backend's table (cpu/cpu_backend.c, cuda/cuda_table.c), plus its case in `supports`.
 * - Adding an op family: an id below, its name and slot in core/backend.c, the entry in struct
 *   ms_backend, then as above. */
#ifndef MS_BACKEND_H
#define MS_BACKEND_H
#include "conv_geom.h"
#include "internal.h"

/* One id per table entry; `supports` and the shared "not supported" message use them. */
typedef enum ms_op_id {
  MS_OP_FILL,
  MS_OP_ARANGE,
  MS_OP_COPY,
  MS_OP_COPY_BETWEEN,
  MS_OP_UNIFORM,
  MS_OP_NORMAL,
  MS_OP_RANDINT,
  MS_OP_DROPOUT,
  MS_OP_BINARY,
  MS_OP_BINARY_SCALAR,
  MS_OP_UNARY,
  MS_OP_UNARY_BACKWARD,
  MS_OP_WHERE,
  MS_OP_AXPY,
  MS_OP_REDUCE,
  MS_OP_REDUCE_ARG,
  MS_OP_MATMUL,
  MS_OP_CONV2D,
  MS_OP_CONV2D_BACKWARD,
  /* a query, not an entry of its own (conv2d_backward's): supports(.., dtype, &c) with c == dtype
   * says conv2d_backward writes f32 dw / db beside operands of that dtype */
  MS_OP_CONV2D_F32_DW,
  MS_OP_BATCH_NORM,
  MS_OP_BATCH_NORM_BACKWARD,
  MS_OP_SYNC_BN_MOMENTS,
  MS_OP_SYNC_BN_GRAD_SUMS,
  MS_OP_SYNC_BN_BACKWARD,
  MS_OP_SYNC_BN_PACKET,
  MS_OP_SYNC_BN_MERGE,
  MS_OP_SYNC_BN_PARAM_GRADS,
  MS_OP_LAYER_NORM,
  MS_OP_LAYER_NORM_BACKWARD,
  MS_OP_MAX_POOL2D,
  MS_OP_MAX_POOL2D_BACKWARD,
  MS_OP_AVG_POOL2D,
  MS_OP_AVG_POOL2D_BACKWARD,
  MS_OP_ADAPTIVE_AVG_POOL2D,
  MS_OP_ADAPTIVE_AVG_POOL2D_BACKWARD,
  MS_OP_INTERPOLATE,
  MS_OP_INTERPOLATE_BACKWARD,
  MS_OP_SOFTMAX,
  MS_OP_SOFTMAX_BACKWARD,
  MS_OP_CROSS_ENTROPY,
  MS_OP_CROSS_ENTROPY_BACKWARD,
  MS_OP_CAT,
  MS_OP_CONFUSION,
  MS_OP_MT_UNSCALE,
  MS_OP_MT_SCALE_UPDATE,
  MS_OP_MT_SGD,
  MS_OP_MT_ADAMW,
  MS_OP_MT_NORM,
  MS_OP_MT_CLIP,
  MS_OP_COUNT
} ms_op_id;

/* The op's name as users see it ("conv2d", "batch_norm_backward"). */
const char *ms_op_name(ms_op_id op);

/* Where a confusion kernel met a value it cannot count: flat index (-1: none), value, which input.
 */
typedef struct ms_bad_value {
  int64_t index;
  int64_t value;
  int in_pred; /* 1: the prediction was out of range, 0: the label */
} ms_bad_value;

/* Kernel contracts: tensors in, tensors out, all on the backend's device, outputs allocated by
 * csrc/ops on the operands' device. "contiguous" means what it says; "compute dtype" is the dtype
 * `supports` chose (csrc/ops converts in and out). A NULL entry is "not supported". */
typedef struct ms_backend {
  const char *name; /* "cpu", "cuda" */

  /* Precision policy: 1 when the backend runs op for operands of dtype, with *compute the dtype
   * it computes in (dtype itself: native; else csrc/ops converts to *compute and back). */
  int (*supports)(ms_op_id op, ms_dtype dtype, ms_dtype *compute);

  /* creation, copies, random */
  int (*fill)(ms_context *ctx, ms_tensor *t, double value);
  int (*arange)(ms_context *ctx, ms_tensor *t, double start, double step); /* t contiguous 1-d */
  int (*copy)(ms_context *ctx, ms_tensor *dst, const ms_tensor *src);      /* same device */
  /* dst and src on different devices, one of them this backend's. */
  int (*copy_between)(ms_context *ctx, ms_tensor *dst, const ms_tensor *src);
  int (*uniform)(ms_context *ctx, ms_generator *gen, ms_tensor *t, double low, double high);
  int (*normal)(ms_context *ctx, ms_generator *gen, ms_tensor *t, double mean, double std);
  int (*randint)(ms_context *ctx, ms_generator *gen, ms_tensor *t, int64_t low, int64_t high);
  /* x contiguous; out and mask contiguous like x */
  int (*dropout)(ms_context *ctx, ms_generator *gen, const ms_tensor *x, double p, ms_tensor *out,
                 ms_tensor *mask);

  /* elementwise: any dtypes and strides, broadcast to dst; ct the compute dtype */
  int (*binary)(ms_context *ctx, ms_binop op, ms_dtype ct, const ms_tensor *a, const ms_tensor *b,
                ms_tensor *dst);
  /* dst = a op s (reverse: s op a); the scalar is held in dtype sdt first */
  int (*binary_scalar)(ms_context *ctx, ms_binop op, ms_dtype ct, const ms_tensor *a, double s,
                       ms_dtype sdt, int reverse, ms_tensor *dst);
  int (*unary)(ms_context *ctx, ms_unop op, ms_dtype ct, const ms_tensor *x, double p0, double p1,
               ms_tensor *dst);
  int (*unary_backward)(ms_context *ctx, ms_unop op, const ms_tensor *gout, const ms_tensor *x,
                        const ms_tensor *y, double p0, double p1, ms_tensor *gin);
  int (*where)(ms_context *ctx, const ms_tensor *cond, const ms_tensor *a, const ms_tensor *b,
               ms_tensor *dst);
  int (*axpy)(ms_context *ctx, ms_tensor *dst, double alpha, const ms_tensor *src);

  /* reductions: x contiguous, red[i] != 0 marks reduced dims, out contiguous of the kept shape */
  int (*reduce)(ms_context *ctx, ms_redop op, const ms_tensor *x, const int *red, double p,
                ms_tensor *out);
  /* x contiguous [outer, n, inner]; values/indices contiguous [outer, inner] */
  int (*reduce_arg)(ms_context *ctx, ms_redop op, const ms_tensor *x, int64_t outer, int64_t n,
                    int64_t inner, ms_tensor *values, ms_tensor *indices);

  /* out [batch..., n, m] contiguous = a x b, operands expanded to out's batch dims */
  int (*matmul)(ms_context *ctx, const ms_tensor *a, const ms_tensor *b, ms_tensor *out);

  /* conv2d: contiguous operands of the compute dtype, geometry validated; NULL = not wanted */
  int (*conv2d)(ms_context *ctx, const ms_conv_geom *g, const ms_tensor *x, const ms_tensor *w,
                const ms_tensor *b, ms_tensor *y);
  int (*conv2d_backward)(ms_context *ctx, const ms_conv_geom *g, const ms_tensor *gy,
                         const ms_tensor *x, const ms_tensor *w, ms_tensor *dx, ms_tensor *dw,
                         ms_tensor *db);

  /* batch norm, x contiguous [N, C, S...] of the compute dtype; weight, bias, running stats 1-d
   * [C] of any float dtype (or NULL). Training: batch statistics, running stats updated in place
   * (momentum, unbiased variance) when given and N*S > 1; eval: running stats used. Writes y
   * (x's shape and dtype) and save_mean / save_invstd ([C], compute dtype). */
  int (*batch_norm)(ms_context *ctx, const ms_tensor *x, const ms_tensor *weight,
                    const ms_tensor *bias, ms_tensor *running_mean, ms_tensor *running_var,
                    int training, double momentum, double eps, ms_tensor *y, ms_tensor *save_mean,
                    ms_tensor *save_invstd);
  /* gy, x contiguous of the compute dtype; dx like x, dweight / dbias [C] (any float dtype); any
   * of the three may be NULL. */
  int (*batch_norm_backward)(ms_context *ctx, const ms_tensor *gy, const ms_tensor *x,
                             const ms_tensor *weight, const ms_tensor *save_mean,
                             const ms_tensor *save_invstd, int training, ms_tensor *dx,
                             ms_tensor *dweight, ms_tensor *dbias);
  /* SyncBatchNorm's per-rank pieces, x and gy contiguous [N, C, S...] of the compute dtype;
   * mean, invstd, weight 1-d [C] of any float dtype (weight may be NULL); out / sums contiguous
   * f64 [2, C]: moments writes (mean, biased var), grad_sums (sum gy, sum gy * (x - mean));
   * backward writes dx (x's shape and dtype) from the globally reduced sums over count values. */
  int (*sync_bn_moments)(ms_context *ctx, const ms_tensor *x, ms_tensor *out);
  int (*sync_bn_grad_sums)(ms_context *ctx, const ms_tensor *gy, const ms_tensor *x,
                           const ms_tensor *mean, ms_tensor *out);
  int (*sync_bn_backward)(ms_context *ctx, const ms_tensor *gy, const ms_tensor *x,
                          const ms_tensor *weight, const ms_tensor *mean, const ms_tensor *invstd,
                          const ms_tensor *sums, double count, ms_tensor *dx);
  /* packet: x contiguous of the compute dtype, out contiguous f64 [2C + 1] (count, mean,
   * count * var). merge: all contiguous f64 [W, 2C + 1]; mean / invstd ([C], the caller's dtype),
   * mean64 / var64 (f64 [C]) contiguous; rm / rv 1-d [C] float or NULL, updated in place;
   * *count gets the total count (the one value read back to the host). */
  int (*sync_bn_packet)(ms_context *ctx, const ms_tensor *x, ms_tensor *out);
  int (*sync_bn_merge)(ms_context *ctx, const ms_tensor *all, double eps, double momentum,
                       ms_tensor *rm, ms_tensor *rv, ms_tensor *mean, ms_tensor *invstd,
                       ms_tensor *mean64, ms_tensor *var64, double *count);
  /* sums contiguous f64 [2, C], invstd 1-d float [C]; dw / db [C] contiguous (either NULL) */
  int (*sync_bn_param_grads)(ms_context *ctx, const ms_tensor *sums, const ms_tensor *invstd,
                             ms_tensor *dw, ms_tensor *db);
  /* layer norm: x viewed as [M, K], contiguous operands of the compute dtype */
  int (*layer_norm)(ms_context *ctx, const ms_tensor *x, int64_t m, int64_t k, const ms_tensor *w,
                    const ms_tensor *b, double eps, ms_tensor *out, ms_tensor *mean,
                    ms_tensor *rstd);
  int (*layer_norm_backward)(ms_context *ctx, const ms_tensor *g, const ms_tensor *x, int64_t m,
                             int64_t k, const ms_tensor *w, const ms_tensor *mean,
                             const ms_tensor *rstd, ms_tensor *dx, ms_tensor *dw, ms_tensor *db);

  /* pooling on [N, C, H, W] planes, contiguous operands of the compute dtype */
  int (*max_pool2d)(ms_context *ctx, const ms_tensor *x, const ms_pool2d_params *p, ms_tensor *out,
                    ms_tensor *indices);
  int (*max_pool2d_backward)(ms_context *ctx, const ms_tensor *g, const ms_tensor *indices,
                             ms_tensor *dx);
  int (*avg_pool2d)(ms_context *ctx, const ms_tensor *x, const ms_pool2d_params *p, ms_tensor *out);
  int (*avg_pool2d_backward)(ms_context *ctx, const ms_tensor *g, const ms_pool2d_params *p,
                             ms_tensor *dx);
  int (*adaptive_avg_pool2d)(ms_context *ctx, const ms_tensor *x, ms_tensor *out);
  int (*adaptive_avg_pool2d_backward)(ms_context *ctx, const ms_tensor *g, ms_tensor *dx);

  /* resize on [N, C, H, W], contiguous operands of the compute dtype */
  int (*interpolate)(ms_context *ctx, const ms_tensor *x, ms_resize_mode mode, int align_corners,
                     ms_tensor *out);
  int (*interpolate_backward)(ms_context *ctx, const ms_tensor *g, ms_resize_mode mode,
                              int align_corners, ms_tensor *dx);

  /* x, y contiguous [outer, d, inner] */
  int (*softmax)(ms_context *ctx, const ms_tensor *x, int64_t outer, int64_t d, int64_t inner,
                 int log, ms_tensor *y);
  int (*softmax_backward)(ms_context *ctx, const ms_tensor *g, const ms_tensor *y, int64_t outer,
                          int64_t d, int64_t inner, int log, ms_tensor *dx);

  /* cross-entropy: contracts of ms_cpu_cross_entropy (csrc/cpu/mcsl_kernels.h) */
  int (*cross_entropy)(ms_context *ctx, const ms_tensor *logits, const ms_tensor *target,
                       const ms_tensor *weight, int64_t ignore_index, int64_t n, int64_t c,
                       int64_t s, ms_tensor *loss_pos, ms_tensor *lse, double *lsum, double *wsum,
                       int64_t *bad_pos);
  int (*cross_entropy_backward)(ms_context *ctx, const ms_tensor *logits, const ms_tensor *target,
                                const ms_tensor *weight, int64_t ignore_index, int64_t n, int64_t c,
                                int64_t s, const ms_tensor *lse, const ms_tensor *grad_pos,
                                double gscale, int mean, ms_tensor *dlogits);

  /* out contiguous; skipped inputs are NULL */
  int (*cat)(ms_context *ctx, ms_tensor *const *xs, int n, int dim, ms_tensor *out);

  /* pred (NULL: count labels, accum [C]) and label contiguous integer tensors of one shape;
   * accum contiguous i64 [C, C] or [C], added to. On a value outside [0, C) that is not
   * ignore_index: MS_ERR_INVALID with *bad set (no message), nothing added. */
  int (*confusion)(ms_context *ctx, const ms_tensor *pred, const ms_tensor *label,
                   int64_t num_classes, int64_t ignore_index, ms_tensor *accum, ms_bad_value *bad);

  /* multi-tensor steps (mixed precision, optimizers): contracts of csrc/cpu/multi_tensor.h, every
   * tensor contiguous on this device; found_inf is an f32 flag tensor written without host sync */
  int (*mt_unscale)(ms_context *ctx, ms_tensor *const *grads, int n, const ms_tensor *scale,
                    ms_tensor *found_inf);
  int (*mt_scale_update)(ms_context *ctx, ms_tensor *scale, ms_tensor *counters,
                         const ms_tensor *found_inf, const ms_scaler_params *p);
  int (*mt_sgd)(ms_context *ctx, ms_tensor *const *params, ms_tensor *const *grads,
                ms_tensor *const *bufs, ms_tensor *const *master, int n, const ms_sgd_params *p,
                const ms_tensor *found_inf);
  int (*mt_adamw)(ms_context *ctx, ms_tensor *const *params, ms_tensor *const *grads,
                  ms_tensor *const *m, ms_tensor *const *v, ms_tensor *const *master, int n,
                  const ms_adamw_params *p, ms_tensor *step, const ms_tensor *found_inf);
  int (*mt_norm)(ms_context *ctx, ms_tensor *const *ts, int n, ms_tensor *out);
  int (*mt_clip)(ms_context *ctx, ms_tensor *const *ts, int n, const ms_tensor *norm,
                 double max_norm);

  /* streams and events: record marks the point in s's work; wait makes s wait for it;
   * synchronize blocks the host until it completed. */
  int (*event_record)(ms_context *ctx, ms_event *e, const ms_stream *s);
  int (*event_wait)(ms_context *ctx, const ms_event *e, const ms_stream *s);
  int (*event_synchronize)(ms_context *ctx, ms_event *e);
  int (*event_query)(const ms_event *e); /* 1: recorded and complete */
  void (*event_release)(ms_event *e);    /* frees the handle, if any */
  int (*stream_synchronize)(ms_context *ctx, const ms_stream *s);
} ms_backend;

/* The table of a device type; never NULL (a type without a registered backend gets an empty
 * table, so every op on it reports "not supported"). */
const ms_backend *ms_backend_for(ms_device_type device);
static inline const ms_backend *ms_backend_of(const ms_tensor *t) {
  return ms_backend_for(t->storage->device);
}
/* Installs the table of a device type (the CUDA part registers its own at context init). */
void ms_backend_register(ms_device_type device, const ms_backend *be);

/* The shared message: "conv2d: not supported on cuda:0 for f16 (no kernel in the cuda backend)";
 * name is the op as the caller knows it ("add"), NULL for op's own name. */
int ms_unsupported(ms_op_id op, const char *name, const ms_tensor *t, ms_dtype dtype);

/* t's backend when it has op's entry and supports dtype; *compute gets the compute dtype (may
 * be NULL). NULL with the shared message (naming `name`, or op when NULL) otherwise. */
const ms_backend *ms_backend_get(ms_op_id op, const char *name, const ms_tensor *t, ms_dtype dtype,
                                 ms_dtype *compute);

/* ---- streams and events of a context (core/stream.c) ---- */
/* The context's current stream on t's device. */
const ms_stream *ms_context_stream(ms_context *ctx, ms_device_type device, int index);
int ms_event_record(ms_context *ctx, ms_event *e, const ms_stream *s);
int ms_event_wait(ms_context *ctx, const ms_event *e, const ms_stream *s);
int ms_event_synchronize(ms_context *ctx, ms_event *e);
/* 1 when recorded and complete. */
int ms_event_query(const ms_event *e);
/* Frees the event's backend handle (the struct itself is the caller's). */
void ms_event_release(ms_event *e);
int ms_stream_synchronize(ms_context *ctx, const ms_stream *s);

#endif
