/* moonseg.h: the one public C API of moonseg (plain C that LuaJIT's ffi.cdef parses). */
#ifndef MOONSEG_H
#define MOONSEG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever anything between MS_CDEF_BEGIN and MS_CDEF_END changes. */
#define MS_ABI_VERSION 4

/* Bootstrap: the two calls Lua makes before it reads the rest of the API. */
int ms_abi_version(void);
/* The text between the CDEF markers below, as compiled into the library. */
const char *ms_cdef(void);

/* Everything between the markers is fed to ffi.cdef verbatim: no preprocessor
 * lines, no macros, explicit enum values, fixed-width integer types. */
/* MS_CDEF_BEGIN */

typedef enum ms_status {
  MS_OK = 0,
  MS_ERR_INVALID = -1,     /* bad argument: shape, dim, flag */
  MS_ERR_DTYPE = -2,       /* dtype not allowed for this op */
  MS_ERR_DEVICE = -3,      /* operands on different devices, or no such device */
  MS_ERR_OOM = -4,         /* allocation failed */
  MS_ERR_IO = -5,          /* file missing, unreadable or corrupt */
  MS_ERR_UNSUPPORTED = -6, /* valid request this build or backend cannot do */
  MS_ERR_FREED = -7,       /* tensor used after free() */
  MS_ERR_INTERNAL = -8,    /* a library call underneath failed */
  MS_ERR_TIMEOUT = -9      /* a blocking call (store, collective) ran out of time */
} ms_status;

typedef enum ms_dtype {
  MS_F64 = 0,
  MS_F32 = 1,
  MS_F16 = 2,
  MS_BF16 = 3,
  MS_I64 = 4,
  MS_I32 = 5,
  MS_U8 = 6,
  MS_BOOL = 7
} ms_dtype;

typedef enum ms_device_type { MS_CPU = 0, MS_CUDA = 1 } ms_device_type;

typedef struct ms_tensor ms_tensor;
typedef struct ms_context ms_context;

/* Counter-based Philox4x32-10 stream: (seed, offset) is the whole state. Each
 * random op consumes whole 128-bit blocks and advances offset by their count,
 * so CPU and CUDA draw the same numbers and a run resumes from (seed, offset). */
typedef struct ms_generator {
  uint64_t seed;
  uint64_t offset;
} ms_generator;

typedef struct ms_memory_stats {
  int64_t allocated; /* bytes held by live storages */
  int64_t reserved;  /* bytes held from the system (>= allocated with caching) */
  int64_t peak;      /* high-water mark of allocated since the last reset */
  int64_t storages;  /* live storage count */
} ms_memory_stats;

/* ---- errors ---------------------------------------------------------- */
/* Message of the last failing call on this thread: names the op and the
 * shapes, dtypes, files or library call at fault. */
const char *ms_last_error(void);
int ms_last_status(void);
void ms_clear_error(void);

/* ---- library facts ------------------------------------------------------ */
int ms_has_cuda(void);
int ms_cuda_device_count(void);
const char *ms_build_info(void);
/* Monotonic wall-clock time in seconds. */
double ms_time_now(void);
int64_t ms_dtype_size(ms_dtype dtype);
const char *ms_dtype_name(ms_dtype dtype);
int ms_memory_stats_get(ms_device_type device, int index, ms_memory_stats *out);
int ms_memory_stats_reset_peak(ms_device_type device, int index);
/* Returns cached free blocks to the system (host: blocks >= 64 KiB are cached for reuse). */
int ms_memory_empty_cache(ms_device_type device, int index);

/* ---- context: thread count, backend handles ----------------------------- */
int ms_context_new(ms_context **out);
void ms_context_free(ms_context *ctx);
int ms_context_set_num_threads(ms_context *ctx, int num_threads);
int ms_context_num_threads(const ms_context *ctx);
/* Batch invariance (on by default): each sample's forward output and input gradient do not
 * depend on the rest of its batch, so N workers x B train like 1 x N*B up to summation order.
 * CPU: 3x3 forward and backward-data convolutions run direct on small inputs and Winograd one
 * sample at a time on larger ones (batched Winograd's result for a sample changes with the
 * minibatch). Off: batched Winograd where eligible. */
int ms_context_set_batch_invariant(ms_context *ctx, int on);
int ms_context_batch_invariant(const ms_context *ctx);

/* ---- random --------------------------------------------------------------- */
/* One Philox4x32-10 block: key = seed, counter = (ctr_lo, ctr_hi). */
void ms_philox4x32(uint64_t seed, uint64_t ctr_lo, uint64_t ctr_hi, uint32_t out[4]);

/* ---- tensor handles ------------------------------------------------------ */
/* Every handle is owned by exactly one caller. ms_tensor_free drops the handle
 * and its reference to the storage; the storage goes when its last view goes. */
void ms_tensor_free(ms_tensor *t);
/* A second handle on the same view (storage reference count + 1). */
int ms_tensor_alias(const ms_tensor *t, ms_tensor **out);

int ms_tensor_ndim(const ms_tensor *t);
int64_t ms_tensor_size(const ms_tensor *t, int dim);
int64_t ms_tensor_stride(const ms_tensor *t, int dim);
int64_t ms_tensor_offset(const ms_tensor *t);
int64_t ms_tensor_numel(const ms_tensor *t);
ms_dtype ms_tensor_dtype(const ms_tensor *t);
ms_device_type ms_tensor_device_type(const ms_tensor *t);
int ms_tensor_device_index(const ms_tensor *t);
int ms_tensor_is_contiguous(const ms_tensor *t);
/* Host address of the first element (NULL for device tensors). */
void *ms_tensor_data_ptr(const ms_tensor *t);
/* 1 when both views share one storage. */
int ms_tensor_same_storage(const ms_tensor *a, const ms_tensor *b);
int64_t ms_tensor_storage_nbytes(const ms_tensor *t);
/* A number unique to t's storage, increasing in creation order: tells storages made after a
 * point from older ones that views share (memory accounting in tests). */
