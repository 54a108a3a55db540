/* fuzz_image.c: libFuzzer target for the PNG/JPEG decoders in all three read modes. */
#include <stddef.h>
#include <stdint.h>

#include "moonseg.h"

static ms_context *ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!ctx && ms_context_new(&ctx) != MS_OK) return 0;
  for (int mode = 0; mode < 3; mode++) {
    ms_tensor *t = NULL;
    if (ms_image_decode(ctx, data, (int64_t)size, mode, "fuzz", &t) == MS_OK) ms_tensor_free(t);
  }
  return 0;
}
