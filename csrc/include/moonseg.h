/* moonseg.h: the one public C API of moonseg (plain C that LuaJIT's ffi.cdef parses). */
#ifndef MOONSEG_H
#define MOONSEG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever anything between MS_CDEF_BEGIN and MS_CDEF_END changes. */
#define MS_ABI_VERSION 1

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
  MS_ERR_INTERNAL = -8     /* a library call underneath failed */
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
int64_t ms_dtype_size(ms_dtype dtype);
const char *ms_dtype_name(ms_dtype dtype);
int ms_memory_stats_get(ms_device_type device, int index, ms_memory_stats *out);
int ms_memory_stats_reset_peak(ms_device_type device, int index);

/* ---- context: thread count, backend handles ----------------------------- */
int ms_context_new(ms_context **out);
void ms_context_free(ms_context *ctx);
int ms_context_set_num_threads(ms_context *ctx, int num_threads);
int ms_context_num_threads(const ms_context *ctx);

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

/* ---- creation and copies -------------------------------------------------- */
int ms_empty(ms_context *ctx, const int64_t *shape, int ndim, ms_dtype dtype,
             ms_device_type device, int device_index, ms_tensor **out);
int ms_full(ms_context *ctx, const int64_t *shape, int ndim, ms_dtype dtype,
            ms_device_type device, int device_index, double value, ms_tensor **out);
/* start, start+step, ... while < end (> end for a negative step). */
int ms_arange(ms_context *ctx, double start, double end, double step, ms_dtype dtype,
              ms_device_type device, int device_index, ms_tensor **out);
/* Copies nbytes of host memory (contiguous, row-major, of dtype) into a new tensor. */
int ms_from_host(ms_context *ctx, const void *data, int64_t nbytes, const int64_t *shape,
                 int ndim, ms_dtype dtype, ms_device_type device, int device_index,
                 ms_tensor **out);
/* Writes all elements of t, row-major, converted to double. n must be numel. */
int ms_read_f64(ms_context *ctx, const ms_tensor *t, double *dst, int64_t n);
/* Writes all elements row-major in t's own dtype into dst (nbytes = numel*size). */
int ms_to_host(ms_context *ctx, const ms_tensor *t, void *dst, int64_t nbytes);
int ms_fill_(ms_context *ctx, ms_tensor *t, double value);
/* dst[...] = src broadcast to dst's shape, converted to dst's dtype. */
int ms_copy_(ms_context *ctx, ms_tensor *dst, const ms_tensor *src);
int ms_contiguous(ms_context *ctx, const ms_tensor *t, ms_tensor **out);
int ms_cast(ms_context *ctx, const ms_tensor *t, ms_dtype dtype, ms_tensor **out);
int ms_to_device(ms_context *ctx, const ms_tensor *t, ms_device_type device,
                 int device_index, ms_tensor **out);

/* In-place random fills from gen (advances gen->offset). */
int ms_uniform_(ms_context *ctx, ms_generator *gen, ms_tensor *t, double low, double high);
int ms_normal_(ms_context *ctx, ms_generator *gen, ms_tensor *t, double mean, double std);
/* Integers uniformly in [low, high). */
int ms_randint_(ms_context *ctx, ms_generator *gen, ms_tensor *t, int64_t low, int64_t high);
/* Keeps each element with probability 1-p and scales kept ones by 1/(1-p);
 * mask (same dtype as x) holds 0 or 1/(1-p) so backward is grad * mask. */
int ms_dropout(ms_context *ctx, ms_generator *gen, const ms_tensor *x, double p,
               ms_tensor **out, ms_tensor **mask);

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
  MS_CLAMP = 12,     /* p0 = min, p1 = max (use +-inf for one-sided) */
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
int ms_binary_scalar_into(ms_context *ctx, ms_binop op, const ms_tensor *a, double s,
                          int reverse, ms_tensor *dst);
int ms_unary(ms_context *ctx, ms_unop op, const ms_tensor *x, double p0, double p1,
             ms_tensor **out);
int ms_unary_into(ms_context *ctx, ms_unop op, const ms_tensor *x, double p0, double p1,
                  ms_tensor *dst);
/* grad_in = grad_out * d op(x)/dx; y = op(x) may be passed (or NULL) where the
 * derivative is cheaper from the output (exp, sigmoid, tanh, relu). */
int ms_unary_backward(ms_context *ctx, ms_unop op, const ms_tensor *grad_out,
                      const ms_tensor *x, const ms_tensor *y, double p0, double p1,
                      ms_tensor **grad_in);
/* out = cond ? a : b, broadcasting all three. */
int ms_where(ms_context *ctx, const ms_tensor *cond, const ms_tensor *a, const ms_tensor *b,
             ms_tensor **out);