int64_t ms_tensor_storage_serial(const ms_tensor *t);

/* ---- creation and copies -------------------------------------------------- */
int ms_empty(ms_context *ctx, const int64_t *shape, int ndim, ms_dtype dtype, ms_device_type device,
             int device_index, ms_tensor **out);
int ms_full(ms_context *ctx, const int64_t *shape, int ndim, ms_dtype dtype, ms_device_type device,
            int device_index, double value, ms_tensor **out);
/* start, start+step, ... while < end (> end for a negative step). */
int ms_arange(ms_context *ctx, double start, double end, double step, ms_dtype dtype,
              ms_device_type device, int device_index, ms_tensor **out);
/* Copies nbytes of host memory (contiguous, row-major, of dtype) into a new tensor. */
int ms_from_host(ms_context *ctx, const void *data, int64_t nbytes, const int64_t *shape, int ndim,
                 ms_dtype dtype, ms_device_type device, int device_index, ms_tensor **out);
/* Writes all elements of t, row-major, converted to double. n must be numel. */
int ms_read_f64(ms_context *ctx, const ms_tensor *t, double *dst, int64_t n);
/* Writes all elements row-major in t's own dtype into dst (nbytes = numel*size). */
int ms_to_host(ms_context *ctx, const ms_tensor *t, void *dst, int64_t nbytes);
int ms_fill_(ms_context *ctx, ms_tensor *t, double value);
/* dst[...] = src broadcast to dst's shape, converted to dst's dtype. */
int ms_copy_(ms_context *ctx, ms_tensor *dst, const ms_tensor *src);
int ms_contiguous(ms_context *ctx, const ms_tensor *t, ms_tensor **out);
int ms_cast(ms_context *ctx, const ms_tensor *t, ms_dtype dtype, ms_tensor **out);
int ms_to_device(ms_context *ctx, const ms_tensor *t, ms_device_type device, int device_index,
                 ms_tensor **out);

/* In-place random fills from gen (advances gen->offset). */
int ms_uniform_(ms_context *ctx, ms_generator *gen, ms_tensor *t, double low, double high);
int ms_normal_(ms_context *ctx, ms_generator *gen, ms_tensor *t, double mean, double std);
/* Integers uniformly in [low, high). */
int ms_randint_(ms_context *ctx, ms_generator *gen, ms_tensor *t, int64_t low, int64_t high);
/* Keeps each element with probability 1-p and scales kept ones by 1/(1-p);
 * mask (same dtype as x) holds 0 or 1/(1-p) so backward is grad * mask. */
int ms_dropout(ms_context *ctx, ms_generator *gen, const ms_tensor *x, double p, ms_tensor **out,
               ms_tensor **mask);

/* ---- views (no data copied; dims are 0-based here, negatives count from the end) */
int ms_view(const ms_tensor *t, const int64_t *shape, int ndim, ms_tensor **out);
int ms_permute(const ms_tensor *t, const int *dims, int ndim, ms_tensor **out);
int ms_transpose(const ms_tensor *t, int dim0, int dim1, ms_tensor **out);
/* Elements start, start+step, ... < stop along dim (step >= 1). */
int ms_slice(const ms_tensor *t, int dim, int64_t start, int64_t stop, int64_t step,
             ms_tensor **out);
int ms_select(const ms_tensor *t, int dim, int64_t index, ms_tensor **out);
int ms_expand(const ms_tensor *t, const int64_t *shape, int ndim, ms_tensor **out);
int ms_squeeze(const ms_tensor *t, int dim, ms_tensor **out);
int ms_squeeze_all(const ms_tensor *t, ms_tensor **out);
int ms_unsqueeze(const ms_tensor *t, int dim, ms_tensor **out);
int ms_as_strided(const ms_tensor *t, const int64_t *shape, const int64_t *strides, int ndim,
                  int64_t offset, ms_tensor **out);

/* ---- elementwise (broadcasting, PyTorch type promotion) ------------------- */
typedef enum ms_binop {
  MS_ADD = 0,
  MS_SUB = 1,
  MS_MUL = 2,
  MS_DIV = 3,
  MS_POW = 4,
  MS_MAXIMUM = 5,
  MS_MINIMUM = 6,
  MS_EQ = 7, /* comparisons give bool */
  MS_NE = 8,
  MS_LT = 9,
  MS_LE = 10,
  MS_GT = 11,
  MS_GE = 12,
  MS_LOGICAL_AND = 13,
  MS_LOGICAL_OR = 14
} ms_binop;

typedef enum ms_unop {
  MS_NEG = 0,
  MS_ABS = 1,
  MS_EXP = 2,
  MS_LOG = 3,
  MS_SQRT = 4,
  MS_RSQRT = 5,
  MS_SIGMOID = 6,
  MS_TANH = 7,
  MS_RELU = 8,
  MS_LEAKY_RELU = 9, /* p0 = negative slope */
  MS_GELU = 10,      /* p0 = 0: erf form, 1: tanh approximation */
  MS_HARDSWISH = 11,
  MS_CLAMP = 12,      /* p0 = min, p1 = max (use +-inf for one-sided) */
  MS_POW_SCALAR = 13, /* x ^ p0 */
  MS_SIGN = 14,
  MS_RECIPROCAL = 15,
  MS_SQUARE = 16,
  MS_LOGICAL_NOT = 17,
  MS_HARDSIGMOID = 18
} ms_unop;

/* out = a op b; a or b may be 0-dim. */
int ms_binary(ms_context *ctx, ms_binop op, const ms_tensor *a, const ms_tensor *b,
              ms_tensor **out);
