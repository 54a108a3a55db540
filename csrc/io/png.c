/* png.c: PNG decoding and atomic PNG writing through libpng, longjmp contained in here. */
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "png_fast.h"

/* libpng reports errors by longjmp: every libpng call runs inside one function whose
 * setjmp catches them, and everything it allocates hangs off a state struct the caller
 * frees, so nothing leaks and no longjmp ever crosses into Lua. */

static void on_error(png_structp png, png_const_charp msg) {
  char *buf = png_get_error_ptr(png);
  snprintf(buf, 256, "%s", msg);
  png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg;
}

/* ---- decoding -------------------------------------------------------------------------- */
typedef struct png_dec {
  png_structp png;
  png_infop info;
  const uint8_t *data;
  size_t n, pos;
  ms_image_mode mode;
  const char *op, *name;
  ms_tensor *out;
  uint8_t *buf16;  /* 16-bit samples before widening to i32 */
  png_bytep *rows; /* row pointers */
  char msg[256];   /* libpng's error message */
} png_dec;

static void read_mem(png_structp png, png_bytep dst, size_t len) {
  png_dec *d = png_get_io_ptr(png);
  if (len > d->n - d->pos) png_error(png, "unexpected end of data (file truncated)");
  memcpy(dst, d->data + d->pos, len);
  d->pos += len;
}

static const char *color_type_name(int ct) {
  switch (ct) {
  case PNG_COLOR_TYPE_GRAY: return "gray";
  case PNG_COLOR_TYPE_GRAY_ALPHA: return "gray+alpha";
  case PNG_COLOR_TYPE_RGB: return "RGB";
  case PNG_COLOR_TYPE_RGB_ALPHA: return "RGBA";
  case PNG_COLOR_TYPE_PALETTE: return "palette";
  default: return "unknown";
  }
}

/* Chooses libpng's transforms for d->mode; returns a status (message set) on a
 * combination the mode refuses. */
