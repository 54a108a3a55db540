/* jpeg.c: JPEG decoding and atomic JPEG writing through libjpeg-turbo's TurboJPEG API. */
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "image.h"

/* A warning that means pixels are missing (a truncated file) is an error for us; other
 * warnings (extraneous bytes before a marker, ...) still give a complete image. */
static int warning_is_fatal(const char *msg) { return strstr(msg, "remature end") != NULL; }

int ms_jpeg_decode(const uint8_t *data, size_t n, ms_image_mode mode, const char *op,
                   const char *name, ms_tensor **out) {
  tjhandle tj = tjInitDecompress();
  if (!tj)
    return ms_fail(MS_ERR_INTERNAL, "%s: %s: tjInitDecompress failed: %s", op, name,
                   tjGetErrorStr2(NULL));
  int w, h, subsamp, cs, st = MS_OK;
  ms_tensor *t = NULL;
  if (tjDecompressHeader3(tj, data, (unsigned long)n, &w, &h, &subsamp, &cs) != 0) {
    st = ms_fail(MS_ERR_IO, "%s: %s: corrupt or truncated JPEG (libjpeg: %s)", op, name,
                 tjGetErrorStr2(tj));
    goto done;
  }
  int gray = cs == TJCS_GRAY;
  if (cs == TJCS_CMYK || cs == TJCS_YCCK) {
    st = ms_fail(MS_ERR_UNSUPPORTED, "%s: %s: CMYK JPEGs are not supported; convert it to RGB", op,
                 name);
    goto done;
  }
  if (mode == MS_IMAGE_LABEL && !gray) {
    st = ms_fail(MS_ERR_IO, "%s: %s: a label image must be single-channel; this is a color JPEG",
                 op, name);
    goto done;
  }
  if (w <= 0 || h <= 0 || (int64_t)w * h > MS_IMAGE_MAX_PIXELS) {
    st = ms_fail(MS_ERR_IO, "%s: %s: JPEG of %d x %d pixels is out of range", op, name, w, h);
    goto done;
  }
  if ((int64_t)w * h > ms_image_plausible_pixels((int64_t)n, 1)) {
    st = ms_fail(MS_ERR_IO,
                 "%s: %s: corrupt JPEG: its header claims %d x %d pixels, more than %lld "
                 "bytes can hold",
                 op, name, w, h, (long long)n);
    goto done;
  }
  /* Gray files are decoded as gray and expanded to RGB here when the mode asks for RGB. */
  int c_out = mode == MS_IMAGE_LABEL ? 1 : (mode == MS_IMAGE_RGB || !gray) ? 3 : 1;
  int64_t shape[3] = {h, w, c_out};
  if ((st = ms_tensor_new(shape, mode == MS_IMAGE_LABEL ? 2 : 3, MS_U8, MS_CPU, 0, &t))) goto done;
  uint8_t *px = (uint8_t *)ms_data(t);
  if (tjDecompress2(tj, data, (unsigned long)n, px, w, 0, h, gray ? TJPF_GRAY : TJPF_RGB,
                    TJFLAG_LIMITSCANS) != 0) {
    const char *msg = tjGetErrorStr2(tj);
    if (tjGetErrorCode(tj) != TJERR_WARNING || warning_is_fatal(msg)) {
      st = ms_fail(MS_ERR_IO, "%s: %s: corrupt or truncated JPEG (libjpeg: %s)", op, name, msg);
      goto done;
    }
  }
  if (gray && c_out == 3) { /* expand in place, back to front */
    for (int64_t i = (int64_t)w * h - 1; i >= 0; i--) {
      uint8_t v = px[i];
      px[3 * i] = px[3 * i + 1] = px[3 * i + 2] = v;
    }
  }
done:
  tjDestroy(tj);
  if (st) {
    ms_tensor_free(t);
    return st;
  }
  *out = t;
  return MS_OK;
}

int ms_jpeg_write(ms_context *ctx, const char *path, const ms_tensor *img, int quality,
                  int subsampling) {
  const char *op = "jpeg_write";
  if (!path) return ms_fail(MS_ERR_INVALID, "%s: path is NULL", op);
  if (quality < 1 || quality > 100)
    return ms_fail(MS_ERR_INVALID, "%s: quality must be in 1..100, got %d", op, quality);
  int tjsub = subsampling == 444   ? TJSAMP_444
              : subsampling == 422 ? TJSAMP_422
              : subsampling == 420 ? TJSAMP_420
                                   : -1;
  if (tjsub < 0)
    return ms_fail(MS_ERR_INVALID, "%s: subsampling must be 444, 422 or 420, got %d", op,
                   subsampling);
  ms_tensor *px;
  int st = ms_io_host_pixels(ctx, op, img, &px);
  if (st) return st;
  int c = px->ndim == 3 ? (int)px->shape[2] : 1;
  if (px->dtype != MS_U8 || px->ndim < 2 || px->ndim > 3 || (c != 1 && c != 3) ||
      px->shape[0] < 1 || px->shape[1] < 1 || px->shape[0] > 65535 || px->shape[1] > 65535) {
    st = ms_fail(px->dtype != MS_U8 ? MS_ERR_DTYPE : MS_ERR_INVALID,
                 "%s: needs u8 [H, W], [H, W, 1] or [H, W, 3] with H, W in 1..65535, got %s", op,
                 ms_desc(px));
    ms_tensor_free(px);
    return st;
  }
  tjhandle tj = tjInitCompress();
  unsigned char *jpeg = NULL;
  unsigned long size = 0;
  if (!tj) {
    ms_tensor_free(px);
    return ms_fail(MS_ERR_INTERNAL, "%s: tjInitCompress failed: %s", op, tjGetErrorStr2(NULL));
  }
  if (tjCompress2(tj, (const unsigned char *)ms_data(px), (int)px->shape[1], 0, (int)px->shape[0],
                  c == 1 ? TJPF_GRAY : TJPF_RGB, &jpeg, &size, c == 1 ? TJSAMP_GRAY : tjsub,
                  quality, TJFLAG_ACCURATEDCT) != 0)
    st = ms_fail(MS_ERR_INTERNAL, "%s: %s: tjCompress2 failed: %s", op, path, tjGetErrorStr2(tj));
  ms_tensor_free(px);
  tjDestroy(tj);
  if (!st) st = ms_io_write_atomic(op, path, jpeg, size);
  tjFree(jpeg);
  return st;
}