/* dst = a op b, dst already shaped as the broadcast result (dst may be a). */
int ms_binary_into(ms_context *ctx, ms_binop op, const ms_tensor *a, const ms_tensor *b,
                   ms_tensor *dst);
/* out = a op s (reverse: s op a). */
int ms_binary_scalar(ms_context *ctx, ms_binop op, const ms_tensor *a, double s, int reverse,
                     ms_tensor **out);
int ms_binary_scalar_into(ms_context *ctx, ms_binop op, const ms_tensor *a, double s, int reverse,
                          ms_tensor *dst);
int ms_unary(ms_context *ctx, ms_unop op, const ms_tensor *x, double p0, double p1,
             ms_tensor **out);
int ms_unary_into(ms_context *ctx, ms_unop op, const ms_tensor *x, double p0, double p1,
                  ms_tensor *dst);
/* grad_in = grad_out * d op(x)/dx; y = op(x) may be passed (or NULL) where the
 * derivative is cheaper from the output (exp, sigmoid, tanh, relu). */
int ms_unary_backward(ms_context *ctx, ms_unop op, const ms_tensor *grad_out, const ms_tensor *x,
                      const ms_tensor *y, double p0, double p1, ms_tensor **grad_in);
/* out = cond ? a : b, broadcasting all three. */
int ms_where(ms_context *ctx, const ms_tensor *cond, const ms_tensor *a, const ms_tensor *b,
             ms_tensor **out);
/* dst += alpha * src (src broadcast to dst): the optimizer's axpy. */
int ms_axpy_(ms_context *ctx, ms_tensor *dst, double alpha, const ms_tensor *src);

/* ---- multi-tensor steps: mixed precision and optimizers (one call per step) -------- */
/* Every array holds n tensors of one device; each tensor contiguous. scale and found_inf
 * are f32 [1] tensors on that device, so no call reads a value back to the host. */
/* grads[i] *= 1/scale; found_inf becomes 1 when any gradient holds inf or nan (it is
 * never reset here: zero it once per step). The flag is written without atomics. */
int ms_mt_unscale_(ms_context *ctx, ms_tensor *const *grads, int n, const ms_tensor *scale,
                   ms_tensor *found_inf);
typedef struct ms_scaler_params {
  int32_t dynamic;         /* 0: static scale, never changed */
  int32_t growth_interval; /* good steps in a row before the scale grows (2000) */
  double growth_factor;    /* 2 */
  double backoff_factor;   /* 0.5 */
  double min_scale;        /* floor (1): never 0 */
  double max_scale;        /* ceiling: never inf */
} ms_scaler_params;
/* After a step: counters i64 [2] = {good steps in a row, skipped steps}. An overflowing
 * step (found_inf = 1) counts as skipped and, when dynamic, multiplies scale by backoff;
 * growth_interval good steps in a row multiply it by growth. */
int ms_mt_scale_update(ms_context *ctx, ms_tensor *scale, ms_tensor *counters,
                       const ms_tensor *found_inf, const ms_scaler_params *p);
typedef struct ms_sgd_params {
  double lr;
  double momentum;     /* 0: momentum_bufs may be NULL */
  double weight_decay; /* Paddle's L2: g += wd * w before momentum */
} ms_sgd_params;
/* v = mu v + (g + wd w); w -= lr v. With master (f32 copies, or NULL) the update is made on
 * master[i] and params[i] = master[i] cast to its dtype. momentum buffers have the dtype of the
 * tensor updated. found_inf (or NULL) set: nothing changes. */
int ms_mt_sgd_step(ms_context *ctx, ms_tensor *const *params, ms_tensor *const *grads,
                   ms_tensor *const *momentum_bufs, ms_tensor *const *master, int n,
                   const ms_sgd_params *p, const ms_tensor *found_inf);
typedef struct ms_adamw_params {
  double lr, beta1, beta2, eps, weight_decay; /* decoupled decay: w *= 1 - lr wd */
} ms_adamw_params;
/* AdamW with bias correction from step (i64 [1], incremented unless found_inf is set). */
int ms_mt_adamw_step(ms_context *ctx, ms_tensor *const *params, ms_tensor *const *grads,
                     ms_tensor *const *exp_avg, ms_tensor *const *exp_avg_sq,
                     ms_tensor *const *master, int n, const ms_adamw_params *p, ms_tensor *step,
                     const ms_tensor *found_inf);
/* out (f32 [1]) = the L2 norm of all elements of all tensors together. */
int ms_mt_norm(ms_context *ctx, ms_tensor *const *ts, int n, ms_tensor *out);
/* ts[i] *= min(1, max_norm / (norm + 1e-6)) with norm an f32 [1] tensor (gradient clipping). */
int ms_mt_clip_(ms_context *ctx, ms_tensor *const *ts, int n, const ms_tensor *norm,
                double max_norm);

/* ---- reductions (dims 0-based; ndims = 0 reduces over all) ----------------- */
typedef enum ms_redop {
  MS_RED_SUM = 0,
  MS_RED_MEAN = 1,
  MS_RED_MAX = 2,
  MS_RED_MIN = 3,
  MS_RED_VAR = 4, /* correction = p (1: unbiased) */
  MS_RED_PROD = 5
} ms_redop;
int ms_reduce(ms_context *ctx, ms_redop op, const ms_tensor *x, const int *dims, int ndims,
              int keepdim, double p, ms_tensor **out);
/* Max or min along one dim with int64 indices (first occurrence). */
int ms_reduce_arg(ms_context *ctx, ms_redop op, const ms_tensor *x, int dim, int keepdim,
                  ms_tensor **values, ms_tensor **indices);
/* Sums grad (shaped as the broadcast result) down to shape: the backward of broadcasting. */
int ms_sum_to(ms_context *ctx, const ms_tensor *grad, const int64_t *shape, int ndim,
              ms_tensor **out);

