/* copy.cu: host<->device and device<->device copies (pinned staging), casts and fills. */
#include <stdlib.h>

#include "cuda_util.cuh"
extern "C" {
#include "../cpu/basic_kernels.h"
}
#include "../core/dtype.h"

#define MS_STAGE_CHUNK ((size_t)8 << 20) /* bytes per pinned staging buffer */

/* ---- kernels ---- */

template <class T, bool Contig> __global__ void copy_same(ms_cu_iter it) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < it.numel; i += stride) {
    if (Contig) {
      ((T *)it.data[0])[i] = ((const T *)it.data[1])[i];
    } else {
      int64_t off[MS_CU_MAX_OPS];
      ms_cu_offsets(it, i, off);
      *(T *)(it.data[0] + off[0]) = *(const T *)(it.data[1] + off[1]);
    }
  }
}

/* Converting copy: integer to integer exactly through int64, anything else through double
 * (float to integer truncates, non-finite gives 0: the CPU's rules). */
__global__ void copy_convert(ms_cu_iter it, ms_dtype dd, ms_dtype sd, int ints) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < it.numel; i += stride) {
    int64_t off[MS_CU_MAX_OPS];
    ms_cu_offsets(it, i, off);
    if (ints)
      ms_cu_store_i64(it.data[0] + off[0], dd, ms_cu_load_i64(it.data[1] + off[1], sd));
    else
      ms_cu_store_f64(it.data[0] + off[0], dd, ms_cu_load_f64(it.data[1] + off[1], sd));
  }
}

template <class T> __global__ void fill_kernel(ms_cu_iter it, T v) {
  int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < it.numel; i += stride) {
    int64_t off[MS_CU_MAX_OPS];
    ms_cu_offsets(it, i, off);
    *(T *)(it.data[0] + off[0]) = v;
  }
}

template <class T> static void launch_same(const ms_cu_iter &it, cudaStream_t s) {
  unsigned nb = ms_cu_blocks(it.numel, 256);
  if (it.contiguous)
    copy_same<T, true><<<nb, 256, 0, s>>>(it);
  else
    copy_same<T, false><<<nb, 256, 0, s>>>(it);
}

static int same_shape(const ms_tensor *a, const ms_tensor *b) {
  return a->ndim == b->ndim && !memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim);
}

int ms_cuda_copy(ms_context *ctx, ms_tensor *dst, const ms_tensor *src) {
  const char *op = "copy_ (cuda)";
  ms_cuda_dev *dev;
  int st = ms_cuda_dev_get(ctx, dst->storage->device_index, op, &dev);
  if (st) return st;
  int64_t n = ms_numel(dst);
  if (n == 0) return MS_OK;
  if (dst->dtype == src->dtype && same_shape(dst, src) && ms_is_contiguous(dst) &&
      ms_is_contiguous(src)) {
    MS_CU(op, cudaMemcpyAsync(ms_data(dst), ms_data(src), (size_t)(n * ms_dtype_size(dst->dtype)),
                              cudaMemcpyDeviceToDevice, dev->stream));
    return MS_OK;
  }
  const ms_tensor *ops[2] = {dst, src};
  ms_cu_iter it;
  ms_cu_iter_make(&it, 2, ops, dst->shape, dst->ndim);
  if (dst->dtype == src->dtype) {
    switch (ms_dtype_size(dst->dtype)) {
    case 1: launch_same<uint8_t>(it, dev->stream); break;
    case 2: launch_same<uint16_t>(it, dev->stream); break;
    case 4: launch_same<uint32_t>(it, dev->stream); break;
    default: launch_same<uint64_t>(it, dev->stream); break;
    }
  } else {
    int ints = !ms_dtype_is_float(dst->dtype) && !ms_dtype_is_float(src->dtype);
    copy_convert<<<ms_cu_blocks(n, 256), 256, 0, dev->stream>>>(it, dst->dtype, src->dtype, ints);
  }
  MS_CU_LAUNCH(op, "copy kernel");
  return MS_OK;
}

int ms_cuda_fill(ms_context *ctx, ms_tensor *t, double value) {
  const char *op = "fill_ (cuda)";
  ms_cuda_dev *dev;
  int st = ms_cuda_dev_get(ctx, t->storage->device_index, op, &dev);
  if (st) return st;
  if (ms_numel(t) == 0) return MS_OK;
  char bytes[8] = {0}; /* the value as the CPU stores it, then copied bit for bit */
  ms_store_f64(bytes, t->dtype, value);
  const ms_tensor *ops[1] = {t};
  ms_cu_iter it;
  ms_cu_iter_make(&it, 1, ops, t->shape, t->ndim);
  unsigned nb = ms_cu_blocks(it.numel, 256);
  switch (ms_dtype_size(t->dtype)) {
  case 1: fill_kernel<uint8_t><<<nb, 256, 0, dev->stream>>>(it, *(uint8_t *)bytes); break;
  case 2: {
    uint16_t v;
    memcpy(&v, bytes, 2);
    fill_kernel<uint16_t><<<nb, 256, 0, dev->stream>>>(it, v);
    break;
  }
  case 4: {
    uint32_t v;
    memcpy(&v, bytes, 4);
    fill_kernel<uint32_t><<<nb, 256, 0, dev->stream>>>(it, v);
    break;
  }
  default: {
    uint64_t v;
    memcpy(&v, bytes, 8);
    fill_kernel<uint64_t><<<nb, 256, 0, dev->stream>>>(it, v);
  }
  }
  MS_CU_LAUNCH(op, "fill kernel");
  return MS_OK;
}

/* ---- host <-> device through the context's two pinned staging buffers ---- */

