/* png_fast.c: fast path for common PNGs: chunk walk with CRC checks, libdeflate inflate, own
 * unfiltering; anything unusual or damaged is handed back to libpng (png.c) to decide. */
#include <libdeflate.h>
#include <stdlib.h>
#include <string.h>

#include "png_fast.h"

/* libpng's default user limits on width and height (png_set_user_limits). */
#define PNG_DIM_LIMIT 1000000u

static uint32_t be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static int is_letter(uint8_t c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }

/* ---- unfiltering (PNG spec section 9) ---------------------------------------------------- */

/* The Paeth predictor without branches (the compiler turns the selects into cmovs). */
static inline int paeth(int a, int b, int c) {
  int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
  int bc = pb <= pc ? b : c;
  return pa <= pb && pa <= pc ? a : bc;
}

/* cur[0..n) = raw reconstructed with filter f against prev (NULL: the row above is zeros);
 * bpp bytes per pixel is a constant in each instance, so the serial loops unroll. cur may
 * equal raw. */
static inline __attribute__((always_inline)) void unfilter_bpp(int f, const uint8_t *raw,
                                                               const uint8_t *prev, uint8_t *cur,
                                                               size_t n, const int bpp) {
  switch (f) {
  case 0:
    if (cur != raw) memcpy(cur, raw, n);
    break;
  case 1:
    for (size_t i = 0; i < (size_t)bpp && i < n; i++)
      cur[i] = raw[i];
    for (size_t i = bpp; i < n; i++)
      cur[i] = (uint8_t)(raw[i] + cur[i - bpp]);
    break;
  case 2:
    if (!prev) {
      if (cur != raw) memcpy(cur, raw, n);
    } else {
      for (size_t i = 0; i < n; i++)
        cur[i] = (uint8_t)(raw[i] + prev[i]);
    }
    break;
  case 3:
    if (!prev) {
      for (size_t i = 0; i < (size_t)bpp && i < n; i++)
        cur[i] = raw[i];
      for (size_t i = bpp; i < n; i++)
        cur[i] = (uint8_t)(raw[i] + (cur[i - bpp] >> 1));
    } else {
      for (size_t i = 0; i < (size_t)bpp && i < n; i++)
        cur[i] = (uint8_t)(raw[i] + (prev[i] >> 1));
      for (size_t i = bpp; i < n; i++)
        cur[i] = (uint8_t)(raw[i] + ((cur[i - bpp] + prev[i]) >> 1));
    }
    break;
  case 4:
    if (!prev) { /* Paeth with a zero row above is Sub */
      for (size_t i = 0; i < (size_t)bpp && i < n; i++)
        cur[i] = raw[i];
      for (size_t i = bpp; i < n; i++)
        cur[i] = (uint8_t)(raw[i] + cur[i - bpp]);
    } else {
      for (size_t i = 0; i < (size_t)bpp && i < n; i++)
        cur[i] = (uint8_t)(raw[i] + prev[i]);
      for (size_t i = bpp; i < n; i++)
        cur[i] = (uint8_t)(raw[i] + paeth(cur[i - bpp], prev[i], prev[i - bpp]));
    }
    break;
  }
}

static void unfilter(int f, const uint8_t *raw, const uint8_t *prev, uint8_t *cur, size_t n,
                     int bpp) {
  switch (bpp) {
  case 1: unfilter_bpp(f, raw, prev, cur, n, 1); break;
  case 2: unfilter_bpp(f, raw, prev, cur, n, 2); break;
  case 3: unfilter_bpp(f, raw, prev, cur, n, 3); break;
  default: unfilter_bpp(f, raw, prev, cur, n, 4); break;
  }
}

/* ---- decoding ------------------------------------------------------------------------------ */

typedef struct {
  uint32_t w, h;
  int ct, chans;       /* colour type, channels in the file */
  const uint8_t *plte; /* palette (RGB triples) */
  int plte_n;
  const uint8_t *idat; /* the first IDAT's data */
  size_t idat_len;     /* total IDAT bytes */
  int idat_chunks;
  const uint8_t *data;
  size_t n;
} png_info;

