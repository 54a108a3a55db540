/* image.c: image I/O entry points: whole-file reads, format sniffing, pixel staging. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "image.h"

int ms_io_read_file(const char *op, const char *path, uint8_t **data, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return ms_fail(MS_ERR_IO, "%s: cannot open %s: %s", op, path, strerror(errno));
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0) {
    int e = errno;
    fclose(f);
    return ms_fail(MS_ERR_IO, "%s: cannot read %s: %s", op, path, strerror(e));
  }
  if (!S_ISREG(sb.st_mode)) {
    fclose(f);
    return ms_fail(MS_ERR_IO, "%s: cannot read %s: %s", op, path,
                   S_ISDIR(sb.st_mode) ? "is a directory" : "not a regular file");
  }
  size_t size = (size_t)sb.st_size;
  uint8_t *buf = malloc(size ? size : 1);
  if (!buf) {
    fclose(f);
    return ms_fail(MS_ERR_OOM, "%s: cannot allocate %zu bytes to read %s", op, size, path);
  }
  size_t got = fread(buf, 1, size, f);
  int bad = ferror(f);
  fclose(f);
  if (got != size || bad) {
    free(buf);
    return ms_fail(MS_ERR_IO, "%s: short read of %s (%zu of %zu bytes)", op, path, got, size);
  }
  *data = buf;
  *n = size;
  return MS_OK;
}

static int decode(const uint8_t *d, size_t n, ms_image_mode mode, const char *op, const char *name,
                  ms_tensor **out) {
  static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
  if (n == 0) return ms_fail(MS_ERR_IO, "%s: %s: empty file, not an image", op, name);
  if (n >= 8 && memcmp(d, png_magic, 8) == 0) return ms_png_decode(d, n, mode, op, name, out);
  if (n >= 3 && d[0] == 0xff && d[1] == 0xd8 && d[2] == 0xff)
    return ms_jpeg_decode(d, n, mode, op, name, out);
  char hex[8 * 3 + 1] = {0};
  for (size_t i = 0; i < n && i < 8; i++)
    snprintf(hex + 3 * i, 4, " %02x", d[i]);
  return ms_fail(MS_ERR_IO, "%s: %s: unknown image format (neither PNG nor JPEG; first bytes%s)",
                 op, name, hex);
}

static int check_mode(const char *op, int mode, ms_tensor **out) {
  if (!out) return ms_fail(MS_ERR_INVALID, "%s: out is NULL", op);
  if (mode < MS_IMAGE_RGB || mode > MS_IMAGE_UNCHANGED)
    return ms_fail(MS_ERR_INVALID, "%s: unknown mode %d (0 image, 1 label, 2 unchanged)", op, mode);
  return MS_OK;
}

int ms_image_read(ms_context *ctx, const char *path, ms_image_mode mode, ms_tensor **out) {
  (void)ctx;
  int st = check_mode("image_read", mode, out);
  if (st) return st;
  if (!path) return ms_fail(MS_ERR_INVALID, "image_read: path is NULL");
  uint8_t *data;
  size_t n;
  if ((st = ms_io_read_file("image_read", path, &data, &n))) return st;
  st = decode(data, n, mode, "image_read", path, out);
  free(data);
  return st;
}

int ms_image_decode(ms_context *ctx, const void *data, int64_t nbytes, ms_image_mode mode,
                    const char *name, ms_tensor **out) {
  (void)ctx;
  int st = check_mode("image_decode", mode, out);
  if (st) return st;
  if (!name) name = "<memory>";
  if (nbytes < 0 || (!data && nbytes))
    return ms_fail(MS_ERR_INVALID, "image_decode: %s: bad buffer (%lld bytes at %p)", name,
                   (long long)nbytes, data);
  return decode(data, (size_t)nbytes, mode, "image_decode", name, out);
}

int ms_io_host_pixels(ms_context *ctx, const char *op, const ms_tensor *img, ms_tensor **out) {
  if (ms_check_tensor(op, "image", img)) return MS_ERR_INVALID;
  if (img->storage->device != MS_CPU) return ms_to_device(ctx, img, MS_CPU, 0, out);
  return ms_contiguous(ctx, img, out);
}

int ms_io_write_atomic(const char *op, const char *path, const void *data, size_t n) {
  ms_atomic_file f;
  int st = ms_atomic_open(&f, path);
  if (!st && (st = ms_atomic_write(&f, data, (int64_t)n))) ms_atomic_abort(&f);
  if (!st) st = ms_atomic_commit(&f);
  if (st) { /* prefix the op; copy first, the message buffer is ms_fail's target */
    char msg[512];
    snprintf(msg, sizeof msg, "%s", ms_last_error());
    return ms_fail(st, "%s: %s", op, msg);
  }
  return MS_OK;
}