/* dst += alpha * src (src broadcast to dst): the optimizer's axpy. */
int ms_axpy_(ms_context *ctx, ms_tensor *dst, double alpha, const ms_tensor *src);

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
                  int training, double momentum, double eps, ms_tensor **out,
                  ms_tensor **save_mean, ms_tensor **save_invstd);
int ms_batch_norm_backward(ms_context *ctx, const ms_tensor *grad_out, const ms_tensor *x,
                           const ms_tensor *weight, const ms_tensor *save_mean,
                           const ms_tensor *save_invstd, int training, ms_tensor **dx,
                           ms_tensor **dweight, ms_tensor **dbias);
/* Normalises over the last normalized_ndim dims; weight/bias shaped like them or NULL. */
int ms_layer_norm(ms_context *ctx, const ms_tensor *x, int normalized_ndim,
                  const ms_tensor *weight, const ms_tensor *bias, double eps, ms_tensor **out,
                  ms_tensor **save_mean, ms_tensor **save_rstd);
int ms_layer_norm_backward(ms_context *ctx, const ms_tensor *grad_out, const ms_tensor *x,
                           int normalized_ndim, const ms_tensor *weight,
                           const ms_tensor *save_mean, const ms_tensor *save_rstd,
                           ms_tensor **dx, ms_tensor **dweight, ms_tensor **dbias);

/* ---- pooling -------------------------------------------------------------------- */
typedef struct ms_pool2d_params {
  int32_t kernel[2];
  int32_t stride[2];
  int32_t padding[2];
  int32_t ceil_mode;
  int32_t count_include_pad; /* average pooling only */
} ms_pool2d_params;
int ms_max_pool2d(ms_context *ctx, const ms_tensor *x, const ms_pool2d_params *p,
                  ms_tensor **out, ms_tensor **indices);
int ms_max_pool2d_backward(ms_context *ctx, const ms_tensor *grad_out, const ms_tensor *x,
                           const ms_tensor *indices, ms_tensor **dx);
int ms_avg_pool2d(ms_context *ctx, const ms_tensor *x, const ms_pool2d_params *p,
                  ms_tensor **out);
int ms_avg_pool2d_backward(ms_context *ctx, const ms_tensor *grad_out, const ms_tensor *x,
                           const ms_pool2d_params *p, ms_tensor **dx);
int ms_adaptive_avg_pool2d(ms_context *ctx, const ms_tensor *x, int64_t out_h, int64_t out_w,
                           ms_tensor **out);
int ms_adaptive_avg_pool2d_backward(ms_context *ctx, const ms_tensor *grad_out,
                                    const ms_tensor *x, ms_tensor **dx);

/* ---- resize ------------------------------------------------------------------------ */
typedef enum ms_resize_mode { MS_RESIZE_NEAREST = 0, MS_RESIZE_BILINEAR = 1 } ms_resize_mode;
/* x [N, C, H, W] -> [N, C, out_h, out_w]. */
int ms_interpolate(ms_context *ctx, const ms_tensor *x, int64_t out_h, int64_t out_w,
                   ms_resize_mode mode, int align_corners, ms_tensor **out);
int ms_interpolate_backward(ms_context *ctx, const ms_tensor *grad_out, int64_t in_h,
                            int64_t in_w, ms_resize_mode mode, int align_corners,
                            ms_tensor **dx);

/* ---- joining ------------------------------------------------------------------------- */
int ms_cat(ms_context *ctx, ms_tensor *const *xs, int n, int dim, ms_tensor **out);

/* ---- softmax and losses ----------------------------------------------------------------- */
int ms_softmax(ms_context *ctx, const ms_tensor *x, int dim, int log, ms_tensor **out);
/* y is the forward output (softmax or log_softmax). */
int ms_softmax_backward(ms_context *ctx, const ms_tensor *grad_out, const ms_tensor *y,
                        int dim, int log, ms_tensor **dx);
typedef enum ms_reduction { MS_REDUCE_NONE = 0, MS_REDUCE_MEAN = 1, MS_REDUCE_SUM = 2 } ms_reduction;
/* logits [N, C, ...] float, target [N, ...] int64, weight [C] or NULL. Mean divides
 * by the summed weights of non-ignored targets (PyTorch). A target outside
 * [0, C) other than ignore_index is an error naming the value. lse ([N, ...],
 * the per-position log-sum-exp) is kept for the backward. */
int ms_cross_entropy(ms_context *ctx, const ms_tensor *logits, const ms_tensor *target,
                     const ms_tensor *weight, int64_t ignore_index, ms_reduction reduction,
                     ms_tensor **loss, ms_tensor **lse);
int ms_cross_entropy_backward(ms_context *ctx, const ms_tensor *grad_loss,
                              const ms_tensor *logits, const ms_tensor *target,
                              const ms_tensor *weight, int64_t ignore_index,
                              ms_reduction reduction, const ms_tensor *lse,
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

/* MS_CDEF_END */

#ifdef __cplusplus
}
#endif
#endif /* MOONSEG_H */