static int set_transforms(png_dec *d, int bit_depth, int ct) {
  png_structp png = d->png;
  int has_trns = png_get_valid(png, d->info, PNG_INFO_tRNS) != 0;
  switch (d->mode) {
  case MS_IMAGE_RGB:
    if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if ((ct & PNG_COLOR_MASK_COLOR) == 0) {
      if (bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
      png_set_gray_to_rgb(png);
    }
    if (bit_depth == 16) png_set_scale_16(png);
    png_set_strip_alpha(png);
    break;
  case MS_IMAGE_LABEL:
    if (ct != PNG_COLOR_TYPE_GRAY && ct != PNG_COLOR_TYPE_PALETTE)
      return ms_fail(MS_ERR_IO,
                     "%s: %s: a label image must be a single-channel (gray or palette) PNG, this "
                     "one is %s",
                     d->op, d->name, color_type_name(ct));
    if (bit_depth < 8) png_set_packing(png); /* one byte per value, values kept */
    break;
  case MS_IMAGE_UNCHANGED:
    if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ct == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (has_trns) png_set_tRNS_to_alpha(png);
    break;
  }
  png_set_interlace_handling(png);
  png_read_update_info(png, d->info);
  return MS_OK;
}

/* Runs all of libpng's decoding; returns 1 when libpng failed (message in d->msg),
 * another non-zero status when we refused the file (message set), 0 on success. */
static int decode_inner(png_dec *d) {
  if (setjmp(png_jmpbuf(d->png))) return 1;
  png_set_read_fn(d->png, d, read_mem);
  png_read_info(d->png, d->info);
  png_uint_32 w = png_get_image_width(d->png, d->info);
  png_uint_32 h = png_get_image_height(d->png, d->info);
  int st =
      set_transforms(d, png_get_bit_depth(d->png, d->info), png_get_color_type(d->png, d->info));
  if (st) return st;
  if ((int64_t)w * h > MS_IMAGE_MAX_PIXELS)
    return ms_fail(MS_ERR_IO, "%s: %s: PNG of %u x %u pixels is too large (limit %lld pixels)",
                   d->op, d->name, (unsigned)w, (unsigned)h, (long long)MS_IMAGE_MAX_PIXELS);
  if ((int64_t)w * h > ms_image_plausible_pixels((int64_t)d->n, 0))
    return ms_fail(MS_ERR_IO,
                   "%s: %s: corrupt PNG: its header claims %u x %u pixels, more than %lld "
                   "bytes can hold",
                   d->op, d->name, (unsigned)w, (unsigned)h, (long long)d->n);
  int c = png_get_channels(d->png, d->info);
  int depth = png_get_bit_depth(d->png, d->info);
  size_t rowbytes = png_get_rowbytes(d->png, d->info);
  int64_t bps = depth == 16 ? 2 : 1;
  if ((depth != 8 && depth != 16) || rowbytes != (size_t)w * c * bps ||
      (d->mode == MS_IMAGE_RGB && (c != 3 || depth != 8)) || (d->mode == MS_IMAGE_LABEL && c != 1))
    return ms_fail(MS_ERR_INTERNAL,
                   "%s: %s: unexpected PNG layout after transforms (%d channels "
                   "of %d bits, %zu bytes per row)",
                   d->op, d->name, c, depth, rowbytes);
  int64_t shape[3] = {h, w, c};
  int ndim = d->mode == MS_IMAGE_LABEL ? 2 : 3;
  if ((st = ms_tensor_new(shape, ndim, depth == 16 ? MS_I32 : MS_U8, MS_CPU, 0, &d->out)))
    return st;
  uint8_t *base = (uint8_t *)ms_data(d->out);
  if (depth == 16) {
    if (!(base = d->buf16 = malloc(rowbytes * h + 1)))
      return ms_fail(MS_ERR_OOM, "%s: %s: out of memory", d->op, d->name);
  }
  if (!(d->rows = malloc(sizeof(png_bytep) * (h ? h : 1))))
    return ms_fail(MS_ERR_OOM, "%s: %s: out of memory", d->op, d->name);
  for (png_uint_32 y = 0; y < h; y++)
    d->rows[y] = base + (size_t)y * rowbytes;
  png_read_image(d->png, d->rows);
  png_read_end(d->png, NULL);
  if (depth == 16) { /* big-endian samples -> i32 values */
    int32_t *dst = (int32_t *)ms_data(d->out);
    size_t count = (size_t)w * h * c;
    for (size_t i = 0; i < count; i++)
      dst[i] = (d->buf16[2 * i] << 8) | d->buf16[2 * i + 1];
  }
  return MS_OK;
}

int ms_png_decode(const uint8_t *data, size_t n, ms_image_mode mode, const char *op,
                  const char *name, ms_tensor **out) {
  /* The fast path takes common files; MOONSEG_PNG_DECODER=libpng forces libpng (tests). */
  const char *which = getenv("MOONSEG_PNG_DECODER");
  if (!which || strcmp(which, "libpng") != 0) {
    int fst = ms_png_fast_decode(data, n, mode, op, name, out);
    if (fst != MS_PNG_FALLBACK) return fst;
  }
  png_dec d;
  memset(&d, 0, sizeof d);
  d.data = data;
  d.n = n;
  d.mode = mode;
  d.op = op;
  d.name = name;
  d.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, d.msg, on_error, on_warning);
  if (!d.png) return ms_fail(MS_ERR_INTERNAL, "%s: %s: png_create_read_struct failed", op, name);
  d.info = png_create_info_struct(d.png);
  int st = d.info ? decode_inner(&d) : ms_fail(MS_ERR_OOM, "%s: %s: out of memory", op, name);
  png_destroy_read_struct(&d.png, &d.info, NULL);
  free(d.rows);
  free(d.buf16);
  if (st == 1)
    st = ms_fail(MS_ERR_IO, "%s: %s: corrupt or truncated PNG (libpng: %s)", op, name, d.msg);
  if (st) {
    ms_tensor_free(d.out);
    return st;
  }
  *out = d.out;
  return MS_OK;
}