/* ---- linear algebra -------------------------------------------------------- */
/* [.., n, k] x [.., k, m] with batch dims broadcast; 1-d operands as in numpy. */
int ms_matmul(ms_context *ctx, const ms_tensor *a, const ms_tensor *b, ms_tensor **out);

/* ---- convolution ------------------------------------------------------------ */
typedef struct ms_conv2d_params {
  int32_t stride[2];
  int32_t padding[2];
  int32_t dilation[2];
  int32_t groups;
} ms_conv2d_params;
/* x [N, Cin, H, W], w [Cout, Cin/groups, kh, kw], b [Cout] or NULL. */
int ms_conv2d(ms_context *ctx, const ms_tensor *x, const ms_tensor *w, const ms_tensor *b,
              const ms_conv2d_params *p, ms_tensor **out);
/* Any of dx, dw, db may be NULL when that gradient is not wanted. */
int ms_conv2d_backward(ms_context *ctx, const ms_tensor *grad_out, const ms_tensor *x,
                       const ms_tensor *w, const ms_conv2d_params *p, ms_tensor **dx,
                       ms_tensor **dw, ms_tensor **db);

/* ---- normalization ----------------------------------------------------------- */
/* x [N, C, ...]. training: normalise with batch statistics and, when running
 * stats are given, update them in place (momentum is the batch weight, as in
 * PyTorch; running_var takes the unbiased batch variance). Otherwise use the
 * running stats. save_mean / save_invstd ([C], f32) feed the backward. */
int ms_batch_norm(ms_context *ctx, const ms_tensor *x, const ms_tensor *weight,
                  const ms_tensor *bias, ms_tensor *running_mean, ms_tensor *running_var,
                  int training, double momentum, double eps, ms_tensor **out, ms_tensor **save_mean,
                  ms_tensor **save_invstd);
int ms_batch_norm_backward(ms_context *ctx, const ms_tensor *grad_out, const ms_tensor *x,
                           const ms_tensor *weight, const ms_tensor *save_mean,
                           const ms_tensor *save_invstd, int training, ms_tensor **dx,
                           ms_tensor **dweight, ms_tensor **dbias);
/* SyncBatchNorm's per-rank pieces (f64 accumulation, the kernels of batch_norm). moments:
 * f64 [2, C] mean and biased variance of x. grad_sums: f64 [2, C] sum(g) and
 * sum(g * (x - mean)). backward_global: dx from sums (f64 [2, C], reduced over the ranks) and
 * the global count per channel; mean and invstd as batch_norm saves them. */
int ms_batch_norm_moments(ms_context *ctx, const ms_tensor *x, ms_tensor **out);
int ms_batch_norm_grad_sums(ms_context *ctx, const ms_tensor *grad_out, const ms_tensor *x,
                            const ms_tensor *mean, ms_tensor **out);
int ms_batch_norm_backward_global(ms_context *ctx, const ms_tensor *grad_out, const ms_tensor *x,
                                  const ms_tensor *weight, const ms_tensor *mean,
                                  const ms_tensor *invstd, const ms_tensor *sums, double count,
                                  ms_tensor **dx);
/* SyncBatchNorm's statistics exchange in two calls. stats_packet: f64 [2C + 1] (count, mean,
 * count * biased variance) of x, what each rank all-gathers. merge_stats: from the gathered
 * packets (f64 [W, 2C + 1]) Chan's count-weighted merge: mean and invstd = 1 / sqrt(var + eps) in
 * dtype, the f64 mean and biased variance, and the total count (host); running_mean /
 * running_var (or NULL) are updated in place as ms_batch_norm does (momentum is the batch's
 * weight, the variance unbiased). Fails when every rank's count is 0. */
int ms_batch_norm_stats_packet(ms_context *ctx, const ms_tensor *x, ms_tensor **out);
int ms_batch_norm_merge_stats(ms_context *ctx, const ms_tensor *gathered, ms_dtype dtype,
                              double eps, ms_tensor *running_mean, ms_tensor *running_var,
                              double momentum, ms_tensor **mean, ms_tensor **invstd,
                              ms_tensor **mean64, ms_tensor **var64, double *count);
/* This rank's weight and bias gradients of SyncBatchNorm from its grad_sums (f64 [2, C], before
 * they are reduced): dweight = sum(g * (x - mean)) * invstd, dbias = sum(g), both in dtype;
 * dweight or dbias may be NULL when not wanted. */
int ms_batch_norm_param_grads(ms_context *ctx, const ms_tensor *sums, const ms_tensor *invstd,
                              ms_dtype dtype, ms_tensor **dweight, ms_tensor **dbias);
/* Normalises over the last normalized_ndim dims; weight/bias shaped like them or NULL. */
int ms_layer_norm(ms_context *ctx, const ms_tensor *x, int normalized_ndim, const ms_tensor *weight,
                  const ms_tensor *bias, double eps, ms_tensor **out, ms_tensor **save_mean,
                  ms_tensor **save_rstd);
int ms_layer_norm_backward(ms_context *ctx, const ms_tensor *grad_out, const ms_tensor *x,
                           int normalized_ndim, const ms_tensor *weight, const ms_tensor *save_mean,
                           const ms_tensor *save_rstd, ms_tensor **dx, ms_tensor **dweight,
                           ms_tensor **dbias);

/* ---- pooling -------------------------------------------------------------------- */
typedef struct ms_pool2d_params {
  int32_t kernel[2];
  int32_t stride[2];
  int32_t padding[2];
  int32_t ceil_mode;
  int32_t count_include_pad; /* average pooling only */
} ms_pool2d_params;
int ms_max_pool2d(ms_context *ctx, const ms_tensor *x, const ms_pool2d_params *p, ms_tensor **out,
                  ms_tensor **indices);
int ms_max_pool2d_backward(ms_context *ctx, const ms_tensor *grad_out, const ms_tensor *x,
                           const ms_tensor *indices, ms_tensor **dx);
