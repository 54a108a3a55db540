/* png_encode.c: PNG encoding to memory for callers outside csrc/io (TensorBoard image summaries).
 */
#include <stdlib.h>

#include "image.h"

int ms_png_encode(ms_context *ctx, const ms_tensor *img, const uint8_t *palette_rgb,
                  int palette_len, uint8_t **out, int64_t *nbytes) {
  const char *op = "png_encode";
  if (!out || !nbytes) return ms_fail(MS_ERR_INVALID, "%s: out or nbytes is NULL", op);
  *out = NULL;
  *nbytes = 0;
  size_t n;
  int st = ms_png_encode_mem(ctx, op, "<memory>", img, palette_rgb, palette_len, out, &n);
  if (!st) *nbytes = (int64_t)n;
  return st;
}

void ms_buffer_free(void *p) { free(p); }