/* ---- writing --------------------------------------------------------------------------- */
typedef struct png_enc {
  png_structp png;
  png_infop info;
  uint8_t *bytes; /* the encoded file */
  size_t len, cap;
  const ms_tensor *img; /* contiguous host pixels */
  int color_type, depth;
  const uint8_t *palette;
  int palette_len;
  uint8_t *buf16; /* big-endian 16-bit copy */
  png_bytep *rows;
  char msg[256];
} png_enc;

static void write_mem(png_structp png, png_bytep src, size_t len) {
  png_enc *e = png_get_io_ptr(png);
  if (len > e->cap - e->len) {
    size_t cap = e->cap ? e->cap : 1 << 16;
    while (cap - e->len < len)
      cap *= 2;
    uint8_t *b = realloc(e->bytes, cap);
    if (!b) png_error(png, "out of memory");
    e->bytes = b;
    e->cap = cap;
  }
  memcpy(e->bytes + e->len, src, len);
  e->len += len;
}

static void flush_mem(png_structp png) { (void)png; }

static int encode_inner(png_enc *e) {
  if (setjmp(png_jmpbuf(e->png))) return 1;
  int64_t h = e->img->shape[0], w = e->img->shape[1];
  int c = e->img->ndim == 3 ? (int)e->img->shape[2] : 1;
  png_set_write_fn(e->png, e, write_mem, flush_mem);
  png_set_IHDR(e->png, e->info, (png_uint_32)w, (png_uint_32)h, e->depth, e->color_type,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (e->palette) {
    png_color pal[256];
    for (int i = 0; i < e->palette_len; i++) {
      pal[i].red = e->palette[3 * i];
      pal[i].green = e->palette[3 * i + 1];
      pal[i].blue = e->palette[3 * i + 2];
    }
    png_set_PLTE(e->png, e->info, pal, e->palette_len);
  }
  png_write_info(e->png, e->info);
  size_t rowbytes = (size_t)w * c * (e->depth / 8);
  uint8_t *base = (uint8_t *)ms_data(e->img);
  if (e->depth == 16) {
    size_t count = (size_t)w * h * c;
    if (!(base = e->buf16 = malloc(count * 2 + 1))) return MS_ERR_OOM;
    int is64 = e->img->dtype == MS_I64;
    const int64_t *s64 = (const int64_t *)ms_data(e->img);
    const int32_t *s32 = (const int32_t *)ms_data(e->img);
    for (size_t i = 0; i < count; i++) {
      int64_t v = is64 ? s64[i] : s32[i];
      base[2 * i] = (uint8_t)(v >> 8);
      base[2 * i + 1] = (uint8_t)v;
    }
  }
  if (!(e->rows = malloc(sizeof(png_bytep) * (size_t)h))) return MS_ERR_OOM;
  for (int64_t y = 0; y < h; y++)
    e->rows[y] = base + (size_t)y * rowbytes;
  png_write_image(e->png, e->rows);
  png_write_end(e->png, NULL);
  return MS_OK;
}

/* Checks shape, dtype, value range and palette; sets color type and bit depth. */
static int check_png_image(const char *op, const ms_tensor *t, const uint8_t *palette,
                           int palette_len, int *color_type, int *depth) {
  int c = t->ndim == 3 ? (int)t->shape[2] : 1;
  if (t->ndim < 2 || t->ndim > 3 || c < 1 || c > 4)
    return ms_fail(MS_ERR_INVALID, "%s: needs [H, W] or [H, W, C] with C in 1..4, got %s", op,
                   ms_desc(t));
  if (t->shape[0] < 1 || t->shape[1] < 1 || t->shape[0] > 0x7fffffff || t->shape[1] > 0x7fffffff)
    return ms_fail(MS_ERR_INVALID, "%s: image size %s out of PNG's range", op, ms_desc(t));
  if (t->dtype == MS_U8)
    *depth = 8;
  else if (t->dtype == MS_I32 || t->dtype == MS_I64)
    *depth = 16;
  else
    return ms_fail(MS_ERR_DTYPE, "%s: needs u8 (8-bit) or i32/i64 (16-bit) pixels, got %s", op,
                   ms_desc(t));
  int64_t n = ms_numel(t);
  if (*depth == 16) {
    for (int64_t i = 0; i < n; i++) {
      int64_t v =
          t->dtype == MS_I64 ? ((const int64_t *)ms_data(t))[i] : ((const int32_t *)ms_data(t))[i];
      if (v < 0 || v > 65535)
        return ms_fail(MS_ERR_INVALID,
                       "%s: 16-bit pixel %lld at flat index %lld outside "
                       "[0, 65535] in %s",
                       op, (long long)v, (long long)i, ms_desc(t));
    }
  }
  static const int types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                               PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
  *color_type = types[c];
  if (!palette) return MS_OK;
  if (c != 1 || *depth != 8)
    return ms_fail(MS_ERR_INVALID, "%s: a palette image must be u8 [H, W] indices, got %s", op,
                   ms_desc(t));
  if (palette_len < 1 || palette_len > 256)
    return ms_fail(MS_ERR_INVALID, "%s: palette needs 1..256 colours, got %d", op, palette_len);
  const uint8_t *px = (const uint8_t *)ms_data(t);
  for (int64_t i = 0; i < n; i++)
    if (px[i] >= palette_len)
      return ms_fail(MS_ERR_INVALID,
                     "%s: index %d at flat position %lld has no colour in a "
                     "palette of %d",
                     op, px[i], (long long)i, palette_len);
  *color_type = PNG_COLOR_TYPE_PALETTE;
  return MS_OK;
}

int ms_png_encode_mem(ms_context *ctx, const char *op, const char *name, const ms_tensor *img,
                      const uint8_t *palette_rgb, int palette_len, uint8_t **bytes, size_t *n) {
  *bytes = NULL;
  *n = 0;
  if (!palette_rgb && palette_len)
    return ms_fail(MS_ERR_INVALID, "%s: palette is NULL but palette_len is %d", op, palette_len);
  ms_tensor *px;
  int st = ms_io_host_pixels(ctx, op, img, &px);
  if (st) return st;
  png_enc e;
  memset(&e, 0, sizeof e);
  e.img = px;
  e.palette = palette_rgb;
  e.palette_len = palette_len;
  if ((st = check_png_image(op, px, palette_rgb, palette_len, &e.color_type, &e.depth))) {
    ms_tensor_free(px);
    return st;
  }
  e.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, e.msg, on_error, on_warning);
  e.info = e.png ? png_create_info_struct(e.png) : NULL;
  st = e.info ? encode_inner(&e) : MS_ERR_OOM;
  png_destroy_write_struct(&e.png, &e.info);
  free(e.rows);
  free(e.buf16);
  ms_tensor_free(px);
  if (st == 1)
    st = ms_fail(MS_ERR_IO, "%s: cannot encode %s (libpng: %s)", op, name, e.msg);
  else if (st)
    st = ms_fail(st, "%s: %s: out of memory", op, name);
  if (st) {
    free(e.bytes);
    return st;
  }
  *bytes = e.bytes;
  *n = e.len;
  return MS_OK;
}

int ms_png_write(ms_context *ctx, const char *path, const ms_tensor *img,
                 const uint8_t *palette_rgb, int palette_len) {
  const char *op = "png_write";
  if (!path) return ms_fail(MS_ERR_INVALID, "%s: path is NULL", op);
  uint8_t *bytes;
  size_t n;
  int st = ms_png_encode_mem(ctx, op, path, img, palette_rgb, palette_len, &bytes, &n);
  if (!st) st = ms_io_write_atomic(op, path, bytes, n);
  free(bytes);
  return st;
}