int ms_avg_pool2d(ms_context *ctx, const ms_tensor *x, const ms_pool2d_params *p, ms_tensor **out);
int ms_avg_pool2d_backward(ms_context *ctx, const ms_tensor *grad_out, const ms_tensor *x,
                           const ms_pool2d_params *p, ms_tensor **dx);
int ms_adaptive_avg_pool2d(ms_context *ctx, const ms_tensor *x, int64_t out_h, int64_t out_w,
                           ms_tensor **out);
int ms_adaptive_avg_pool2d_backward(ms_context *ctx, const ms_tensor *grad_out, const ms_tensor *x,
                                    ms_tensor **dx);

/* ---- resize ------------------------------------------------------------------------ */
typedef enum ms_resize_mode { MS_RESIZE_NEAREST = 0, MS_RESIZE_BILINEAR = 1 } ms_resize_mode;
/* x [N, C, H, W] -> [N, C, out_h, out_w]. */
int ms_interpolate(ms_context *ctx, const ms_tensor *x, int64_t out_h, int64_t out_w,
                   ms_resize_mode mode, int align_corners, ms_tensor **out);
int ms_interpolate_backward(ms_context *ctx, const ms_tensor *grad_out, int64_t in_h, int64_t in_w,
                            ms_resize_mode mode, int align_corners, ms_tensor **dx);

/* ---- joining ------------------------------------------------------------------------- */
int ms_cat(ms_context *ctx, ms_tensor *const *xs, int n, int dim, ms_tensor **out);

/* ---- softmax and losses ----------------------------------------------------------------- */
int ms_softmax(ms_context *ctx, const ms_tensor *x, int dim, int log, ms_tensor **out);
/* y is the forward output (softmax or log_softmax). */
int ms_softmax_backward(ms_context *ctx, const ms_tensor *grad_out, const ms_tensor *y, int dim,
                        int log, ms_tensor **dx);
typedef enum ms_reduction {
  MS_REDUCE_NONE = 0,
  MS_REDUCE_MEAN = 1,
  MS_REDUCE_SUM = 2
} ms_reduction;
/* logits [N, C, ...] float, target [N, ...] int64, weight [C] or NULL. Mean divides
 * by the summed weights of non-ignored targets (PyTorch). A target outside
 * [0, C) other than ignore_index is an error naming the value. lse ([N, ...],
 * the per-position log-sum-exp) is kept for the backward. */
int ms_cross_entropy(ms_context *ctx, const ms_tensor *logits, const ms_tensor *target,
                     const ms_tensor *weight, int64_t ignore_index, ms_reduction reduction,
                     ms_tensor **loss, ms_tensor **lse);
int ms_cross_entropy_backward(ms_context *ctx, const ms_tensor *grad_loss, const ms_tensor *logits,
                              const ms_tensor *target, const ms_tensor *weight,
                              int64_t ignore_index, ms_reduction reduction, const ms_tensor *lse,
                              ms_tensor **dlogits);

/* ---- safetensors files (csrc/io/safetensors.c) ---------------------------------------- */
typedef struct ms_safetensors ms_safetensors;
/* Reads and validates a whole file: header JSON, dtypes, shapes, and offsets that tile the
 * data section exactly (no gaps, overlaps or bytes past the end). */
int ms_safetensors_open(const char *path, ms_safetensors **out);
/* The same from memory (name is used in error messages). */
int ms_safetensors_parse(const void *data, int64_t nbytes, const char *name, ms_safetensors **out);
void ms_safetensors_close(ms_safetensors *st);
int ms_safetensors_count(const ms_safetensors *st);
const char *ms_safetensors_name(const ms_safetensors *st, int i);
/* A new CPU tensor holding entry i. */
int ms_safetensors_get(ms_context *ctx, const ms_safetensors *st, int i, ms_tensor **out);
int ms_safetensors_metadata_count(const ms_safetensors *st);
const char *ms_safetensors_metadata_key(const ms_safetensors *st, int i);
const char *ms_safetensors_metadata_value(const ms_safetensors *st, int i);
/* Writes n named tensors (any device, any layout) and string metadata to path atomically:
 * a temporary file in the same directory, flushed, fsynced and renamed over path. */
int ms_safetensors_save(ms_context *ctx, const char *path, const char *const *names,
                        ms_tensor *const *tensors, int n, const char *const *meta_keys,
                        const char *const *meta_values, int n_meta);
/* Writes nbytes to path atomically (temporary beside it, fsync, rename, fsync of the directory). */
int ms_file_write_atomic(const char *path, const void *data, int64_t nbytes);
/* Directories (csrc/io/fs.c). mkdirs: every missing parent too, an existing directory is fine.
 * remove_tree: path and everything under it (symbolic links removed, not followed); an absent
 * path is fine. list: the entry names (no "." / "..") each followed by '\n', up to cap bytes
 * into buf; *needed = bytes the whole list takes (call again with a larger buf when above cap).
 * rename: rename(2) then fsync of the target's directory. */
int ms_fs_mkdirs(const char *path);
int ms_fs_remove_tree(const char *path);
int ms_fs_list(const char *path, char *buf, int64_t cap, int64_t *needed);
int ms_fs_rename(const char *from, const char *to);

/* ---- image I/O (csrc/io) ---- */
/* The format is told by the first bytes (PNG or JPEG), never by the file name. A
 * missing, empty, truncated, corrupt or unknown file is MS_ERR_IO with a message
 * naming the file and what libpng / libjpeg said. */
