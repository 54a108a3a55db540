/* fuzz_safetensors.c: libFuzzer target for the safetensors reader (header JSON and offsets). */
#include <stddef.h>
#include <stdint.h>

#include "moonseg.h"

static ms_context *ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!ctx && ms_context_new(&ctx) != MS_OK) return 0;
  ms_safetensors *st = NULL;
  if (ms_safetensors_parse(data, (int64_t)size, "fuzz", &st) != MS_OK) return 0;
  for (int i = 0; i < ms_safetensors_count(st); i++) {
    ms_tensor *t = NULL;
    if (ms_safetensors_get(ctx, st, i, &t) == MS_OK) ms_tensor_free(t);
  }
  for (int i = 0; i < ms_safetensors_metadata_count(st); i++) {
    (void)ms_safetensors_metadata_key(st, i);
    (void)ms_safetensors_metadata_value(st, i);
  }
  ms_safetensors_close(st);
  return 0;
}