/* Returns once host memory may be reused; the device side finishes in stream order. */
static int upload(ms_cuda_dev *dev, char *dptr, const char *host, size_t n, const char *op) {
  size_t chunk = n < MS_STAGE_CHUNK ? n : MS_STAGE_CHUNK;
  int st = ms_cuda_pinned(dev, chunk, op);
  if (st) return st;
  int b = 0;
  for (size_t off = 0; off < n; off += chunk, b ^= 1) {
    size_t len = n - off < chunk ? n - off : chunk;
    MS_CU(op, cudaEventSynchronize(dev->pinned_done[b])); /* buffer b's last copy is done */
    memcpy(dev->pinned[b], host + off, len);
    MS_CU(op,
          cudaMemcpyAsync(dptr + off, dev->pinned[b], len, cudaMemcpyHostToDevice, dev->stream));
    MS_CU(op, cudaEventRecord(dev->pinned_done[b], dev->stream));
  }
  return MS_OK;
}

/* Returns when host holds the data. */
static int download(ms_cuda_dev *dev, char *host, const char *dptr, size_t n, const char *op) {
  size_t chunk = n < MS_STAGE_CHUNK ? n : MS_STAGE_CHUNK;
  int st = ms_cuda_pinned(dev, chunk, op);
  if (st) return st;
  size_t pend_off = 0, pend_len = 0;
  int b = 0;
  for (size_t off = 0; off < n; off += chunk, b ^= 1) {
    size_t len = n - off < chunk ? n - off : chunk;
    MS_CU(op,
          cudaMemcpyAsync(dev->pinned[b], dptr + off, len, cudaMemcpyDeviceToHost, dev->stream));
    MS_CU(op, cudaEventRecord(dev->pinned_done[b], dev->stream));
    if (pend_len) { /* the previous chunk (other buffer) overlaps with this one's copy */
      MS_CU(op, cudaEventSynchronize(dev->pinned_done[b ^ 1]));
      memcpy(host + pend_off, dev->pinned[b ^ 1], pend_len);
    }
    pend_off = off, pend_len = len;
  }
  if (pend_len) {
    MS_CU(op, cudaEventSynchronize(dev->pinned_done[b ^ 1]));
    memcpy(host + pend_off, dev->pinned[b ^ 1], pend_len);
  }
  return MS_OK;
}

/* A contiguous tensor shaped like like, with dtype, on (device, index), holding src's values
 * broadcast (src itself, aliased, when that already fits). */
static int dense_copy_of(ms_context *ctx, const ms_tensor *src, const ms_tensor *like,
                         ms_tensor **out) {
  if (ms_is_contiguous(src) && same_shape(src, like)) return ms_tensor_alias(src, out);
  ms_tensor *t;
  int st = ms_tensor_new(like->shape, like->ndim, src->dtype, src->storage->device,
                         src->storage->device_index, &t);
  if (st) return st;
  st = src->storage->device == MS_CPU ? ms_cpu_copy(ctx, t, src) : ms_cuda_copy(ctx, t, src);
  if (st) {
    ms_tensor_free(t);
    return st;
  }
  *out = t;
  return MS_OK;
}

/* dst itself when it can take raw bytes of dtype, else a dense temporary beside it. */
static int landing_for(ms_tensor *dst, ms_dtype dtype, ms_tensor **out) {
  if (ms_is_contiguous(dst) && dst->dtype == dtype) {
    *out = dst;
    return MS_OK;
  }
  return ms_tensor_new(dst->shape, dst->ndim, dtype, dst->storage->device,
                       dst->storage->device_index, out);
}

int ms_cuda_copy_between(ms_context *ctx, ms_tensor *dst, const ms_tensor *src) {
  const char *op = "copy_ (between devices)";
  int64_t n = ms_numel(dst);
  ms_device_type dd = dst->storage->device, sd = src->storage->device;
  int di = dst->storage->device_index, si = src->storage->device_index;
  ms_cuda_dev *ddev = NULL, *sdev = NULL;
  int st = MS_OK;
  if (dd == MS_CUDA && (st = ms_cuda_dev_get(ctx, di, op, &ddev))) return st;
  if (sd == MS_CUDA && (st = ms_cuda_dev_get(ctx, si, op, &sdev))) return st;
  if (n == 0) return MS_OK;
  ms_tensor *dense = NULL, *land = NULL;
  if ((st = dense_copy_of(ctx, src, dst, &dense))) return st;
  if ((st = landing_for(dst, src->dtype, &land))) {
    ms_tensor_free(dense);
    return st;
  }
  size_t nbytes = (size_t)(n * ms_dtype_size(src->dtype));
  if (sd == MS_CPU) {
    st = upload(ddev, ms_data(land), ms_data(dense), nbytes, op);
  } else if (dd == MS_CPU) {
    st = download(sdev, ms_data(land), ms_data(dense), nbytes, op);
  } else { /* device to device: src's work must be done before the peer copy reads it */
    cudaError_t e = cudaStreamSynchronize(sdev->stream);
    if (e == cudaSuccess)
      e = cudaMemcpyPeerAsync(ms_data(land), di, ms_data(dense), si, nbytes, ddev->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(ddev->stream);
    if (e != cudaSuccess) st = ms_cuda_fail(op, "cudaMemcpyPeerAsync(cuda:dst <- cuda:src)", e);
    if (!st) st = ms_cuda_dev_get(ctx, di, op, &ddev); /* make dst's device current again */
  }
  if (!st && land != dst)
    st = dd == MS_CPU ? ms_cpu_copy(ctx, dst, land) : ms_cuda_copy(ctx, dst, land);
  ms_tensor_free(dense);
  if (land != dst) ms_tensor_free(land);
  return st;
}