typedef enum ms_image_mode {
  MS_IMAGE_RGB = 0,      /* u8 [H, W, 3]: gray and palette expanded to RGB, alpha dropped,
                            16-bit samples scaled to 8 bits */
  MS_IMAGE_LABEL = 1,    /* [H, W] as stored: palette PNGs give their indices (PIL's "P"),
                            gray files their values; u8, or i32 for 16-bit gray PNGs;
                            a colour file is an error */
  MS_IMAGE_UNCHANGED = 2 /* [H, W, C] with the file's channels (1 gray, 2 gray+alpha, 3 RGB,
                            4 RGBA); palette expanded to RGB, tRNS to alpha, 1/2/4-bit gray
                            scaled to 8 bits; u8, or i32 for 16-bit PNGs */
} ms_image_mode;
int ms_image_read(ms_context *ctx, const char *path, ms_image_mode mode, ms_tensor **out);
/* The same from a file's bytes in memory; name (or NULL) is used in error messages. */
int ms_image_decode(ms_context *ctx, const void *data, int64_t nbytes, ms_image_mode mode,
                    const char *name, ms_tensor **out);
/* img: [H, W] or [H, W, C] (C = 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA); u8 gives 8-bit,
 * i32/i64 with values in [0, 65535] 16-bit samples. With palette_rgb (palette_len RGB
 * triples, 1..256) img must be u8 [H, W] indices below palette_len: an 8-bit palette
 * PNG. Written to a temporary file beside path, fsynced and renamed onto path (on
 * failure no new file is left at path and an existing one is untouched). */
int ms_png_write(ms_context *ctx, const char *path, const ms_tensor *img,
                 const uint8_t *palette_rgb, int palette_len);
/* img: u8 [H, W] or [H, W, 1] (gray) or [H, W, 3] (RGB); quality 1..100; chroma
 * subsampling 444, 422 or 420 (ignored for gray). Written atomically like PNGs. */
int ms_jpeg_write(ms_context *ctx, const char *path, const ms_tensor *img, int quality,
                  int subsampling);

/* ---- distributed: store and communicators (csrc/comm) ---- */
/* Ranks are 0-based ids everywhere (like torchrun). Timeouts are in milliseconds;
 * a negative timeout waits forever. Failures name the key or the op, its sequence
 * number, host:port and how long was waited (MS_ERR_TIMEOUT / MS_ERR_IO). */
typedef struct ms_store_server ms_store_server;
typedef struct ms_store ms_store;
typedef struct ms_comm ms_comm;
typedef struct ms_work ms_work;
/* A TCP key-value server (libuv) on its own thread; port 0 picks a free port. */
int ms_store_server_start(const char *host, int port, ms_store_server **out);
int ms_store_server_port(const ms_store_server *server);
void ms_store_server_stop(ms_store_server *server);
/* Retries refused connections until timeout_ms; timeout_ms is also the default for
 * the blocking calls below. */
int ms_store_connect(const char *host, int port, int64_t timeout_ms, ms_store **out);
void ms_store_close(ms_store *store);
int ms_store_set(ms_store *store, const char *key, const void *value, int64_t nbytes);
/* Waits for key; *value points into the client's buffer, valid until its next call. */
int ms_store_get(ms_store *store, const char *key, int64_t timeout_ms, const void **value,
                 int64_t *nbytes);
int ms_store_wait(ms_store *store, const char *const *keys, int nkeys, int64_t timeout_ms);
/* Adds delta to the decimal integer stored at key (0 when absent); *result = new value. */
int ms_store_add(ms_store *store, const char *key, int64_t delta, int64_t *result);
/* *all_exist = 1 when every key exists now. */
int ms_store_check(ms_store *store, const char *const *keys, int nkeys, int *all_exist);
int ms_store_delete(ms_store *store, const char *key, int *deleted);
/* Sends a heartbeat for rank every interval_ms on a second connection (own thread). */
int ms_store_heartbeat_start(ms_store *store, int rank, int64_t interval_ms);
/* Ranks in [0, world_size) whose heartbeat connection dropped, or that sent none for
 * stale_ms after their first one; up to cap of them in ranks, their count in *n. */
int ms_store_dead_ranks(ms_store *store, int world_size, int64_t stale_ms, int *ranks, int cap,
                        int *n);

/* A thread that ends this process (exit status 1, the reason on stderr) when a peer is gone:
 * every interval_ms it asks the store at host:port for ranks whose heartbeat has been silent
 * for stale_ms, and it gives up on the store itself after stale_ms without an answer. */
typedef struct ms_watchdog ms_watchdog;
int ms_watchdog_start(const char *host, int port, int rank, int world_size, int64_t interval_ms,
                      int64_t stale_ms, ms_watchdog **out);
void ms_watchdog_stop(ms_watchdog *watchdog);

typedef enum ms_comm_op {
  MS_COMM_SUM = 0,
  MS_COMM_AVG = 1, /* floating dtypes only */
  MS_COMM_MAX = 2,
  MS_COMM_MIN = 3
} ms_comm_op;
/* Ring of TCP connections between the ranks (addresses exchanged through store, which
 * must outlive the communicator); between ranks of one host the data moves through shared
 * memory and TCP only tells that a peer is gone. Each collective fails on timeout_ms naming the op,
 * its sequence number and the ranks that did not arrive. */
int ms_comm_init_cpu(ms_store *store, int rank, int world_size, int64_t timeout_ms, ms_comm **out);
void ms_comm_free(ms_comm *comm);
int ms_comm_rank(const ms_comm *comm);
int ms_comm_world_size(const ms_comm *comm);
/* What carries the collectives: "cpu ring (tcp)", or "cpu ring (shared memory)" when every
 * rank runs on this host (environment MS_COMM_TRANSPORT=auto|tcp|shm, default auto). */
const char *ms_comm_backend_name(const ms_comm *comm);
/* Removes the shared-memory segments that process pid created and did not live to unlink (a
 * rank killed during communicator setup); the launcher calls it for each worker it reaps.
 * Returns how many it removed. */