/* Walks the chunks; returns 0 when the file is one the fast path takes, 1 otherwise. */
static int parse(png_info *pi, ms_image_mode mode) {
  const uint8_t *d = pi->data;
  size_t pos = 8, n = pi->n;
  int seen_ihdr = 0, seen_iend = 0, idat_done = 0;
  while (pos + 12 <= n) {
    uint32_t len = be32(d + pos);
    const uint8_t *type = d + pos + 4, *body = d + pos + 8;
    if (len > 0x7fffffffu || len > n - pos - 12) return 1;
    for (int i = 0; i < 4; i++)
      if (!is_letter(type[i])) return 1;
    if ((uint32_t)libdeflate_crc32(0, type, (size_t)len + 4) != be32(body + len)) return 1;
    int is_idat = memcmp(type, "IDAT", 4) == 0;
    if (!seen_ihdr) {
      if (memcmp(type, "IHDR", 4) != 0 || len != 13) return 1;
      pi->w = be32(body);
      pi->h = be32(body + 4);
      int depth = body[8];
      pi->ct = body[9];
      /* compression 0, filter method 0, not interlaced, 8-bit samples */
      if (depth != 8 || body[10] || body[11] || body[12]) return 1;
      if (pi->w == 0 || pi->h == 0 || pi->w > PNG_DIM_LIMIT || pi->h > PNG_DIM_LIMIT) return 1;
      if ((int64_t)pi->w * pi->h > MS_IMAGE_MAX_PIXELS) return 1;
      switch (pi->ct) {
      case 0: pi->chans = 1; break;
      case 2: pi->chans = 3; break;
      case 3: pi->chans = 1; break;
      case 4: pi->chans = 2; break;
      case 6: pi->chans = 4; break;
      default: return 1;
      }
      seen_ihdr = 1;
    } else if (is_idat) {
      if (idat_done) return 1; /* IDAT chunks must be consecutive */
      if (!pi->idat) pi->idat = body;
      pi->idat_len += len;
      pi->idat_chunks++;
    } else {
      if (pi->idat) idat_done = 1;
      if (memcmp(type, "IEND", 4) == 0) {
        if (len != 0) return 1;
        seen_iend = 1;
        break;
      } else if (memcmp(type, "PLTE", 4) == 0) {
        if (pi->idat || pi->plte || len % 3 || len == 0 || len > 768) return 1;
        pi->plte = body;
        pi->plte_n = (int)(len / 3);
      } else if (memcmp(type, "tRNS", 4) == 0) {
        if (mode != MS_IMAGE_LABEL) return 1; /* transparency: libpng's expansion rules */
      } else if (!(type[0] & 0x20) || memcmp(type, "IHDR", 4) == 0) {
        return 1; /* an unknown critical chunk or a second IHDR */
      }
    }
    pos += (size_t)len + 12;
  }
  if (!seen_iend || !pi->idat) return 1;
  if (pi->ct == 3 && !pi->plte) return 1;
  if (pi->ct != 3 && pi->plte && pi->ct != 2 && pi->ct != 6) return 1;
  if (mode == MS_IMAGE_LABEL && pi->ct != 0 && pi->ct != 3) return 1;
  return 0;
}

/* Inflates the IDAT stream into z (exactly zlen bytes); 0 on success. */
static int inflate_idat(const png_info *pi, uint8_t *z, size_t zlen) {
  const uint8_t *src = pi->idat;
  uint8_t *joined = NULL;
  if (pi->idat_chunks > 1) { /* gather the chunks' data into one stream */
    if (!(joined = malloc(pi->idat_len))) return 1;
    size_t pos = (size_t)(pi->idat - pi->data) - 8, off = 0;
    for (int k = 0; k < pi->idat_chunks; k++) {
      uint32_t len = be32(pi->data + pos);
      memcpy(joined + off, pi->data + pos + 8, len);
      off += len;
      pos += (size_t)len + 12;
    }
    src = joined;
  }
  struct libdeflate_decompressor *dec = libdeflate_alloc_decompressor();
  int bad = 1;
  if (dec) {
    size_t in_used = 0, out_got = 0;
    enum libdeflate_result r =
        libdeflate_zlib_decompress_ex(dec, src, pi->idat_len, z, zlen, &in_used, &out_got);
    bad = r != LIBDEFLATE_SUCCESS || in_used != pi->idat_len || out_got != zlen;
    libdeflate_free_decompressor(dec);
  }
  free(joined);
  return bad;
}

