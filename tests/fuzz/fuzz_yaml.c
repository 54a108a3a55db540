/* fuzz_yaml.c: libFuzzer target for the YAML config reader (libyaml events to records). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "moonseg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *out = NULL;
  int64_t len = 0;
  if (ms_yaml_events((const char *)data, (int64_t)size, "fuzz.yml", &out, &len) == MS_OK) {
    /* every record is "<kind><line> <n>\n" then n bytes and a newline for scalars */
    if (!out || (int64_t)strlen(out) > len) abort();
    ms_yaml_free(out);
  } else if (out) {
    abort(); /* nothing is handed out on failure */
  }
  return 0;
}