int ms_comm_remove_segments(int pid);
/* In place on CPU tensors (any layout); f64 f32 f16 bf16 i64 i32 (halves summed in
 * float). Results are bit-identical on every rank. */
int ms_comm_all_reduce(ms_comm *comm, ms_tensor *t, ms_comm_op op);
int ms_comm_broadcast(ms_comm *comm, ms_tensor *t, int root);
/* out: [world_size, *x.shape], same dtype as x. */
int ms_comm_all_gather(ms_comm *comm, const ms_tensor *x, ms_tensor *out);
/* x: [world_size * n, ...] reduced over ranks; out gets this rank's slice [n, ...]. */
int ms_comm_reduce_scatter(ms_comm *comm, const ms_tensor *x, ms_tensor *out, ms_comm_op op);
int ms_comm_barrier(ms_comm *comm);
/* Runs on the communicator's thread, in call order (sync calls queue behind them). */
int ms_comm_all_reduce_async(ms_comm *comm, ms_tensor *t, ms_comm_op op, ms_work **out);
int ms_comm_broadcast_async(ms_comm *comm, ms_tensor *t, int root, ms_work **out);
/* The collective's status (its error becomes this thread's last error); MS_ERR_TIMEOUT
 * when it is still running after timeout_ms (the work stays valid). */
int ms_work_wait(ms_work *work, int64_t timeout_ms);
int ms_work_is_completed(ms_work *work);
/* Waits for the work to finish, then frees it. */
void ms_work_free(ms_work *work);

/* ---- data sets (csrc/io/dataset.c) ------------------------------------------------------ */
typedef struct ms_dataset ms_dataset;
int ms_dataset_new(ms_dataset **out);
void ms_dataset_free(ms_dataset *ds);
/* label may be NULL (test sets); origin names where the sample came from ("list.txt:12"). */
int ms_dataset_add(ms_dataset *ds, const char *image, const char *label, const char *origin);
/* Adds the samples of a PaddleSeg file list: one "image[sep]label" per line, paths relative
 * to root; sep NULL or "" splits at blanks; blank lines are skipped; a malformed line, a
 * missing label (when require_label) or an empty list is an error naming the line. */
int ms_dataset_add_list(ms_dataset *ds, const char *root, const char *list_path, const char *sep,
                        int require_label);
int64_t ms_dataset_size(const ms_dataset *ds);
const char *ms_dataset_image(const ms_dataset *ds, int64_t i);
const char *ms_dataset_label(const ms_dataset *ds, int64_t i);
const char *ms_dataset_origin(const ms_dataset *ds, int64_t i);

/* ---- augmentations (csrc/io/transforms.c) ---- */
/* PaddleSeg's per-sample transforms. Parameters in p, in PaddleSeg's argument order:
 * sizes are (W, H), image padding values (R, G, B), label padding value, interp 0 nearest /
 * 1 linear (cv2 INTER_* numerics; labels always nearest). */
typedef enum ms_transform_kind {
  MS_TF_RESIZE_STEP_SCALING = 0,    /* min_scale_factor, max_scale_factor, scale_step_size */
  MS_TF_RANDOM_PADDING_CROP = 1,    /* crop W, H, im_pad R, G, B, label_pad */
  MS_TF_RANDOM_HORIZONTAL_FLIP = 2, /* prob */
  MS_TF_RANDOM_VERTICAL_FLIP = 3,   /* prob */
  MS_TF_RANDOM_DISTORT = 4,         /* brightness range, prob, contrast range, prob, saturation
                                       range, prob, hue range, prob, sharpness range, prob */
  MS_TF_RESIZE = 5,                 /* W, H, interp */
  MS_TF_NORMALIZE = 6,              /* mean R, G, B, std R, G, B; must be the last op */
  MS_TF_RANDOM_SCALE_ASPECT = 7,    /* min_scale, aspect_ratio */
  MS_TF_PADDING = 8,                /* target W, H, im_pad R, G, B, label_pad (bottom-right) */
  MS_TF_ADJUST_BRIGHTNESS = 9,      /* factor (PIL ImageEnhance.Brightness) */
  MS_TF_ADJUST_CONTRAST = 10,       /* factor (ImageEnhance.Contrast) */
  MS_TF_ADJUST_SATURATION = 11,     /* factor (ImageEnhance.Color) */
  MS_TF_ADJUST_HUE = 12,            /* delta added to PIL's 0..255 HSV hue (wraps) */
  MS_TF_ADJUST_SHARPNESS = 13       /* factor (ImageEnhance.Sharpness) */
} ms_transform_kind;
typedef struct ms_transform {
  int32_t kind; /* ms_transform_kind */
  int32_t reserved;
  double p[12];
} ms_transform;
/* Runs ops[0..n) on one sample: img u8 or f32 [H, W, 3] (RGB), label u8 [H, W] or NULL.
 * img_out: f32 [3, H', W'] (0..255 values unless the last op is Normalize); label_out: u8
 * [H', W'] (left alone when label is NULL). Every random draw of the op at position k comes
 * from Philox with key = seed and counter = (index, epoch << 32 | k << 20 | block), so a
 * sample's result depends on (seed, epoch, index) only. epoch < 2^32, n <= 4096. */
int ms_transform_apply(ms_context *ctx, const ms_transform *ops, int n, uint64_t seed,
                       uint64_t epoch, uint64_t index, const ms_tensor *img, const ms_tensor *label,
                       ms_tensor **img_out, ms_tensor **label_out);
/* The same writing into caller-made outputs (e.g. a sample's slice of a batch): img_dst f32
 * [3, H', W'] and label_dst u8 [H', W'] (or NULL), both contiguous CPU tensors. */
int ms_transform_apply_into(ms_context *ctx, const ms_transform *ops, int n, uint64_t seed,
                            uint64_t epoch, uint64_t index, const ms_tensor *img,
                            const ms_tensor *label, ms_tensor *img_dst, ms_tensor *label_dst);