int ms_png_fast_decode(const uint8_t *data, size_t n, ms_image_mode mode, const char *op,
                       const char *name, ms_tensor **out) {
  png_info pi;
  memset(&pi, 0, sizeof pi);
  pi.data = data;
  pi.n = n;
  if (n < 8 + 25 + 12 || parse(&pi, mode)) return MS_PNG_FALLBACK;
  size_t w = pi.w, h = pi.h, bpp = (size_t)pi.chans, rb = w * bpp, stride = rb + 1;
  int oc; /* output channels */
  if (mode == MS_IMAGE_LABEL)
    oc = 1;
  else if (mode == MS_IMAGE_RGB)
    oc = 3;
  else
    oc = pi.ct == 3 ? 3 : pi.chans;
  uint8_t *z = malloc(stride * h);
  if (!z) return ms_fail(MS_ERR_OOM, "%s: %s: out of memory for %zu x %zu PNG", op, name, w, h);
  if (inflate_idat(&pi, z, stride * h)) {
    free(z);
    return MS_PNG_FALLBACK;
  }
  for (size_t y = 0; y < h; y++)
    if (z[y * stride] > 4) { /* bad filter type: libpng's error */
      free(z);
      return MS_PNG_FALLBACK;
    }
  ms_tensor *t = NULL;
  int64_t shape[3] = {(int64_t)h, (int64_t)w, oc};
  int st = ms_tensor_new(shape, mode == MS_IMAGE_LABEL ? 2 : 3, MS_U8, MS_CPU, 0, &t);
  if (st) {
    free(z);
    return st;
  }
  uint8_t *o = (uint8_t *)ms_data(t);
  int direct = (size_t)oc == bpp && (pi.ct != 3 || mode == MS_IMAGE_LABEL);
  /* Unfilter in place in z (row y's pixels at z + y * stride + 1), then convert. */
  const uint8_t *prev = NULL;
  int bad_index = 0;
  for (size_t y = 0; y < h; y++) {
    uint8_t *row = z + y * stride + 1;
    uint8_t *dst = o + y * w * (size_t)oc;
    if (direct) {
      unfilter(row[-1], row, prev, dst, rb, (int)bpp);
      prev = dst;
      continue;
    }
    unfilter(row[-1], row, prev, row, rb, (int)bpp);
    prev = row;
    if (pi.ct == 3) {
      for (size_t x = 0; x < w; x++) {
        int k = row[x];
        bad_index |= k >= pi.plte_n;
        const uint8_t *c = pi.plte + 3 * (k < pi.plte_n ? k : 0);
        dst[3 * x] = c[0], dst[3 * x + 1] = c[1], dst[3 * x + 2] = c[2];
      }
    } else if (pi.ct == 6) { /* RGBA -> RGB */
      for (size_t x = 0; x < w; x++)
        dst[3 * x] = row[4 * x], dst[3 * x + 1] = row[4 * x + 1], dst[3 * x + 2] = row[4 * x + 2];
    } else if (pi.ct == 0) { /* gray -> RGB */
      for (size_t x = 0; x < w; x++)
        dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = row[x];
    } else if (pi.ct == 4) { /* gray+alpha -> RGB */
      for (size_t x = 0; x < w; x++)
        dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = row[2 * x];
    }
  }
  free(z);
  if (bad_index) { /* an index without a colour: leave it to libpng */
    ms_tensor_free(t);
    return MS_PNG_FALLBACK;
  }
  *out = t;
  return MS_OK;
}
