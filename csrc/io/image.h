/* image.h: internals shared by the image codecs of csrc/io (PNG, JPEG, file helpers). */
#ifndef MS_IO_IMAGE_H
#define MS_IO_IMAGE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../core/internal.h"

/* Largest image (pixels) a decoder accepts: guards against decompression bombs. */
#define MS_IMAGE_MAX_PIXELS ((int64_t)1 << 30)
/* The most pixels a file of nbytes can plausibly hold: a header claiming more is corrupt (or
 * hostile) and is refused before the output is allocated. JPEG needs at least 2 bits per 8x8
 * block (a zero DC difference and an end-of-block code), 256 pixels per byte, given a 4x
 * margin; deflate expands at most ~1032:1 and 1-bit PNGs pack 8 pixels a byte. Either way
 * with a floor of one megapixel. */
static inline int64_t ms_image_plausible_pixels(int64_t nbytes, int is_jpeg) {
  int64_t cap = nbytes * (is_jpeg ? 1024 : 8256);
  return cap < ((int64_t)1 << 20) ? ((int64_t)1 << 20) : cap;
}

/* Decoders: data/n is the whole file; op and name only feed error messages. */
int ms_png_decode(const uint8_t *data, size_t n, ms_image_mode mode, const char *op,
                  const char *name, ms_tensor **out);
int ms_jpeg_decode(const uint8_t *data, size_t n, ms_image_mode mode, const char *op,
                   const char *name, ms_tensor **out);

/* Encodes img (and palette) as ms_png_write does into a malloc'd *bytes of *n bytes; op and
 * name (the target, for messages) only feed error messages. */
int ms_png_encode_mem(ms_context *ctx, const char *op, const char *name, const ms_tensor *img,
                      const uint8_t *palette_rgb, int palette_len, uint8_t **bytes, size_t *n);

/* Reads a whole file into a malloc'd buffer (MS_ERR_IO naming the file on failure). */
int ms_io_read_file(const char *op, const char *path, uint8_t **data, size_t *n);

/* Writes n bytes to path atomically (temporary, fsync, rename: atomic_file.h); on
 * failure no file is left at path and the message names op and path. */
int ms_io_write_atomic(const char *op, const char *path, const void *data, size_t n);

/* A contiguous host copy (or alias) of img to read pixels from; free with ms_tensor_free. */
int ms_io_host_pixels(ms_context *ctx, const char *op, const ms_tensor *img, ms_tensor **out);

#endif