/* ---- metrics and event files ---- */
/* accum (i64 [C, C], contiguous, CPU; row = label, column = prediction) += the count of
 * each (label, pred) pair over the positions whose label is not ignore_index. pred and
 * label have the same shape; integer dtypes (i64, i32, u8). A label outside [0, C) other
 * than ignore_index, or a counted prediction outside [0, C), is an error naming it. */
int ms_confusion_matrix(ms_context *ctx, const ms_tensor *pred, const ms_tensor *label,
                        int64_t num_classes, int64_t ignore_index, ms_tensor *accum);
/* counts (i64 [C], contiguous, CPU) += how many positions of label hold each class
 * (ignore_index skipped; other values outside [0, C) are an error naming them). */
int ms_label_counts(ms_context *ctx, const ms_tensor *label, int64_t num_classes,
                    int64_t ignore_index, ms_tensor *counts);
/* The k-th smallest (1-based, 1 <= k <= numel) element of a floating tensor; NaN is an error. */
int ms_kth_smallest(ms_context *ctx, const ms_tensor *x, int64_t k, double *out);
/* CRC-32C (Castagnoli): start with crc = 0; pass a result back in to continue. */
uint32_t ms_crc32c(uint32_t crc, const void *data, int64_t nbytes);
/* Wall-clock time (seconds since the Unix epoch, microsecond resolution). */
double ms_wall_time(void);
/* TFRecord files (TensorBoard event files): each record is u64 length, masked CRC-32C of
 * the length, the data, masked CRC-32C of the data (mask: ((c >> 15) | (c << 17)) + 0xa282ead8). */
typedef struct ms_tfevents ms_tfevents;
/* Creates logdir (and parents) and a new file events.out.tfevents.<unix time>.<host>.<pid>.<n>
 * in it (suffix appended when not NULL). */
int ms_tfevents_create(const char *logdir, const char *suffix, ms_tfevents **out);
/* Opens path for appending records (created when absent). */
int ms_tfevents_open(const char *path, ms_tfevents **out);
const char *ms_tfevents_path(const ms_tfevents *w);
/* Appends one framed record (buffered; flush to make it visible). */
int ms_tfevents_write(ms_tfevents *w, const void *data, int64_t nbytes);
int ms_tfevents_flush(ms_tfevents *w);
/* Flushes, closes and frees (always frees; the status tells whether the flush worked). */
int ms_tfevents_close(ms_tfevents *w);
/* A PNG file's bytes in memory, for img and palette as ms_png_write takes them; *out is
 * malloc'd: release it with ms_buffer_free. */
int ms_png_encode(ms_context *ctx, const ms_tensor *img, const uint8_t *palette_rgb,
                  int palette_len, uint8_t **out, int64_t *nbytes);
void ms_buffer_free(void *p);

/* ---- the batch loader (csrc/io/loader.c) -------------------------------------------------- */
typedef struct ms_loader ms_loader;
typedef struct ms_loader_config {
  int32_t batch_size;
  int32_t num_workers; /* decoding threads; 0 loads in the caller's thread */
  int32_t prefetch;    /* batches each worker may run ahead (default 2) */
  int32_t shuffle;     /* a new seeded permutation every epoch */
  int32_t drop_last;
  int32_t rank;        /* shard: this rank takes elements rank, rank + world_size, ... of */
  int32_t world_size;  /*   each epoch's order, padded by wrapping to a multiple */
  int32_t skip_bad;    /* replace an unreadable sample by the next good one (logged, counted) */
  int32_t num_classes; /* label values must be < num_classes or ignore_index (0: unchecked) */
  int32_t ignore_index;
  int32_t reduce_zero_label; /* labels as decoded: 0 -> 255, c -> c - 1, 255 stays (ADE20K) */
  int32_t reserved;
  uint64_t seed;
} ms_loader_config;
/* ops (copied) run on every sample; batch k of epoch e holds positions k*B.. of e's order;
 * a sample's augmentation depends on (seed, epoch, dataset index) only, so batches are the
 * same whatever num_workers is. */
int ms_loader_new(ms_context *ctx, const ms_dataset *ds, const ms_loader_config *cfg,
                  const ms_transform *ops, int n_ops, ms_loader **out);
/* Stops and joins the workers (safe with batches still queued). */
void ms_loader_free(ms_loader *loader);
/* The next batch, endlessly across epochs: images f32 [B, 3, H, W], labels i64 [B, H, W]
 * (NULL without labels; labels may be NULL to drop them); *epoch and *index (may be NULL)
 * say which batch it was. A bad sample's error (naming the file and the list line) is
 * returned here, on the caller's thread; the position still moves past that batch. */
int ms_loader_next(ms_loader *loader, ms_tensor **images, ms_tensor **labels, int64_t *epoch,
                   int64_t *index);
int64_t ms_loader_batches_per_epoch(const ms_loader *loader);
int64_t ms_loader_samples_per_epoch(const ms_loader *loader);
int64_t ms_loader_skipped(const ms_loader *loader);
/* Where the next batch comes from; seek restarts the workers there (resume). */
int ms_loader_position(const ms_loader *loader, int64_t *epoch, int64_t *batch);
int ms_loader_seek(ms_loader *loader, int64_t epoch, int64_t batch);

/* ---- YAML (io/yaml.c, libyaml) ---- */
/* One YAML document text[0..len) as flat records for the Lua config reader (see yaml.c);
 * name labels errors ("file:line: ..."). Anchors, aliases and explicit tags are refused.
 * *out is freed with ms_yaml_free. */
int ms_yaml_events(const char *text, int64_t len, const char *name, char **out, int64_t *out_len);
void ms_yaml_free(char *text);

/* MS_CDEF_END */

#ifdef __cplusplus
}
#endif
#endif /* MOONSEG_H */
