/* png_fast.h: the fast PNG decoding path (png_fast.c) that png.c tries before libpng. */
#ifndef MS_IO_PNG_FAST_H
#define MS_IO_PNG_FAST_H
#include "image.h"

/* Returned by ms_png_fast_decode when it leaves the file to libpng (nothing allocated, no
 * error set): anything but 8-bit non-interlaced gray / gray+alpha / RGB / RGBA / palette, a
 * tRNS outside label mode, and every damaged file (bad CRC, short or overlong data, bad
 * filter byte, out-of-palette index), so libpng alone decides what a broken file gives. */
#define MS_PNG_FALLBACK 1

int ms_png_fast_decode(const uint8_t *data, size_t n, ms_image_mode mode, const char *op,
                       const char *name, ms_tensor **out);
#endif
